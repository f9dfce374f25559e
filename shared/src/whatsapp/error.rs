//! Why a send failed, and the one place Cloud API answers are mapped to that.
//!
//! Meta answers errors as `{"error": {code, title, message, error_data: {details}}}`; Kapso's
//! proxy forwards those unchanged and adds its own HTTP 409 when another message of the same
//! conversation is still in flight, and its own HTTP 429 (`{"error":"Rate limit exceeded"}` with
//! `Retry-After`) when its rate limit is hit. Messages here come from the APIs' error text only:
//! never the credential, never the message content.
//!
//! Callers must tell three outcomes apart, and the variants say which one they are:
//! - certainly not sent ([`WhatsAppError::is_retryable`] and not
//!   [`WhatsAppError::may_have_been_delivered`]): release and retry later;
//! - maybe sent ([`WhatsAppError::may_have_been_delivered`]): never send again, reconcile by the
//!   status webhook;
//! - refused for good (neither): record the failure.

use std::time::Duration;

use serde_json::Value;

use crate::ingest::webhook::meta::ErrorObject;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhatsAppError {
    /// More than 24 hours since the customer last wrote: only a template may be sent (131047).
    #[error("outside the 24-hour customer service window (code {code}): {message}")]
    OutsideWindow { code: i64, message: String },
    /// A rate limit was hit: any HTTP 429 (Kapso's own carries no code), or Meta's codes 130429,
    /// 131056, 80007 and 4 on any status. The request was not acted on; worth retrying after
    /// `retry_after` (the `Retry-After` header in seconds, when the API sent one).
    #[error("throttled by the WhatsApp API{}{}: {message}",
        code.map(|c| format!(" (code {c})")).unwrap_or_default(),
        retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    Throttled {
        code: Option<i64>,
        retry_after: Option<Duration>,
        message: String,
    },
    /// The credential is invalid or expired (0, 190); the caller marks the integration `error`.
    #[error("the access token or API key was refused (code {code}): {message}")]
    TokenInvalid { code: i64, message: String },
    /// The recipient cannot receive the message, e.g. not on WhatsApp (131026).
    #[error("the message is undeliverable to this recipient (code {code}): {message}")]
    Undeliverable { code: i64, message: String },
    /// Meta's policy enforcement blocked the send (368, 131048, 131049).
    #[error("blocked by WhatsApp policy (code {code}): {message}")]
    PolicyBlocked { code: i64, message: String },
    /// The request itself is wrong (100, 131008, 131009, 132xxx), or failed our own validation
    /// before it was sent (`code: None`).
    #[error("invalid parameter{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    InvalidParameter { code: Option<i64>, message: String },
    /// Kapso's HTTP 409: another message to this conversation is still being sent.
    #[error("another message to this conversation is in flight")]
    InFlight,
    /// The request certainly never reached the API: no connection could be opened (refused,
    /// unresolvable, or the connect timed out), or the deadline had passed before any attempt.
    #[error("the WhatsApp API could not be reached: {message}")]
    Unreachable { message: String },
    /// A timeout, a broken connection or a server error without a known code. The request may
    /// or may not have been acted on, so a message send is never repeated on it.
    #[error("transient failure{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        status: Option<u16>,
        message: String,
    },
    /// The API answered 2xx but its answer could not be read (not JSON, no or an invalid message
    /// id, the body broke off). It may well have sent the message, so this is no refusal: never
    /// send it again; the status webhook tells what became of it.
    #[error("the WhatsApp API accepted the request (HTTP {status}) but {message}")]
    Unconfirmed { status: u16, message: String },
    /// Any other refusal.
    #[error("rejected by the WhatsApp API (HTTP {status}{}): {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
}

