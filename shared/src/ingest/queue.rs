//! The event queue port, and the one way envelopes are put on it: in SQS-sized batches, with a
//! bounded, jittered retry of the entries the queue refused. Nothing counts as enqueued until
//! the queue said so. Batches of different conversations are sent concurrently (bounded); one
//! conversation's batches go one after another, so its events keep their order.

use std::collections::HashMap;
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

pub use crate::retry::RetryPolicy;

use crate::envelope::{ENVELOPE_MAX_BYTES, ENVELOPE_TARGET_BYTES, Envelope};

/// SQS takes at most ten entries per batch.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS takes at most 256 KiB per batch, all entries together.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight at once for one delivery. A large delivery (hundreds of events) then takes
/// a few round trips instead of one per ten events, without opening a connection per batch.
pub const MAX_CONCURRENT_BATCHES: usize = 8;

/// One message ready for the FIFO queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    /// Unique within one batch call.
    pub entry_id: String,
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
    /// String message attributes: the correlation id and routing hints.
    pub attributes: Vec<(&'static str, String)>,
}

impl QueuedMessage {
    pub fn from_envelope(entry_id: String, envelope: &Envelope) -> Self {
        Self {
            entry_id,
            body: envelope.to_json(),
            group_id: envelope.group_id(),
            dedup_id: envelope.dedup_id(),
            attributes: vec![
                ("event_id", envelope.event_id.to_string()),
                ("event_kind", envelope.kind.as_str().to_owned()),
                ("source", envelope.source.as_str().to_owned()),
            ],
        }
    }

    fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
    }
}

/// An entry the queue refused, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub entry_id: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the queue could not be reached: {0}")]
    Unavailable(String),
    #[error(
        "the queue refused {count} event(s) after {attempts} attempt(s); first refusal: {first}"
    )]
    Rejected {
        count: usize,
        attempts: usize,
        first: String,
    },
    #[error("event {event_id} is {size} bytes, above the {limit}-byte message limit")]
    EnvelopeTooLarge {
        event_id: String,
        size: usize,
        limit: usize,
    },
}

/// Port: a FIFO queue that takes a batch and reports which entries it refused.
pub trait EnvelopeQueue: Send + Sync + 'static {
    fn send_batch(
        &self,
        batch: &[QueuedMessage],
    ) -> impl Future<Output = Result<Vec<FailedEntry>, QueueError>> + Send;
}

/// Splits messages into batches SQS accepts: at most ten entries and 256 KiB each. Messages
/// are first gathered by group (groups in order of first appearance, each group's messages in
/// their order), so that batches share as few groups as possible and can go out concurrently.
pub fn batches(messages: Vec<QueuedMessage>) -> Vec<Vec<QueuedMessage>> {
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut keyed: Vec<(usize, QueuedMessage)> = messages
        .into_iter()
        .map(|m| {
            let next = first_seen.len();
            let rank = *first_seen.entry(m.group_id.clone()).or_insert(next);
            (rank, m)
        })
        .collect();
    // Stable: a group's messages keep their order.
    keyed.sort_by_key(|(rank, _)| *rank);
    let mut out: Vec<Vec<QueuedMessage>> = Vec::new();
    let mut bytes = 0;
    for (_, message) in keyed {
        let size = message.size();
        match out.last_mut() {
            Some(batch) if batch.len() < MAX_BATCH_ENTRIES && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                batch.push(message);
            }
            _ => {
                bytes = size;
                out.push(vec![message]);
            }
        }
    }
    out
}

