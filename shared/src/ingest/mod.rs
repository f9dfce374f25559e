//! The webhook ingest use case: verify, normalise, enqueue. Nothing else happens at the edge.
//!
//! - `signature`: the HMAC check over the raw bytes;
//! - `webhook`: normalisation of Meta and Kapso deliveries into envelopes;
//! - `queue`: the event queue port and the one way envelopes are put on it.

pub mod queue;
pub mod signature;
pub mod webhook;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::instrument;

use crate::envelope::Source;
use crate::ingest::queue::{EnvelopeQueue, QueueError, RetryPolicy, enqueue_all};
use crate::ingest::signature::{PresentedSignature, SignatureError};
use crate::ingest::webhook::{DeliveryContext, PayloadError, Skipped, kapso, normalise};
use crate::secrets::{AppSecrets, SecretSource, SecretsCache, SecretsError};

/// A POSTed delivery as the edge received it. The body is the raw bytes, already base64-decoded
/// where API Gateway encoded it.
pub struct Delivery<'a> {
    pub body: &'a [u8],
    pub signature: Result<PresentedSignature, SignatureError>,
    pub event_header: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub received_at: OffsetDateTime,
}

impl<'a> Delivery<'a> {
    /// Reads what ingest needs from the headers; `header` must look names up case-insensitively.
    pub fn new(
        body: &'a [u8],
        header: impl Fn(&str) -> Option<&'a str>,
        received_at: OffsetDateTime,
    ) -> Self {
        Self {
            body,
            signature: PresentedSignature::from_headers(&header),
            event_header: header(kapso::EVENT_HEADER),
            idempotency_key: header(kapso::IDEMPOTENCY_HEADER),
            received_at,
        }
    }
}

/// The verify handshake Meta performs when a webhook URL is registered.
#[derive(Debug, Default)]
pub struct Handshake<'a> {
    pub mode: Option<&'a str>,
    pub verify_token: Option<&'a str>,
    pub challenge: Option<&'a str>,
}

/// Why a delivery was not accepted. Each variant maps to one HTTP status, in the function.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("body is {size} bytes, above the {limit}-byte limit")]
    BodyTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("secrets are unavailable")]
    SecretsUnavailable(#[source] SecretsError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("verification refused")]
    Refused,
    #[error("secrets are unavailable")]
    SecretsUnavailable(#[source] SecretsError),
}

/// What happened to an accepted delivery.
#[derive(Debug)]
pub struct Accepted {
    pub source: Source,
    pub enqueued: usize,
    pub skipped: Vec<Skipped>,
}

/// The longest challenge echoed back; Meta's are short numbers.
const MAX_CHALLENGE_LEN: usize = 512;

pub struct Ingest<Q, S> {
    queue: Q,
    secrets: SecretsCache<S>,
    max_body_bytes: usize,
    retry: RetryPolicy,
}

impl<Q: EnvelopeQueue, S: SecretSource> Ingest<Q, S> {
    pub fn new(
        queue: Q,
        secrets: SecretsCache<S>,
        max_body_bytes: usize,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            queue,
            secrets,
            max_body_bytes,
            retry,
        }
    }

    /// Verifies a delivery, splits it into envelopes and enqueues every one of them.
    /// `Ok` means every actionable event is durably on the queue.
    #[instrument(skip_all, fields(bytes = delivery.body.len()))]
    pub async fn accept(&self, delivery: &Delivery<'_>) -> Result<Accepted, IngestError> {
        if delivery.body.len() > self.max_body_bytes {
            return Err(IngestError::BodyTooLarge {
                size: delivery.body.len(),
                limit: self.max_body_bytes,
            });
        }
        let signature = delivery.signature.clone()?;
        let secrets = self
            .secrets
            .get()
            .await
            .map_err(IngestError::SecretsUnavailable)?;
        signature.verify_any(delivery.body, &scheme_secrets(&secrets, signature.scheme))?;

        let normalised = normalise(
            delivery.body,
            &DeliveryContext {
                source: signature.scheme,
                event_header: delivery.event_header,
                idempotency_key: delivery.idempotency_key,
                received_at: delivery.received_at,
            },
        )?;
        for skipped in &normalised.skipped {
            tracing::info!(what = %skipped.what, reason = %skipped.reason, "event not actionable; not enqueued");
        }
        let enqueued = enqueue_all(&self.queue, &normalised.envelopes, &self.retry).await?;
        for envelope in &normalised.envelopes {
            tracing::debug!(event_id = %envelope.event_id, kind = envelope.kind.as_str(), group = ?envelope.conversation, "enqueued");
        }
        Ok(Accepted {
            source: signature.scheme,
            enqueued,
            skipped: normalised.skipped,
        })
    }

    /// Meta's GET handshake: the challenge when the mode is `subscribe` and the token matches.
    pub async fn verify(&self, handshake: &Handshake<'_>) -> Result<String, HandshakeError> {
        let (Some("subscribe"), Some(token), Some(challenge)) =
            (handshake.mode, handshake.verify_token, handshake.challenge)
        else {
            return Err(HandshakeError::Refused);
        };
        if challenge.is_empty() || challenge.len() > MAX_CHALLENGE_LEN {
            return Err(HandshakeError::Refused);
        }
        let secrets = self
            .secrets
            .get()
            .await
            .map_err(HandshakeError::SecretsUnavailable)?;
        match &secrets.meta_verify_token {
            Some(expected) if tokens_match(expected, token) => Ok(challenge.to_owned()),
            _ => Err(HandshakeError::Refused),
        }
    }
}

/// The keys a scheme's signatures may be made with. Kapso signs phone-number webhooks with
/// the webhook's secret and project webhooks with the project's, on the same header.
fn scheme_secrets(secrets: &AppSecrets, scheme: Source) -> [Option<&SecretString>; 2] {
    match scheme {
        Source::Meta => [secrets.meta_app_secret.as_ref(), None],
        Source::Kapso => [
            secrets.kapso_webhook_secret.as_ref(),
            secrets.kapso_project_webhook_secret.as_ref(),
        ],
    }
}

/// Compares digests rather than the tokens, so the time taken says nothing about the token.
fn tokens_match(expected: &SecretString, presented: &str) -> bool {
    let expected = expected.expose_secret();
    !expected.is_empty()
        && Sha256::digest(expected.as_bytes()) == Sha256::digest(presented.as_bytes())
}
