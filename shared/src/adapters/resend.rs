//! The Resend client behind the email port: `POST {base}/emails` with the key as a Bearer token
//! and the email's idempotency key as `Idempotency-Key`. Resend's errors
//! (`{"statusCode", "name", "message"}`) become typed [`EmailError`]s.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::reminders::email::{Email, EmailError, EmailSender};

/// Resend's API root.
pub const RESEND_BASE_URL: &str = "https://api.resend.com";

/// Sends email through Resend. Build it once per process: it holds the connection pool.
#[derive(Debug, Clone)]
pub struct ResendClient {
    http: reqwest::Client,
    base_url: String,
    from: String,
    request_timeout: Duration,
}

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ResendClient {
    /// `from` is the sender (`Shop <reminders@example.com>`), on a domain verified with Resend.
    ///
    /// # Panics
    ///
    /// When the TLS backend cannot be set up, as `reqwest::Client::new` does; built at cold start.
    pub fn new(
        base_url: impl Into<String>,
        from: impl Into<String>,
        request_timeout: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(request_timeout / 2)
            .build()
            .expect("the HTTP client (TLS backend, resolver) could not be initialised");
        Self {
            http,
            base_url: base_url.into(),
            from: from.into(),
            request_timeout,
        }
    }
}

impl EmailSender for ResendClient {
    #[tracing::instrument(skip_all)]
    async fn send(
        &self,
        api_key: &SecretString,
        email: &Email,
        deadline: Instant,
    ) -> Result<String, EmailError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(EmailError::Unreachable {
                message: "the deadline passed before the email could be sent".into(),
            });
        }
        let url = format!("{}/emails", self.base_url.trim_end_matches('/'));
        let body = json!({
            "from": self.from,
            "to": [email.to.as_str()],
            "subject": email.subject,
            "text": email.text,
        });
        let response = self
            .http
            .post(url)
            .bearer_auth(api_key.expose_secret())
            .header("Idempotency-Key", &email.idempotency_key)
            .timeout(self.request_timeout.min(left))
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    EmailError::Unreachable {
                        message: "could not connect to the email API".into(),
                    }
                } else {
                    EmailError::Transient {
                        status: None,
                        message: if e.is_timeout() {
                            "the request timed out".into()
                        } else {
                            "the connection failed".into()
                        },
                    }
                }
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await;
        if (200..300).contains(&status) {
            let bytes = bytes.map_err(|_| EmailError::Unconfirmed {
                status,
                message: "its answer broke off".into(),
            })?;
            return serde_json::from_slice::<Accepted>(&bytes)
                .map(|a| a.id)
                .map_err(|_| EmailError::Unconfirmed {
                    status,
                    message: "its answer carries no email id".into(),
                });
        }
        let error: ErrorBody = bytes
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(ErrorBody {
                name: None,
                message: None,
            });
        Err(map_error(status, error, retry_after))
    }
}

/// The one mapping of Resend's error answers.
fn map_error(status: u16, error: ErrorBody, retry_after: Option<Duration>) -> EmailError {
    let name = error.name.unwrap_or_else(|| "unknown".into());
    let message = error.message.unwrap_or_else(|| format!("HTTP {status}"));
    match (status, name.as_str()) {
        // Rate limits, and another request with the same key still in flight: not acted on.
        (429, _) | (409, "concurrent_idempotent_requests") => EmailError::Throttled {
            retry_after,
            message,
        },
        (500..=599, _) => EmailError::Transient {
            status: Some(status),
            message,
        },
        _ => EmailError::Rejected {
            status,
            name,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str) -> ErrorBody {
        ErrorBody {
            name: Some(name.into()),
            message: Some("m".into()),
        }
    }

    #[test]
    fn a_validation_error_is_refused_for_good() {
        let e = map_error(422, body("validation_error"), None);
        assert!(!e.is_retryable());
        assert!(!e.may_have_been_delivered());
        assert!(e.to_string().contains("validation_error"));
    }

    #[test]
    fn a_rate_limit_is_retried_after_the_asked_delay() {
        let e = map_error(
            429,
            body("rate_limit_exceeded"),
            Some(Duration::from_secs(2)),
        );
        assert_eq!(
            e,
            EmailError::Throttled {
                retry_after: Some(Duration::from_secs(2)),
                message: "m".into()
            }
        );
    }

    #[test]
    fn a_reused_key_with_another_body_is_refused_but_a_concurrent_one_is_retried() {
        assert!(!map_error(409, body("invalid_idempotent_request"), None).is_retryable());
        assert!(map_error(409, body("concurrent_idempotent_requests"), None).is_retryable());
    }
}