/// Puts every envelope on the queue, or says why not. A batch is sent only once every earlier
/// batch holding one of its groups has been accepted, so one conversation's events keep their
/// order in the normal case; batches of other conversations go concurrently, at most
/// [`MAX_CONCURRENT_BATCHES`] at a time. The first failure fails the whole delivery.
pub async fn enqueue_all<Q: EnvelopeQueue>(
    queue: &Q,
    envelopes: &[Envelope],
    retry: &RetryPolicy,
) -> Result<usize, QueueError> {
    let mut messages = Vec::with_capacity(envelopes.len());
    for (i, envelope) in envelopes.iter().enumerate() {
        let message = QueuedMessage::from_envelope(format!("e{i}"), envelope);
        if message.size() > ENVELOPE_TARGET_BYTES {
            // Still enqueued, but billed as more than one request: worth knowing about.
            tracing::warn!(event_id = %envelope.event_id, bytes = message.size(), "envelope above one 64 KiB SQS billing chunk");
        }
        if message.size() > ENVELOPE_MAX_BYTES {
            return Err(QueueError::EnvelopeTooLarge {
                event_id: envelope.event_id.to_string(),
                size: message.size(),
                limit: ENVELOPE_MAX_BYTES,
            });
        }
        messages.push(message);
    }
    let total = messages.len();
    let batches = batches(messages);
    let after = predecessors(&batches);
    let mut done = vec![false; batches.len()];
    let mut waiting = batches.into_iter().enumerate().peekable();
    let mut in_flight = FuturesUnordered::new();
    loop {
        // Batches start in order: one whose predecessor is still in flight waits for it, and
        // the ones behind it wait too (deliveries are small; the order is easy to reason about).
        while in_flight.len() < MAX_CONCURRENT_BATCHES {
            let Some((index, _)) = waiting.peek() else {
                break;
            };
            if after[*index].iter().any(|&previous| !done[previous]) {
                break;
            }
            let Some((index, batch)) = waiting.next() else {
                break;
            };
            in_flight.push(async move { (index, send_with_retry(queue, batch, retry).await) });
        }
        match in_flight.next().await {
            Some((index, result)) => {
                result?;
                done[index] = true;
            }
            None => break,
        }
    }
    Ok(total)
}

/// For each batch, the batches that must be accepted before it is sent: for each of its
/// groups, the latest earlier batch holding that group (which waited for the one before it).
fn predecessors(batches: &[Vec<QueuedMessage>]) -> Vec<Vec<usize>> {
    let mut last_of_group: HashMap<&str, usize> = HashMap::new();
    batches
        .iter()
        .enumerate()
        .map(|(index, batch)| {
            let mut previous: Vec<usize> = batch
                .iter()
                .filter_map(|m| last_of_group.get(m.group_id.as_str()).copied())
                .collect();
            previous.sort_unstable();
            previous.dedup();
            for message in batch {
                last_of_group.insert(&message.group_id, index);
            }
            previous
        })
        .collect()
}

