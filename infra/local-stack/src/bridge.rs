//! The local SQS → Lambda bridge: what Lambda's event source mapping does for a FIFO queue.
//! It polls the queue, builds a real `SqsEvent`, invokes the function, and deletes only the
//! records the function did not report in `batchItemFailures`. The rest stay for the visibility
//! timeout, and after `maxReceiveCount` SQS moves them to the dead-letter queue.
//!
//! Like the event source mapping, it runs several pollers and invocations at once ([`Bridge::run`],
//! [`Bridge::drain`]) while one message group is never in two invocations at once, and a group's
//! records reach the function in `SequenceNumber` order: a record received for a group that is
//! being processed waits in the bridge until that invocation ends, and if the invocation failed
//! any of the group's records, the waiting ones are left to SQS, to come back after the failed one.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};

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
    /// Records handed to the function (0 when nothing was received, or all of it must wait).
    pub received: usize,
    /// Records the function reported in `batchItemFailures`.
    pub failed: usize,
    /// Records deleted from the queue.
    pub deleted: usize,
}

/// What a [`Bridge::drain`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    pub invocations: usize,
    /// Records handed to the function, redeliveries included.
    pub records: usize,
    pub failed: usize,
    pub deleted: usize,
    pub elapsed: Duration,
}

impl DrainReport {
    fn add(&mut self, round: &PumpReport) {
        if round.received > 0 {
            self.invocations += 1;
        }
        self.records += round.received;
        self.failed += round.failed;
        self.deleted += round.deleted;
    }
}

pub struct Bridge<I> {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    invoker: I,
    batch_size: usize,
    groups: Mutex<Groups>,
}

/// The mapping's view of the queue's message groups, shared by its pollers.
#[derive(Default)]
struct Groups {
    /// Groups with an invocation running: no other invocation gets their records.
    busy: HashSet<String>,
    /// Received records waiting for their group to be free, each group's in sequence order.
    waiting: HashMap<String, Vec<Message>>,
    /// Records handed to a running invocation; a redelivery of one (its visibility timeout ran
    /// out meanwhile) is not handed over a second time.
    claimed: HashSet<String>,
}

