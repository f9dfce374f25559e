//! The one WhatsApp Cloud API client: sends a message through Kapso's Meta proxy or Meta's Graph
//! API directly, retrying what may succeed later within the caller's deadline.

mod error;
mod messages;

pub use error::WhatsAppError;
pub use messages::{
    ListRow, ListSection, MAX_BUTTON_ID, MAX_BUTTON_TITLE, MAX_CALLBACK_DATA, MAX_CAPTION,
    MAX_HEADER_OR_FOOTER, MAX_INTERACTIVE_BODY, MAX_LIST_ROWS, MAX_LIST_SECTIONS, MAX_LIST_TITLE,
    MAX_REPLY_BUTTONS, MAX_ROW_DESCRIPTION, MAX_ROW_ID, MAX_TEXT_BODY, MediaKind, MediaSource,
    Outgoing, OutgoingKind, ReplyButton, request_body,
};

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ids::{PhoneNumberId, Wamid};
use crate::retry::{self, RetryPolicy};

/// The least time worth giving an attempt. A retry that cannot have this much before the
/// deadline is not made: it would only time out and leave the caller no time to react.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(250);

/// Where the APIs are and how long one request may take.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// Kapso's API root, e.g. `https://api.kapso.ai`.
    pub kapso_base_url: String,
    /// Meta's Graph API root, e.g. `https://graph.facebook.com`.
    pub meta_base_url: String,
    /// The Graph API version in the path, e.g. `v24.0`.
    pub graph_version: String,
    /// The longest one HTTP request may take; shortened further by the caller's deadline.
    pub request_timeout: Duration,
}

/// How one integration reaches the API.
#[derive(Debug, Clone)]
pub enum Channel {
    /// Through Kapso's Meta proxy, authenticated by `X-API-Key`.
    Kapso { api_key: SecretString },
    /// Straight to Meta's Graph API, authenticated by a bearer token.
    Meta { access_token: SecretString },
}

/// A message the API accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The id of the sent message; `None` for mark-as-read, which creates no message.
    pub wamid: Option<Wamid>,
    /// How many requests it took, including the one that succeeded.
    pub attempts: u32,
}

/// Sends WhatsApp messages. Build it once per process and share it: it holds the connection pool.
#[derive(Debug, Clone)]
pub struct WhatsAppClient {
    http: reqwest::Client,
    config: WhatsAppConfig,
    retry: RetryPolicy,
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentMessage>,
    #[serde(default)]
    success: Option<bool>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

impl WhatsAppClient {
    /// Builds the HTTP client once; `retry` spaces the retries of every send.
    pub fn new(config: WhatsAppConfig, retry: RetryPolicy) -> Self {
        Self {
            http: reqwest::Client::new(),
            config,
            retry,
        }
    }

    /// Sends `message` from `phone_number_id`, retrying throttling, Kapso's in-flight conflicts
    /// and transient failures by the retry policy as long as another attempt fits before
    /// `deadline`. The last error is returned when retries run out or would not fit.
    #[tracing::instrument(skip_all, fields(phone_number_id = %phone_number_id, kind = message.kind_name()))]
    pub async fn send(
        &self,
        channel: &Channel,
        phone_number_id: &PhoneNumberId,
        message: &Outgoing,
        deadline: Instant,
    ) -> Result<Sent, WhatsAppError> {
        message.validate()?;
        let (header_name, credential) = auth_header(channel)?;
        let url = self.url(channel, phone_number_id);
        let body = request_body(message);
        let is_mark_read = matches!(message.kind, OutgoingKind::MarkRead { .. });
        let via_kapso = matches!(channel, Channel::Kapso { .. });

        let mut delays = self.retry.delays();
        let mut attempts: u32 = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WhatsAppError::Transient {
                    status: None,
                    message: "the deadline passed before the message could be sent".into(),
                });
            }
            attempts += 1;
            let request = self
                .http
                .post(&url)
                .header(header_name, credential.clone())
                .timeout(self.config.request_timeout.min(left))
                .json(&body);
            let error = match attempt(request, is_mark_read, via_kapso).await {
                Ok(wamid) => return Ok(Sent { wamid, attempts }),
                Err(error) => error,
            };
            // A message whose first attempt may have landed is not sent again; reading receipts
            // are idempotent and may be.
            if !error.is_retryable() || (error.may_have_been_delivered() && !is_mark_read) {
                return Err(error);
            }
            let Some(delay) = delays.next() else {
                return Err(error);
            };
            if !retry::fits_before(deadline, delay, MIN_ATTEMPT_TIME) {
                tracing::debug!(attempts, "no time left before the deadline for a retry");
                return Err(error);
            }
            tracing::debug!(attempts, code = ?error.code(), ?delay, "retrying the send");
            tokio::time::sleep(delay).await;
        }
    }

    fn url(&self, channel: &Channel, phone_number_id: &PhoneNumberId) -> String {
        let version = self.config.graph_version.trim_matches('/');
        let id = phone_number_id.as_str();
        match channel {
            Channel::Kapso { .. } => format!(
                "{}/meta/whatsapp/{version}/{id}/messages",
                self.config.kapso_base_url.trim_end_matches('/')
            ),
            Channel::Meta { .. } => format!(
                "{}/{version}/{id}/messages",
                self.config.meta_base_url.trim_end_matches('/')
            ),
        }
    }
}