async fn send_with_retry<Q: EnvelopeQueue>(
    queue: &Q,
    mut pending: Vec<QueuedMessage>,
    retry: &RetryPolicy,
) -> Result<(), QueueError> {
    let mut delays = retry.delays();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failed = queue.send_batch(&pending).await?;
        if failed.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            refused = failed.len(),
            attempt = attempts,
            code = %failed[0].code,
            "queue refused entries"
        );
        let Some(delay) = delays.next() else {
            return Err(QueueError::Rejected {
                count: failed.len(),
                attempts,
                first: format!("{}: {}", failed[0].code, failed[0].message),
            });
        };
        pending.retain(|m| failed.iter().any(|f| f.entry_id == m.entry_id));
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::value::RawValue;
    use time::OffsetDateTime;

    use std::time::Duration;

    use super::*;
    use crate::envelope::{EnvelopeParts, EventKind, Source};
    use crate::ids::{EventId, PhoneNumberId, WaId};

    fn envelope(n: usize, raw_len: usize) -> Envelope {
        envelope_from(n, raw_len, None)
    }

    /// Event `n` of the conversation with customer `customer` (its message group).
    fn text_from(n: usize, customer: usize) -> Envelope {
        envelope_from(
            n,
            10,
            Some(WaId::parse(format!("1650555{customer:04}")).unwrap()),
        )
    }

    fn envelope_from(n: usize, raw_len: usize, wa_id: Option<WaId>) -> Envelope {
        Envelope::new(EnvelopeParts {
            event_id: EventId::parse(format!("msg:{n}")).unwrap(),
            kind: EventKind::InboundMessage,
            event_type: "text".into(),
            source: Source::Meta,
            phone_number_id: PhoneNumberId::parse("1").unwrap(),
            wa_id,
            profile_name: None,
            received_at: OffsetDateTime::UNIX_EPOCH,
            occurred_at: None,
            raw: RawValue::from_string(format!("\"{}\"", "x".repeat(raw_len))).unwrap(),
        })
    }

    /// Refuses each entry id listed in `refuse` for the first `times` attempts it is seen.
    struct Flaky {
        refuse: Vec<&'static str>,
        times: usize,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl EnvelopeQueue for Flaky {
        async fn send_batch(
            &self,
            batch: &[QueuedMessage],
        ) -> Result<Vec<FailedEntry>, QueueError> {
            let mut calls = self.calls.lock().unwrap();
            let attempt = calls.len();
            calls.push(batch.iter().map(|m| m.entry_id.clone()).collect());
            Ok(batch
                .iter()
                .filter(|m| attempt < self.times && self.refuse.contains(&m.entry_id.as_str()))
                .map(|m| FailedEntry {
                    entry_id: m.entry_id.clone(),
                    code: "InternalError".into(),
                    message: "try again".into(),
                })
                .collect())
        }
    }

    /// Accepts every entry. A call stays "on the wire" for a number of scheduler turns that
    /// shrinks with each call, so a batch sent too early would land before an earlier one.
    /// Records what landed, in landing order, and the most calls in flight at once.
    #[derive(Default)]
    struct Wire {
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        landed: Mutex<Vec<(String, String)>>,
    }

    impl EnvelopeQueue for Wire {
        async fn send_batch(
            &self,
            batch: &[QueuedMessage],
        ) -> Result<Vec<FailedEntry>, QueueError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            for _ in 0..100usize.saturating_sub(call) {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.landed
                .lock()
                .unwrap()
                .extend(batch.iter().map(|m| (m.group_id.clone(), m.body.clone())));
            Ok(Vec::new())
        }
    }

    impl Wire {
        /// Each group's events (their bodies) in the order they landed.
        fn landed_by_group(&self) -> HashMap<String, Vec<String>> {
            let mut out: HashMap<String, Vec<String>> = HashMap::new();
            for (group, body) in self.landed.lock().unwrap().iter() {
                out.entry(group.clone()).or_default().push(body.clone());
            }
            out
        }

        fn most_in_flight(&self) -> usize {
            self.most_in_flight.load(Ordering::SeqCst)
        }
    }

    /// Each group's events (their bodies) in the order of the delivery.
    fn by_group(envelopes: &[Envelope]) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for envelope in envelopes {
            out.entry(envelope.group_id())
                .or_default()
                .push(envelope.to_json());
        }
        out
    }

    fn quick() -> RetryPolicy {
        RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2))
    }

    #[test]
    fn batches_hold_at_most_ten_entries() {
        let messages: Vec<_> = (0..23)
            .map(|i| QueuedMessage::from_envelope(format!("e{i}"), &envelope(i, 10)))
            .collect();
        let sizes: Vec<_> = batches(messages).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);
    }

    #[test]
    fn batches_hold_at_most_256_kib() {
        let messages: Vec<_> = (0..4)
            .map(|i| QueuedMessage::from_envelope(format!("e{i}"), &envelope(i, 100 * 1024)))
            .collect();
        let sizes: Vec<_> = batches(messages).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2]);
    }

    #[tokio::test]
    async fn refused_entries_alone_are_retried_until_accepted() {
        let queue = Flaky {
            refuse: vec!["e1"],
            times: 2,
            calls: Mutex::default(),
        };
        let envelopes: Vec<_> = (0..3).map(|i| envelope(i, 10)).collect();
        assert_eq!(enqueue_all(&queue, &envelopes, &quick()).await, Ok(3));
        let calls = queue.calls.lock().unwrap().clone();
        assert_eq!(calls, vec![vec!["e0", "e1", "e2"], vec!["e1"], vec!["e1"]]);
    }

    #[tokio::test]
    async fn entries_still_refused_after_the_last_retry_fail_the_delivery() {
        let queue = Flaky {
            refuse: vec!["e0", "e2"],
            times: usize::MAX,
            calls: Mutex::default(),
        };
        let envelopes: Vec<_> = (0..3).map(|i| envelope(i, 10)).collect();
        let err = enqueue_all(&queue, &envelopes, &quick()).await.unwrap_err();
        assert!(
            matches!(
                err,
                QueueError::Rejected {
                    count: 2,
                    attempts: 4,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_envelope_above_the_sqs_limit_is_refused_before_anything_is_sent() {
        let queue = Flaky {
            refuse: vec![],
            times: 0,
            calls: Mutex::default(),
        };
        let envelopes = vec![envelope(0, 10), envelope(1, ENVELOPE_MAX_BYTES)];
        let err = enqueue_all(&queue, &envelopes, &quick()).await.unwrap_err();
        assert!(matches!(err, QueueError::EnvelopeTooLarge { .. }));
        assert!(queue.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn batches_gather_each_conversations_events_in_their_order() {
        let envelopes: Vec<_> = (0..20).map(|i| text_from(i, i % 2)).collect();
        let messages: Vec<_> = envelopes
            .iter()
            .enumerate()
            .map(|(i, e)| QueuedMessage::from_envelope(format!("e{i}"), e))
            .collect();
        let ids: Vec<Vec<String>> = batches(messages)
            .iter()
            .map(|b| b.iter().map(|m| m.entry_id.clone()).collect())
            .collect();
        let evens: Vec<_> = (0..20).step_by(2).map(|i| format!("e{i}")).collect();
        let odds: Vec<_> = (1..20).step_by(2).map(|i| format!("e{i}")).collect();
        assert_eq!(ids, vec![evens, odds]);
    }

    #[tokio::test]
    async fn batches_of_different_conversations_are_in_flight_at_the_same_time() {
        let queue = Wire::default();
        let envelopes: Vec<_> = (0..30).map(|i| text_from(i, i)).collect();
        assert_eq!(enqueue_all(&queue, &envelopes, &quick()).await, Ok(30));
        assert_eq!(queue.most_in_flight(), 3);
        assert_eq!(queue.landed.lock().unwrap().len(), 30);
    }

    #[tokio::test]
    async fn no_more_than_the_bound_of_batches_are_in_flight_at_once() {
        let queue = Wire::default();
        let envelopes: Vec<_> = (0..300).map(|i| text_from(i, i)).collect();
        assert_eq!(enqueue_all(&queue, &envelopes, &quick()).await, Ok(300));
        assert_eq!(queue.most_in_flight(), MAX_CONCURRENT_BATCHES);
        assert_eq!(queue.landed_by_group(), by_group(&envelopes));
    }

    #[tokio::test]
    async fn one_conversations_batches_go_one_after_another_in_order() {
        let queue = Wire::default();
        let envelopes: Vec<_> = (0..35).map(|i| text_from(i, 7)).collect();
        assert_eq!(enqueue_all(&queue, &envelopes, &quick()).await, Ok(35));
        assert_eq!(queue.most_in_flight(), 1);
        assert_eq!(queue.landed_by_group(), by_group(&envelopes));
    }

    #[tokio::test]
    async fn every_conversation_keeps_its_order_while_batches_go_concurrently() {
        let queue = Wire::default();
        // One long conversation interleaved with many short ones: batches share groups.
        let envelopes: Vec<_> = (0..240)
            .map(|i| text_from(i, if i % 3 == 0 { 0 } else { 1 + i % 37 }))
            .collect();
        assert_eq!(enqueue_all(&queue, &envelopes, &quick()).await, Ok(240));
        assert!(queue.most_in_flight() > 1, "some batches went together");
        assert_eq!(queue.landed_by_group(), by_group(&envelopes));
    }
}
