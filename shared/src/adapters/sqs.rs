//! The SQS FIFO adapter of [`EnvelopeQueue`]: `SendMessageBatch` with group and dedup ids.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use crate::ingest::queue::{EnvelopeQueue, FailedEntry, QueueError, QueuedMessage};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(aws: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            queue_url: queue_url.into(),
        }
    }
}

fn entry(message: &QueuedMessage) -> Result<SendMessageBatchRequestEntry, QueueError> {
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(&message.entry_id)
        .message_body(&message.body)
        .message_group_id(&message.group_id)
        .message_deduplication_id(&message.dedup_id);
    for (name, value) in &message.attributes {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        builder = builder.message_attributes(*name, attribute);
    }
    builder
        .build()
        .map_err(|e| QueueError::Unavailable(e.to_string()))
}

impl EnvelopeQueue for SqsQueue {
    async fn send_batch(&self, batch: &[QueuedMessage]) -> Result<Vec<FailedEntry>, QueueError> {
        let entries = batch.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))?;
        Ok(output
            .failed
            .into_iter()
            .map(|f| FailedEntry {
                entry_id: f.id,
                code: f.code,
                message: f.message.unwrap_or_default(),
            })
            .collect())
    }
}