/// The auth header of `channel`, marked sensitive so it never shows in reqwest's `Debug` output.
fn auth_header(channel: &Channel) -> Result<(&'static str, HeaderValue), WhatsAppError> {
    let (name, value) = match channel {
        Channel::Kapso { api_key } => ("x-api-key", HeaderValue::from_str(api_key.expose_secret())),
        Channel::Meta { access_token } => (
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", access_token.expose_secret())),
        ),
    };
    match value {
        Ok(mut value) => {
            value.set_sensitive(true);
            Ok((name, value))
        }
        // A credential that cannot even be put in a header will never work: report it as
        // refused, so the caller marks the integration errored as it would for Meta's code 0.
        Err(_) => Err(WhatsAppError::TokenInvalid {
            code: 0,
            message: "the credential contains characters not allowed in an HTTP header".into(),
        }),
    }
}

/// One request and its answer.
async fn attempt(
    request: reqwest::RequestBuilder,
    is_mark_read: bool,
    via_kapso: bool,
) -> Result<Option<Wamid>, WhatsAppError> {
    let response = request.send().await.map_err(network_error)?;
    let status = response.status().as_u16();
    tracing::debug!(status, "whatsapp api answered");
    let body = response.bytes().await;
    if !(200..300).contains(&status) {
        let body = body.unwrap_or_default();
        return Err(WhatsAppError::from_response(status, &body, via_kapso));
    }
    // From here the API has accepted the message. Whatever goes wrong reading its answer must not
    // be retried, or the customer could get the message twice.
    let accepted_but = |what: &str| WhatsAppError::Rejected {
        status,
        code: None,
        message: format!("the API accepted the request but {what}"),
    };
    let body = body.map_err(|_| accepted_but("its answer could not be read"))?;
    let answer: SendResponse =
        serde_json::from_slice(&body).map_err(|_| accepted_but("its answer is not JSON"))?;
    if is_mark_read {
        return match answer.success {
            Some(false) => Err(accepted_but("answered success: false")),
            _ => Ok(None),
        };
    }
    let id = answer
        .messages
        .into_iter()
        .next()
        .ok_or_else(|| accepted_but("named no message id"))?
        .id;
    Wamid::parse(id)
        .map(Some)
        .map_err(|e| accepted_but(&format!("its message id is invalid: {e}")))
}