impl WhatsAppError {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::InFlight
                | Self::Unreachable { .. }
                | Self::Transient { .. }
        )
    }

    /// Whether the API may have acted on the request despite the error. Sending a message again
    /// after such an error could deliver it twice.
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Unconfirmed { .. })
    }

    /// Meta's error code, when the API gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::OutsideWindow { code, .. }
            | Self::TokenInvalid { code, .. }
            | Self::Undeliverable { code, .. }
            | Self::PolicyBlocked { code, .. } => Some(*code),
            Self::Throttled { code, .. }
            | Self::InvalidParameter { code, .. }
            | Self::Rejected { code, .. } => *code,
            Self::InFlight
            | Self::Unreachable { .. }
            | Self::Transient { .. }
            | Self::Unconfirmed { .. } => None,
        }
    }

    /// The delay the API asked for before a retry, when it is throttling.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps a non-2xx answer. `via_kapso` because only Kapso's 409 means "in flight";
    /// `retry_after` is the answer's `Retry-After` header, if any.
    pub(crate) fn from_response(
        status: u16,
        body: &[u8],
        via_kapso: bool,
        retry_after: Option<&str>,
    ) -> Self {
        if via_kapso && status == 409 {
            return Self::InFlight;
        }
        let (code, message) = match parse_error_body(body) {
            ApiError::Coded(error) => (Some(error.code), describe(&error)),
            ApiError::Uncoded(message) => (None, message),
            ApiError::Unreadable => (None, format!("HTTP {status}")),
        };
        // A 429 is refused before it is acted on, whoever sends it and whatever code it carries:
        // reading it as "maybe delivered" would leave the reply unsent for good.
        if status == 429 || code.is_some_and(is_throttling_code) {
            return Self::Throttled {
                code,
                retry_after: retry_after.and_then(parse_retry_after),
                message,
            };
        }
        match code {
            Some(code) => Self::from_code(status, code, message),
            None => Self::uncoded(status, message),
        }
    }

    fn from_code(status: u16, code: i64, message: String) -> Self {
        match code {
            131047 => Self::OutsideWindow { code, message },
            0 | 190 => Self::TokenInvalid { code, message },
            131026 => Self::Undeliverable { code, message },
            368 | 131048 | 131049 => Self::PolicyBlocked { code, message },
            100 | 131008 | 131009 | 132000..=132999 => Self::InvalidParameter {
                code: Some(code),
                message,
            },
            _ if status >= 500 => Self::Transient {
                status: Some(status),
                message: format!("code {code}: {message}"),
            },
            _ => Self::Rejected {
                status,
                code: Some(code),
                message,
            },
        }
    }

    fn uncoded(status: u16, message: String) -> Self {
        // A 408 without a Meta code still means "later", like a 5xx; whether the request was
        // acted on is unknown.
        if status >= 500 || status == 408 {
            Self::Transient {
                status: Some(status),
                message,
            }
        } else {
            Self::Rejected {
                status,
                code: None,
                message,
            }
        }
    }
}

/// Meta's rate-limit codes: message throughput (130429), pair rate (131056), account (80007) and
/// application (4) limits.
fn is_throttling_code(code: i64) -> bool {
    matches!(code, 130429 | 131056 | 80007 | 4)
}

/// `Retry-After` as delta-seconds. The HTTP-date form is ignored: neither Kapso nor Meta sends
/// it, and without it the retry policy's own delays apply.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits but too large for a u64: a wait that long never fits before any deadline.
    Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)))
}

enum ApiError {
    Coded(ErrorObject),
    /// Kapso's own errors are `{"error": "text"}`.
    Uncoded(String),
    Unreadable,
}

fn parse_error_body(body: &[u8]) -> ApiError {
    let Ok(Value::Object(mut root)) = serde_json::from_slice::<Value>(body) else {
        return ApiError::Unreadable;
    };
    match root.remove("error") {
        Some(Value::String(text)) => ApiError::Uncoded(text),
        Some(error @ Value::Object(_)) => match serde_json::from_value::<ErrorObject>(error) {
            Ok(error) => ApiError::Coded(error),
            Err(_) => ApiError::Unreadable,
        },
        _ => ApiError::Unreadable,
    }
}

