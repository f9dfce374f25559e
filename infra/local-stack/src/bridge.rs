//! The local SQS → Lambda bridge: what Lambda's event source mapping does for a FIFO queue.
//! It long-polls the queue, builds a real `SqsEvent`, invokes the function, and deletes only
//! the records the function did not report in `batchItemFailures`. The rest stay for the
//! visibility timeout, and after `maxReceiveCount` SQS moves them to the dead-letter queue.

use std::collections::HashMap;
use std::future::Future;

use anyhow::Context;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

/// Something that runs the function on an event: cargo-lambda's invoke API, or in-process.
pub trait Invoke: Send + Sync {
    fn invoke(
        &self,
        event: SqsEvent,
    ) -> impl Future<Output = anyhow::Result<SqsBatchResponse>> + Send;
}

/// Invokes a function through `cargo lambda watch`'s Lambda-compatible invoke endpoint.
pub struct HttpInvoker {
    pub url: String,
    pub client: reqwest::Client,
}

impl HttpInvoker {
    pub fn new(watch_base_url: &str, function: &str) -> Self {
        Self {
            url: format!("{watch_base_url}/2015-03-31/functions/{function}/invocations"),
            client: reqwest::Client::new(),
        }
    }
}

impl Invoke for HttpInvoker {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        let response = self
            .client
            .post(&self.url)
            .json(&event)
            .timeout(std::time::Duration::from_secs(600))
            .send()
            .await
            .context("invoking the function")?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "invoke returned {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("not a batch response: {body}"))
    }
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PumpReport {
    pub received: usize,
    pub failed: usize,
    pub deleted: usize,
}

pub struct Bridge<I> {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    invoker: I,
    batch_size: i32,
}

impl<I: Invoke> Bridge<I> {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: &str, queue_arn: &str, invoker: I) -> Self {
        Self {
            sqs,
            queue_url: queue_url.to_owned(),
            queue_arn: queue_arn.to_owned(),
            invoker,
            batch_size: 10,
        }
    }

    /// One receive–invoke–delete round. A whole-invocation error deletes nothing, as in Lambda.
    pub async fn pump_once(&self, wait_seconds: i32) -> anyhow::Result<PumpReport> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .context("receiving from the queue")?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(PumpReport::default());
        }
        let mut receipts = HashMap::new();
        let mut records = Vec::with_capacity(messages.len());
        for m in messages {
            let id = m.message_id.clone().unwrap_or_default();
            receipts.insert(id, m.receipt_handle.clone().unwrap_or_default());
            records.push(self.record(m));
        }
        let mut event = SqsEvent::default();
        event.records = records;
        let response = self.invoker.invoke(event).await?;
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let entries: Vec<_> = receipts
            .iter()
            .filter(|(id, _)| !failed.contains(id))
            .enumerate()
            .map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(receipt)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let deleted = entries.len();
        if deleted > 0 {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("deleting processed records")?;
        }
        Ok(PumpReport {
            received: receipts.len(),
            failed: failed.len(),
            deleted,
        })
    }

    fn record(&self, m: aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id;
        record.receipt_handle = m.receipt_handle;
        record.body = m.body;
        record.md5_of_body = m.md5_of_body;
        record.md5_of_message_attributes = m.md5_of_message_attributes;
        record.attributes = m
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        record.message_attributes = m
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let mut attribute = SqsMessageAttribute::default();
                attribute.string_value = v.string_value;
                attribute.data_type = Some(v.data_type);
                (k, attribute)
            })
            .collect();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some(crate::LOCAL_REGION.into());
        record
    }
}
