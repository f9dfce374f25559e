//! Why a send failed, and the one place Cloud API answers are mapped to that.
//!
//! Meta answers errors as `{"error": {code, title, message, error_data: {details}}}`; Kapso's
//! proxy forwards those unchanged and adds its own HTTP 409 when another message of the same
//! conversation is still in flight. Messages here come from Meta's error text only: never the
//! credential, never the message content.

use serde_json::Value;

use crate::webhook::meta::ErrorObject;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhatsAppError {
    /// More than 24 hours since the customer last wrote: only a template may be sent (131047).
    #[error("outside the 24-hour customer service window (code {code}): {message}")]
    OutsideWindow { code: i64, message: String },
    /// A rate limit was hit (130429, 131056, 80007, 4); worth retrying after a pause.
    #[error("throttled by the WhatsApp API (code {code}): {message}")]
    Throttled { code: i64, message: String },
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
    /// No connection could be made: the request certainly never reached the API.
    #[error("the WhatsApp API could not be reached: {message}")]
    Unreachable { message: String },
    /// A timeout, a broken connection or a server error without a known code. The request may
    /// or may not have been acted on, so a message send is never repeated on it.
    #[error("transient failure{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        status: Option<u16>,
        message: String,
    },
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
        matches!(self, Self::Transient { .. })
    }

    /// Meta's error code, when the API gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::OutsideWindow { code, .. }
            | Self::Throttled { code, .. }
            | Self::TokenInvalid { code, .. }
            | Self::Undeliverable { code, .. }
            | Self::PolicyBlocked { code, .. } => Some(*code),
            Self::InvalidParameter { code, .. } | Self::Rejected { code, .. } => *code,
            Self::InFlight | Self::Unreachable { .. } | Self::Transient { .. } => None,
        }
    }

    /// Maps a non-2xx answer. `via_kapso` because only Kapso's 409 means "in flight".
    pub(crate) fn from_response(status: u16, body: &[u8], via_kapso: bool) -> Self {
        if via_kapso && status == 409 {
            return Self::InFlight;
        }
        match parse_error_body(body) {
            ApiError::Coded(error) => Self::from_code(status, error.code, describe(&error)),
            ApiError::Uncoded(message) => Self::uncoded(status, message),
            ApiError::Unreadable => Self::uncoded(status, format!("HTTP {status}")),
        }
    }

    fn from_code(status: u16, code: i64, message: String) -> Self {
        match code {
            131047 => Self::OutsideWindow { code, message },
            130429 | 131056 | 80007 | 4 => Self::Throttled { code, message },
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
        // 408 and 429 without a Meta code still mean "later", like a 5xx.
        if status >= 500 || status == 408 || status == 429 {
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
            let error = WhatsAppError::from_response(status, &meta_error(code), false);
            assert_eq!(variant(&error), expected, "code {code}: {error:?}");
            assert_eq!(error.code(), Some(code));
        }
    }

    #[test]
    fn an_unknown_code_on_a_server_error_is_transient() {
        let error = WhatsAppError::from_response(500, &meta_error(131000), false);
        assert_eq!(variant(&error), "Transient");
        assert!(error.is_retryable());
    }

    #[test]
    fn only_throttling_in_flight_and_transient_errors_are_retryable() {
        let retryable = [
            WhatsAppError::from_response(429, &meta_error(130429), false),
            WhatsAppError::InFlight,
            WhatsAppError::from_response(503, b"", false),
        ];
        assert!(retryable.iter().all(WhatsAppError::is_retryable));
        let final_ = [131047, 190, 131026, 368, 100, 131051]
            .map(|code| WhatsAppError::from_response(400, &meta_error(code), false));
        assert!(final_.iter().all(|e| !e.is_retryable()), "{final_:?}");
    }

    #[test]
    fn a_409_means_in_flight_only_from_kapso() {
        let body = br#"{"error":"another message is in flight for this conversation"}"#;
        assert_eq!(
            WhatsAppError::from_response(409, body, true),
            WhatsAppError::InFlight
        );
        assert!(matches!(
            WhatsAppError::from_response(409, body, false),
            WhatsAppError::Rejected {
                status: 409,
                code: None,
                ..
            }
        ));
    }

    #[test]
    fn a_server_error_without_a_code_is_transient() {
        let error = WhatsAppError::from_response(502, b"<html>Bad Gateway</html>", false);
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
        let error = WhatsAppError::from_response(400, &meta_error(131047), false);
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
        let error = WhatsAppError::from_response(401, br#"{"error":"Invalid API key"}"#, true);
        assert_eq!(
            error,
            WhatsAppError::Rejected {
                status: 401,
                code: None,
                message: "Invalid API key".into()
            }
        );
    }
}