impl<I: Invoke> Bridge<I> {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: &str, queue_arn: &str, invoker: I) -> Self {
        Self {
            sqs,
            queue_url: queue_url.to_owned(),
            queue_arn: queue_arn.to_owned(),
            invoker,
            batch_size: 10,
            groups: Mutex::new(Groups::default()),
        }
    }

    /// One receive–invoke–delete round. Records already waiting for their group go first;
    /// otherwise it receives up to a batch. A whole-invocation error deletes nothing, as in Lambda.
    /// Safe to call from several pollers at once.
    pub async fn pump_once(&self, wait_seconds: i32) -> anyhow::Result<PumpReport> {
        let mut batch = self.claim();
        if batch.is_empty() {
            let received = self.receive(wait_seconds).await?;
            if received.is_empty() {
                return Ok(PumpReport::default());
            }
            self.enqueue(received);
            batch = self.claim();
            if batch.is_empty() {
                // Everything received belongs to groups being processed: it waits for them.
                return Ok(PumpReport::default());
            }
        }
        let result = self.process(&batch).await;
        self.release(&batch, result.as_ref().ok().map(|(_, failed)| failed));
        result.map(|(report, _)| report)
    }

    /// Runs `pollers` concurrent poll–invoke–delete loops for ever, as the event source mapping
    /// does, calling `on_round` after every round that handed records over or failed.
    pub async fn run<F>(self: Arc<Self>, pollers: usize, on_round: F)
    where
        I: 'static,
        F: Fn(&anyhow::Result<PumpReport>) + Send + Sync + 'static,
    {
        let on_round = Arc::new(on_round);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..pollers.max(1) {
            let bridge = Arc::clone(&self);
            let on_round = Arc::clone(&on_round);
            tasks.spawn(async move {
                loop {
                    let round = bridge.pump_once(1).await;
                    match &round {
                        Ok(report) if report.received == 0 => {}
                        Ok(_) => on_round(&round),
                        Err(_) => {
                            on_round(&round);
                            // Moto or the function is down: do not spin.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Runs `pollers` concurrent loops until the queue is empty (nothing visible, nothing in
    /// flight, nothing waiting in the bridge), or fails after `timeout`. Records the function
    /// fails come back after the queue's visibility timeout and are processed again.
    pub async fn drain(
        self: Arc<Self>,
        pollers: usize,
        timeout: Duration,
    ) -> anyhow::Result<DrainReport>
    where
        I: 'static,
    {
        let started = Instant::now();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..pollers.max(1) {
            let bridge = Arc::clone(&self);
            let stop = Arc::clone(&stop);
            tasks.spawn(async move {
                let mut report = DrainReport::default();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A short long poll: an idle poller waits in SQS, and still sees the stop.
                    let round = bridge.pump_once(1).await?;
                    report.add(&round);
                }
                anyhow::Ok(report)
            });
        }
        let outcome = self.wait_until_empty(started + timeout).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = DrainReport::default();
        while let Some(poller) = tasks.join_next().await {
            let report = poller.context("a bridge poller panicked")??;
            total.invocations += report.invocations;
            total.records += report.records;
            total.failed += report.failed;
            total.deleted += report.deleted;
        }
        outcome?;
        total.elapsed = started.elapsed();
        Ok(total)
    }

    async fn wait_until_empty(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let (visible, in_flight) = self.queue_depth().await?;
            let idle = {
                let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
                groups.busy.is_empty() && groups.waiting.is_empty()
            };
            if visible == 0 && in_flight == 0 && idle {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the queue did not drain: {visible} visible, {in_flight} in flight"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Visible and in-flight messages on the queue, as SQS approximates them.
    async fn queue_depth(&self) -> anyhow::Result<(u64, u64)> {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .context("reading the queue's depth")?
            .attributes
            .unwrap_or_default();
        let count = |name: QueueAttributeName| -> anyhow::Result<u64> {
            attributes.get(&name).map_or(Ok(0), |v| {
                v.parse().context("a queue count that is not a number")
            })
        };
        Ok((
            count(QueueAttributeName::ApproximateNumberOfMessages)?,
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        ))
    }

    async fn receive(&self, wait_seconds: i32) -> anyhow::Result<Vec<Message>> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size as i32)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .context("receiving from the queue")?;
        Ok(received.messages.unwrap_or_default())
    }

    /// Puts received records in their group's line, in sequence order, once each.
    fn enqueue(&self, received: Vec<Message>) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        for message in received {
            let id = message.message_id.clone().unwrap_or_default();
            if groups.claimed.contains(&id) {
                continue;
            }
            let line = groups.waiting.entry(group_of(&message)).or_default();
            match line
                .iter_mut()
                .find(|m| m.message_id.as_deref() == Some(id.as_str()))
            {
                // Received again: only its newest receipt handle can delete it.
                Some(known) => known.receipt_handle = message.receipt_handle,
                None => line.push(message),
            }
            line.sort_by_key(sequence_of);
        }
    }

    /// Takes up to a batch of waiting records whose groups are free, and marks those groups busy.
    fn claim(&self) -> Vec<Message> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let Groups {
            busy,
            waiting,
            claimed,
        } = &mut *groups;
        let mut free: Vec<&String> = waiting.keys().filter(|g| !busy.contains(*g)).collect();
        // Oldest first across groups, by the sequence number of each group's head.
        free.sort_by_key(|g| waiting[*g].first().map(sequence_of));
        let free: Vec<String> = free.into_iter().cloned().collect();
        let mut batch = Vec::new();
        for group in free {
            let room = self.batch_size - batch.len();
            if room == 0 {
                break;
            }
            let Some(line) = waiting.get_mut(&group) else {
                continue;
            };
            let taken: Vec<Message> = line.drain(..room.min(line.len())).collect();
            if line.is_empty() {
                waiting.remove(&group);
            }
            claimed.extend(taken.iter().filter_map(|m| m.message_id.clone()));
            busy.insert(group);
            batch.extend(taken);
        }
        batch
    }

    /// Frees the batch's groups. A group with a failed record (or any group, when the whole
    /// invocation failed) gives its waiting records back to SQS: they are later than the failed
    /// one, and must reach the function after its redelivery, not before.
    fn release(&self, batch: &[Message], failed: Option<&HashSet<String>>) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        for message in batch {
            let group = group_of(message);
            groups.busy.remove(&group);
            if let Some(id) = &message.message_id {
                groups.claimed.remove(id);
            }
            let group_failed = match failed {
                None => true,
                Some(failed) => message
                    .message_id
                    .as_ref()
                    .is_some_and(|id| failed.contains(id)),
            };
            if group_failed {
                groups.waiting.remove(&group);
            }
        }
    }

    /// Invokes the function on `batch` and deletes what it did not fail.
    async fn process(&self, batch: &[Message]) -> anyhow::Result<(PumpReport, HashSet<String>)> {
        let mut event = SqsEvent::default();
        event.records = batch.iter().map(|m| self.record(m.clone())).collect();
        let response = self.invoker.invoke(event).await?;
        let failed: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let entries: Vec<_> = batch
            .iter()
            .filter(|m| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let deleted = entries.len();
        if deleted > 0 {
            let response = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("deleting processed records")?;
            anyhow::ensure!(
                response.failed.is_empty(),
                "SQS refused to delete processed records: {:?}",
                response.failed
            );
        }
        let report = PumpReport {
            received: batch.len(),
            failed: failed.len(),
            deleted,
        };
        Ok((report, failed))
    }

    fn record(&self, m: Message) -> SqsMessage {
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

/// The record's message group; a standard queue's records each stand alone.
fn group_of(m: &Message) -> String {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned()
        .unwrap_or_else(|| format!("\u{0}{}", m.message_id.as_deref().unwrap_or_default()))
}

/// Orders records as their `SequenceNumber`s do: decimal strings of up to 128 bits, so shorter
/// is smaller. Records without one keep the order they were received in (the sort is stable).
fn sequence_of(m: &Message) -> (usize, String) {
    let sequence = m
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::SequenceNumber))
        .cloned()
        .unwrap_or_default();
    (sequence.len(), sequence)
}