/// Meta's message (or title), with the details that usually say what to fix.
fn describe(error: &ErrorObject) -> String {
    let head = error
        .message
        .as_deref()
        .or(error.title.as_deref())
        .unwrap_or("no message");
    match error.error_data.as_ref().and_then(|d| d.details.as_deref()) {
        Some(details) if details != head => format!("{head}: {details}"),
        _ => head.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_error(code: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": {
                "message": "(#code) Something",
                "type": "OAuthException",
                "code": code,
                "error_data": { "messaging_product": "whatsapp", "details": "What to fix" },
                "fbtrace_id": "AbC"
            }
        }))
        .unwrap()
    }

    fn variant(error: &WhatsAppError) -> &'static str {
        match error {
            WhatsAppError::OutsideWindow { .. } => "OutsideWindow",
            WhatsAppError::Throttled { .. } => "Throttled",
            WhatsAppError::TokenInvalid { .. } => "TokenInvalid",
            WhatsAppError::Undeliverable { .. } => "Undeliverable",
            WhatsAppError::PolicyBlocked { .. } => "PolicyBlocked",
            WhatsAppError::InvalidParameter { .. } => "InvalidParameter",
            WhatsAppError::InFlight => "InFlight",
            WhatsAppError::Transient { .. } => "Transient",
            WhatsAppError::Unreachable { .. } => "Unreachable",
            WhatsAppError::Unconfirmed { .. } => "Unconfirmed",
            WhatsAppError::Rejected { .. } => "Rejected",
        }
    }

    #[test]
    fn meta_error_codes_map_to_their_variants_and_keep_the_code() {
        let cases = [
            (131047, 400, "OutsideWindow"),
            (130429, 400, "Throttled"),
            (131056, 400, "Throttled"),
            (80007, 400, "Throttled"),
            (4, 400, "Throttled"),
            (0, 401, "TokenInvalid"),
            (190, 401, "TokenInvalid"),
            (131026, 400, "Undeliverable"),
            (368, 400, "PolicyBlocked"),
            (131048, 400, "PolicyBlocked"),
            (131049, 400, "PolicyBlocked"),
            (100, 400, "InvalidParameter"),
            (131008, 400, "InvalidParameter"),
            (131009, 400, "InvalidParameter"),
            (132001, 404, "InvalidParameter"),
            (131051, 400, "Rejected"),
        ];
        for (code, status, expected) in cases {
            let error = WhatsAppError::from_response(status, &meta_error(code), false, None);
            assert_eq!(variant(&error), expected, "code {code}: {error:?}");
            assert_eq!(error.code(), Some(code));
        }
    }

    #[test]
    fn an_unknown_code_on_a_server_error_is_transient() {
        let error = WhatsAppError::from_response(500, &meta_error(131000), false, None);
        assert_eq!(variant(&error), "Transient");
        assert!(error.is_retryable());
    }

    #[test]
    fn only_throttling_in_flight_and_transient_errors_are_retryable() {
        let retryable = [
            WhatsAppError::from_response(429, &meta_error(130429), false, None),
            WhatsAppError::InFlight,
            WhatsAppError::from_response(503, b"", false, None),
        ];
        assert!(retryable.iter().all(WhatsAppError::is_retryable));
        let final_ = [131047, 190, 131026, 368, 100, 131051]
            .map(|code| WhatsAppError::from_response(400, &meta_error(code), false, None));
        assert!(final_.iter().all(|e| !e.is_retryable()), "{final_:?}");
    }

    #[test]
    fn a_409_means_in_flight_only_from_kapso() {
        let body = br#"{"error":"another message is in flight for this conversation"}"#;
        assert_eq!(
            WhatsAppError::from_response(409, body, true, None),
            WhatsAppError::InFlight
        );
        assert!(matches!(
            WhatsAppError::from_response(409, body, false, None),
            WhatsAppError::Rejected {
                status: 409,
                code: None,
                ..
            }
        ));
    }

    #[test]
    fn a_server_error_without_a_code_is_transient() {
        let error = WhatsAppError::from_response(502, b"<html>Bad Gateway</html>", false, None);
        assert_eq!(
            error,
            WhatsAppError::Transient {
                status: Some(502),
                message: "HTTP 502".into()
            }
        );
        assert!(error.is_retryable());
    }

    #[test]
    fn the_message_joins_meta_message_and_details() {
        let error = WhatsAppError::from_response(400, &meta_error(131047), false, None);
        assert_eq!(
            error,
            WhatsAppError::OutsideWindow {
                code: 131047,
                message: "(#code) Something: What to fix".into()
            }
        );
    }

    #[test]
    fn kapso_text_errors_keep_their_text() {
        let error =
            WhatsAppError::from_response(401, br#"{"error":"Invalid API key"}"#, true, None);
        assert_eq!(
            error,
            WhatsAppError::Rejected {
                status: 401,
                code: None,
                message: "Invalid API key".into()
            }
        );
    }

    #[test]
    fn kapsos_rate_limit_without_a_code_is_throttled_with_its_retry_after() {
        let error = WhatsAppError::from_response(
            429,
            br#"{"error":"Rate limit exceeded"}"#,
            true,
            Some("60"),
        );
        assert_eq!(
            error,
            WhatsAppError::Throttled {
                code: None,
                retry_after: Some(Duration::from_secs(60)),
                message: "Rate limit exceeded".into()
            }
        );
        assert!(error.is_retryable());
        assert!(!error.may_have_been_delivered());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn any_429_is_throttled_whatever_its_body_or_code() {
        for body in [
            meta_error(131051),
            meta_error(131047),
            b"<html>Too Many Requests</html>".to_vec(),
            Vec::new(),
        ] {
            for via_kapso in [true, false] {
                let error = WhatsAppError::from_response(429, &body, via_kapso, None);
                assert_eq!(variant(&error), "Throttled", "{error:?}");
                assert!(error.is_retryable() && !error.may_have_been_delivered());
            }
        }
    }

    #[test]
    fn metas_throttling_codes_keep_their_code_and_the_retry_after_header() {
        let error = WhatsAppError::from_response(400, &meta_error(130429), false, Some(" 7 "));
        assert_eq!(error.code(), Some(130429));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn a_retry_after_that_is_not_a_number_of_seconds_is_ignored() {
        for header in ["Wed, 21 Oct 2026 07:28:00 GMT", "-5", "1.5", ""] {
            let error = WhatsAppError::from_response(429, b"", true, Some(header));
            assert_eq!(error.retry_after(), None, "{header:?}");
        }
    }

    #[test]
    fn an_absurdly_long_retry_after_is_kept_as_a_very_long_wait() {
        let error = WhatsAppError::from_response(429, b"", true, Some("99999999999999999999999"));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn an_unconfirmed_send_may_have_been_delivered_and_is_never_retried() {
        let error = WhatsAppError::Unconfirmed {
            status: 200,
            message: "its answer is not JSON".into(),
        };
        assert!(error.may_have_been_delivered());
        assert!(!error.is_retryable());
        assert_eq!(error.code(), None);
    }

    #[test]
    fn only_the_errors_that_certainly_sent_nothing_are_retryable_without_risk() {
        let certainly_not_sent = [
            WhatsAppError::from_response(429, b"", true, None),
            WhatsAppError::InFlight,
            WhatsAppError::Unreachable {
                message: "connection refused".into(),
            },
        ];
        assert!(
            certainly_not_sent
                .iter()
                .all(|e| e.is_retryable() && !e.may_have_been_delivered())
        );
    }
}
