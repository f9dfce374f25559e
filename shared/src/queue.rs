//! The event queue port, and the one way envelopes are put on it: in SQS-sized batches, with a
//! bounded, jittered retry of the entries the queue refused. Nothing counts as enqueued until
//! the queue said so.

use std::future::Future;

pub use crate::retry::RetryPolicy;

use crate::envelope::{ENVELOPE_MAX_BYTES, ENVELOPE_TARGET_BYTES, Envelope};

/// SQS takes at most ten entries per batch.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS takes at most 256 KiB per batch, all entries together.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

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

/// Splits messages into batches SQS accepts: at most ten entries and 256 KiB each.
pub fn batches(messages: Vec<QueuedMessage>) -> Vec<Vec<QueuedMessage>> {
    let mut out: Vec<Vec<QueuedMessage>> = Vec::new();
    let mut bytes = 0;
    for message in messages {
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

/// Puts every envelope on the queue, or says why not. Batches go in order, so one
/// conversation's events keep their order in the normal case.
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
    for batch in batches(messages) {
        send_with_retry(queue, batch, retry).await?;
    }
    Ok(total)
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

    use serde_json::value::RawValue;
    use time::OffsetDateTime;

    use std::time::Duration;

    use super::*;
    use crate::envelope::{EnvelopeParts, EventKind, Source};
    use crate::ids::{EventId, PhoneNumberId};

    fn envelope(n: usize, raw_len: usize) -> Envelope {
        Envelope::new(EnvelopeParts {
            event_id: EventId::parse(format!("msg:{n}")).unwrap(),
            kind: EventKind::InboundMessage,
            event_type: "text".into(),
            source: Source::Meta,
            phone_number_id: PhoneNumberId::parse("1").unwrap(),
            wa_id: None,
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
}
