//! The email port: one email out, and why it was not sent, in the same three outcomes as the
//! WhatsApp client (certainly not sent / may have been sent / refused for good).

use std::future::Future;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::reminders::model::EmailAddress;

/// One email to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    /// Sent as `Idempotency-Key`: the provider sends one email per key (Resend: for 24 h), so a
    /// send whose outcome was lost can be repeated safely within that time.
    pub idempotency_key: String,
}

/// Why an email was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// No API key in the app secret: nothing can be sent until one is configured.
    #[error("no email API key is configured")]
    NotConfigured,
    /// Rate limited (HTTP 429), or another request with the same idempotency key is in flight:
    /// not acted on.
    #[error("throttled by the email API{}: {message}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    /// No connection could be opened, or the deadline passed first: nothing was sent.
    #[error("the email API could not be reached: {message}")]
    Unreachable { message: String },
    /// A timeout or a 5xx: it may have been sent.
    #[error("transient failure{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        status: Option<u16>,
        message: String,
    },
    /// A 2xx whose answer could not be read: it was probably sent.
    #[error("the email API accepted the request (HTTP {status}) but {message}")]
    Unconfirmed { status: u16, message: String },
    /// Refused for good (validation, a domain not verified, a bad key).
    #[error("rejected by the email API (HTTP {status}, {name}): {message}")]
    Rejected {
        status: u16,
        name: String,
        message: String,
    },
}

impl EmailError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Unreachable { .. } | Self::Transient { .. }
        )
    }

    /// Whether the API may have acted on the request despite the error.
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Unconfirmed { .. })
    }
}

/// Sends email. The key comes from the app secret, read by the caller through its cache.
pub trait EmailSender: Send + Sync + 'static {
    /// Sends `email`; the provider's id of it on success.
    fn send(
        &self,
        api_key: &SecretString,
        email: &Email,
        deadline: Instant,
    ) -> impl Future<Output = Result<String, EmailError>> + Send;
}