/// A request that got no HTTP answer. The text keeps the cause chain; reqwest's errors name the
/// URL, which holds the phone number id but never the credential.
fn network_error(error: reqwest::Error) -> WhatsAppError {
    let connect = error.is_connect() && !error.is_timeout();
    let mut message = if error.is_timeout() {
        "the request timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if connect {
        return WhatsAppError::Unreachable { message };
    }
    WhatsAppError::Transient {
        status: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WaId;
    use serde_json::json;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const PHONE_NUMBER_ID: &str = "106540352242922";
    const TOKEN: &str = "EAAJBsecret-token";
    const API_KEY: &str = "kapso-secret-key";

    fn client(server: &MockServer) -> WhatsAppClient {
        fast_client(server, Duration::from_secs(5))
    }

    fn fast_client(server: &MockServer, request_timeout: Duration) -> WhatsAppClient {
        // Trailing slashes on purpose: they must not double up in the path.
        WhatsAppClient::new(
            WhatsAppConfig {
                kapso_base_url: format!("{}/", server.uri()),
                meta_base_url: format!("{}/", server.uri()),
                graph_version: "v24.0".into(),
                request_timeout,
            },
            RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(5)),
        )
    }

    fn kapso() -> Channel {
        Channel::Kapso {
            api_key: SecretString::from(API_KEY),
        }
    }

    fn meta() -> Channel {
        Channel::Meta {
            access_token: SecretString::from(TOKEN),
        }
    }

    fn phone_number_id() -> PhoneNumberId {
        PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap()
    }

    fn hello() -> Outgoing {
        Outgoing::text(WaId::parse("16505551234").unwrap(), "Hello there")
    }

    fn in_ten_seconds() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    fn accepted() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": "16505551234", "wa_id": "16505551234" }],
            "messages": [{ "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA" }]
        }))
    }

    fn meta_error(status: u16, code: i64) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "error": {
                "message": "(#code) Meta says no",
                "type": "OAuthException",
                "code": code,
                "error_data": { "messaging_product": "whatsapp", "details": "Details" },
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
            }
        }))
    }

    const META_PATH: &str = "/v24.0/106540352242922/messages";
    const KAPSO_PATH: &str = "/meta/whatsapp/v24.0/106540352242922/messages";

    #[tokio::test]
    async fn kapso_mode_posts_to_the_proxy_path_with_the_api_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(KAPSO_PATH))
            .and(header("x-api-key", API_KEY))
            .and(body_partial_json(json!({
                "messaging_product": "whatsapp",
                "to": "16505551234",
                "type": "text",
                "text": { "body": "Hello there" }
            })))
            .respond_with(accepted())
            .expect(1)
            .mount(&server)
            .await;

        let sent = client(&server)
            .send(&kapso(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap();

        assert_eq!(
            sent,
            Sent {
                wamid: Some(
                    Wamid::parse("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA")
                        .unwrap()
                ),
                attempts: 1
            }
        );
    }

    #[tokio::test]
    async fn meta_mode_posts_to_the_graph_path_with_a_bearer_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(META_PATH))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_partial_json(
                json!({ "type": "text", "to": "16505551234" }),
            ))
            .respond_with(accepted())
            .expect(1)
            .mount(&server)
            .await;

        let sent = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap();

        assert_eq!(sent.attempts, 1);
        assert!(sent.wamid.is_some());
        let requests = server.received_requests().await.unwrap();
        assert!(!requests[0].headers.contains_key("x-api-key"));
    }

    #[tokio::test]
    async fn mark_as_read_succeeds_without_a_wamid() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(META_PATH))
            .and(body_partial_json(json!({
                "status": "read",
                "message_id": "wamid.IN",
                "typing_indicator": { "type": "text" }
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": true })))
            .expect(1)
            .mount(&server)
            .await;

        let message = Outgoing::mark_read(Wamid::parse("wamid.IN").unwrap(), true);
        let sent = client(&server)
            .send(&meta(), &phone_number_id(), &message, in_ten_seconds())
            .await
            .unwrap();

        assert_eq!(
            sent,
            Sent {
                wamid: None,
                attempts: 1
            }
        );
    }

    #[tokio::test]
    async fn a_throttled_send_is_retried_and_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(meta_error(400, 130429))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(accepted())
            .expect(1)
            .mount(&server)
            .await;

        let sent = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap();

        assert_eq!(sent.attempts, 2);
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_send_outside_the_customer_window_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(meta_error(400, 131047))
            .expect(1)
            .mount(&server)
            .await;

        let error = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert!(
            matches!(error, WhatsAppError::OutsideWindow { code: 131047, .. }),
            "{error:?}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_expired_token_is_token_invalid_and_never_named_in_the_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(meta_error(401, 190))
            .expect(1)
            .mount(&server)
            .await;

        let error = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert!(
            matches!(error, WhatsAppError::TokenInvalid { code: 190, .. }),
            "{error:?}"
        );
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains(TOKEN) && !shown.contains("Hello there"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_kapso_in_flight_conflict_is_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(KAPSO_PATH))
            .respond_with(
                ResponseTemplate::new(409)
                    .set_body_json(json!({ "error": "Another message is in flight" })),
            )
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(KAPSO_PATH))
            .respond_with(accepted())
            .expect(1)
            .mount(&server)
            .await;

        let sent = client(&server)
            .send(&kapso(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap();

        assert_eq!(sent.attempts, 2);
    }

    #[tokio::test]
    async fn retrying_stops_when_another_attempt_would_not_fit_before_the_deadline() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(meta_error(400, 130429))
            .mount(&server)
            .await;

        let deadline = Instant::now() + MIN_ATTEMPT_TIME / 2;
        let error = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), deadline)
            .await
            .unwrap_err();

        assert!(matches!(
            error,
            WhatsAppError::Throttled { code: 130429, .. }
        ));
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert!(Instant::now() < deadline + Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_deadline_already_past_sends_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted())
            .expect(0)
            .mount(&server)
            .await;

        let error = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), Instant::now())
            .await
            .unwrap_err();

        assert!(matches!(
            error,
            WhatsAppError::Transient { status: None, .. }
        ));
    }

    #[tokio::test]
    async fn a_server_error_on_a_message_is_not_retried_because_it_may_have_been_delivered() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
            .expect(1)
            .mount(&server)
            .await;

        let error = client(&server)
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert_eq!(
            error,
            WhatsAppError::Transient {
                status: Some(503),
                message: "HTTP 503".into()
            }
        );
        assert!(error.may_have_been_delivered());
    }

    #[tokio::test]
    async fn a_server_error_on_a_read_receipt_is_retried_until_the_policy_runs_out() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
            .expect(4)
            .mount(&server)
            .await;
        let read = Outgoing::mark_read(Wamid::parse("wamid.R").unwrap(), true);

        let error = client(&server)
            .send(&meta(), &phone_number_id(), &read, in_ten_seconds())
            .await
            .unwrap_err();

        assert!(matches!(
            error,
            WhatsAppError::Transient {
                status: Some(503),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn an_unreachable_api_is_retried_because_nothing_was_sent() {
        // Port 9 (discard) is closed on loopback: every attempt fails to connect.
        let config = WhatsAppConfig {
            kapso_base_url: "http://127.0.0.1:9".into(),
            meta_base_url: "http://127.0.0.1:9".into(),
            graph_version: "v24.0".into(),
            request_timeout: Duration::from_secs(2),
        };
        let client = WhatsAppClient::new(
            config,
            RetryPolicy::new(2, Duration::from_millis(1), Duration::from_millis(2)),
        );
        let error = client
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();
        assert!(
            matches!(error, WhatsAppError::Unreachable { .. }),
            "{error:?}"
        );
        assert!(!error.may_have_been_delivered());
    }

    #[tokio::test]
    async fn a_request_slower_than_the_timeout_is_transient() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted().set_delay(Duration::from_secs(2)))
            .mount(&server)
            .await;

        let client = WhatsAppClient::new(
            fast_client(&server, Duration::from_millis(50)).config,
            RetryPolicy::new(0, Duration::from_millis(1), Duration::from_millis(1)),
        );
        let error = client
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert!(
            matches!(&error, WhatsAppError::Transient { status: None, message } if message.contains("timed out")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_invalid_message_is_refused_without_any_http_call() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted())
            .expect(0)
            .mount(&server)
            .await;
        let too_many_buttons = Outgoing::new(
            WaId::parse("16505551234").unwrap(),
            OutgoingKind::Buttons {
                body: "Pick one".into(),
                buttons: (0..4)
                    .map(|i| ReplyButton {
                        id: format!("b{i}"),
                        title: format!("Option {i}"),
                    })
                    .collect(),
                header: None,
                footer: None,
            },
        );

        let error = client(&server)
            .send(
                &meta(),
                &phone_number_id(),
                &too_many_buttons,
                in_ten_seconds(),
            )
            .await
            .unwrap_err();

        assert!(matches!(
            error,
            WhatsAppError::InvalidParameter { code: None, .. }
        ));
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[test]
    fn base_urls_lose_their_trailing_slashes() {
        let client = WhatsAppClient::new(
            WhatsAppConfig {
                kapso_base_url: "https://api.kapso.ai//".into(),
                meta_base_url: "https://graph.facebook.com/".into(),
                graph_version: "v24.0".into(),
                request_timeout: Duration::from_secs(5),
            },
            RetryPolicy::default(),
        );
        assert_eq!(
            client.url(&kapso(), &phone_number_id()),
            "https://api.kapso.ai/meta/whatsapp/v24.0/106540352242922/messages"
        );
        assert_eq!(
            client.url(&meta(), &phone_number_id()),
            "https://graph.facebook.com/v24.0/106540352242922/messages"
        );
    }
}
