//! The one WhatsApp Cloud API client: sends a message through Kapso's Meta proxy or Meta's Graph
//! API directly, retrying what may succeed later within the caller's deadline.
//!
//! Every failure says whether the message was certainly not sent, may have been sent, or was
//! refused for good (see [`WhatsAppError`]): the caller releases, reconciles or records it.

mod error;
mod messages;
mod split;

pub use error::WhatsAppError;
pub use messages::{
    ListRow, ListSection, MAX_BUTTON_ID, MAX_BUTTON_TITLE, MAX_CALLBACK_DATA, MAX_CAPTION,
    MAX_HEADER_OR_FOOTER, MAX_INTERACTIVE_BODY, MAX_LIST_ROWS, MAX_LIST_SECTIONS, MAX_LIST_TITLE,
    MAX_REPLY_BUTTONS, MAX_ROW_DESCRIPTION, MAX_ROW_ID, MAX_TEMPLATE_NAME, MAX_TEXT_BODY,
    MediaKind, MediaSource, Outgoing, OutgoingKind, ReplyButton, is_template_name, request_body,
};
pub use split::split_text;

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ids::{PhoneNumberId, Wamid};
use crate::retry::{self, RetryPolicy};

/// The least time worth giving an attempt. A retry that cannot have this much before the
/// deadline is not made: it would only time out and leave the caller no time to react.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(250);

/// How long opening a connection may take unless configured otherwise. A connect to Kapso or
/// Meta takes milliseconds from Lambda; one that takes seconds is not going to finish.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// The longest opening a connection may take (e.g. [`DEFAULT_CONNECT_TIMEOUT`]). A connect
    /// that times out certainly sent nothing, so it is reported as
    /// [`WhatsAppError::Unreachable`] and retried. Capped at half of `request_timeout`, so that it
    /// always fires before the request's own timeout, which could not tell the two apart.
    pub connect_timeout: Duration,
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
    /// The least time left before the deadline for an attempt to be made: the connect timeout
    /// plus [`MIN_ATTEMPT_TIME`]. With less, a connect that stalls would be cut by the request's
    /// own timeout, which cannot tell "never connected" from "maybe delivered".
    attempt_floor: Duration,
}

/// A number as Graph describes it (`GET /{phone_number_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NumberInfo {
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    /// `VERIFIED`, `NOT_VERIFIED`, `EXPIRED`, …
    pub code_verification_status: Option<String>,
    pub quality_rating: Option<String>,
}

impl NumberInfo {
    const FIELDS: &str =
        "display_phone_number,verified_name,code_verification_status,quality_rating";
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
    ///
    /// # Panics
    ///
    /// When the TLS backend or the system resolver cannot be set up, exactly as
    /// `reqwest::Client::new` does. It is built once at cold start, where failing init is right.
    pub fn new(config: WhatsAppConfig, retry: RetryPolicy) -> Self {
        let connect_timeout = config.connect_timeout.min(config.request_timeout / 2);
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .expect("the HTTP client (TLS backend, resolver) could not be initialised");
        Self {
            http,
            config,
            retry,
            attempt_floor: connect_timeout + MIN_ATTEMPT_TIME,
        }
    }

    /// Sends `message` from `phone_number_id`, retrying what certainly sent nothing (throttling,
    /// Kapso's in-flight conflicts, an unreachable API) by the retry policy as long as another
    /// attempt fits before `deadline`. A throttled send waits the API's `Retry-After` when that
    /// is longer than the policy's delay, and only when the attempt after it still fits;
    /// otherwise the `Throttled` error comes back at once. An error that may mean the message
    /// was sent is never retried, except for read receipts, which are idempotent.
    ///
    /// A deadline too close for an attempt (less than the connect timeout plus
    /// [`MIN_ATTEMPT_TIME`] left) gives [`WhatsAppError::Unreachable`]: nothing was attempted.
    /// So every attempt made has room for its connect timeout, and a connect that stalls is
    /// always reported as unreachable, never as "maybe delivered".
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
            if left < self.attempt_floor {
                // Only reachable before the first attempt (retries wait only when they fit):
                // nothing went out, so the caller may safely send again later.
                return Err(WhatsAppError::Unreachable {
                    message: "too little time was left before the deadline to send the message"
                        .into(),
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
            let Some(backoff) = delays.next() else {
                return Err(error);
            };
            // Retrying before the API's Retry-After would only be throttled again.
            let delay = error
                .retry_after()
                .map_or(backoff, |after| after.max(backoff));
            if !retry::fits_before(deadline, delay, self.attempt_floor) {
                tracing::debug!(
                    attempts,
                    ?delay,
                    "no time left before the deadline for a retry"
                );
                return Err(error);
            }
            tracing::debug!(attempts, code = ?error.code(), ?delay, "retrying the send");
            tokio::time::sleep(delay).await;
        }
    }

    /// Looks `phone_number_id` up on Graph with `access_token`: the connection test of a manual
    /// integration, before its token is stored. One attempt within `deadline`, no retry: the
    /// person connecting waits for the answer.
    #[tracing::instrument(skip_all, fields(phone_number_id = %phone_number_id))]
    pub async fn phone_number(
        &self,
        access_token: &SecretString,
        phone_number_id: &PhoneNumberId,
        deadline: Instant,
    ) -> Result<NumberInfo, WhatsAppError> {
        let channel = Channel::Meta {
            access_token: access_token.clone(),
        };
        let (header_name, credential) = auth_header(&channel)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WhatsAppError::Unreachable {
                message: "the deadline passed before the number could be looked up".into(),
            });
        }
        let url = format!(
            "{}?fields={}",
            self.graph_number_url(phone_number_id),
            NumberInfo::FIELDS
        );
        let response = self
            .http
            .get(&url)
            .header(header_name, credential)
            .timeout(self.config.request_timeout.min(left))
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(WhatsAppError::from_response(status, &body, false, None));
        }
        serde_json::from_slice(&body).map_err(|_| WhatsAppError::Transient {
            status: Some(status),
            message: "the number's description is not JSON".into(),
        })
    }

    fn url(&self, channel: &Channel, phone_number_id: &PhoneNumberId) -> String {
        match channel {
            Channel::Kapso { .. } => format!(
                "{}/meta/whatsapp/{}/{}/messages",
                self.config.kapso_base_url.trim_end_matches('/'),
                self.config.graph_version.trim_matches('/'),
                phone_number_id.as_str()
            ),
            Channel::Meta { .. } => format!("{}/messages", self.graph_number_url(phone_number_id)),
        }
    }

    /// The number on Meta's Graph API: `{base}/{version}/{phone_number_id}`.
    fn graph_number_url(&self, phone_number_id: &PhoneNumberId) -> String {
        format!(
            "{}/{}/{}",
            self.config.meta_base_url.trim_end_matches('/'),
            self.config.graph_version.trim_matches('/'),
            phone_number_id.as_str()
        )
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
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await;
    if !(200..300).contains(&status) {
        // An error answer whose body broke off is still that status.
        let body = body.unwrap_or_default();
        return Err(WhatsAppError::from_response(
            status,
            &body,
            via_kapso,
            retry_after.as_deref(),
        ));
    }
    // From here the API has accepted the message, so whatever goes wrong reading its answer is
    // no refusal: the message may be on its way. It must not be retried either, or the customer
    // could get it twice.
    let accepted_but = |what: &str| WhatsAppError::Unconfirmed {
        status,
        message: what.to_owned(),
    };
    let body = body.map_err(|_| accepted_but("its answer could not be read"))?;
    let answer: SendResponse =
        serde_json::from_slice(&body).map_err(|_| accepted_but("its answer is not JSON"))?;
    if is_mark_read {
        // An explicit `success: false` is a refusal; a read receipt creates no message, so
        // there is nothing to reconcile either way.
        return match answer.success {
            Some(false) => Err(WhatsAppError::Rejected {
                status,
                code: None,
                message: "the API answered success: false to the read receipt".into(),
            }),
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

/// A request that got no HTTP answer. A failed connect, including one that hit the connect
/// timeout, sent nothing; any other failure (the request's own timeout, a connection broken
/// after it opened) may have come after the API read the request. The text keeps the cause
/// chain; reqwest's errors name the URL, which holds the phone number id but never the credential.
fn network_error(error: reqwest::Error) -> WhatsAppError {
    let connect = error.is_connect();
    let mut message = if connect && error.is_timeout() {
        "the connection could not be opened in time".to_owned()
    } else if error.is_timeout() {
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
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
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

        // Built first, so that the whole budget is left for the first attempt (on a loaded machine
        // building a client takes a while). The budget holds one attempt and 100 ms more; a
        // retry waits at least 200 ms, so it can never fit.
        let connect_timeout = Duration::from_millis(100);
        let client = WhatsAppClient::new(
            client_at(&server.uri(), Duration::from_secs(5), connect_timeout).config,
            RetryPolicy::new(3, Duration::from_millis(200), Duration::from_millis(200)),
        );
        let floor = connect_timeout + MIN_ATTEMPT_TIME;
        let deadline = Instant::now() + floor + Duration::from_millis(100);
        let error = client
            .send(&meta(), &phone_number_id(), &hello(), deadline)
            .await
            .unwrap_err();

        assert!(matches!(
            error,
            WhatsAppError::Throttled {
                code: Some(130429),
                ..
            }
        ));
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert!(Instant::now() < deadline);
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

        assert!(
            matches!(error, WhatsAppError::Unreachable { .. }),
            "{error:?}"
        );
        assert!(!error.may_have_been_delivered() && error.is_retryable());
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
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
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

    fn kapso_rate_limited(retry_after: &str) -> ResponseTemplate {
        ResponseTemplate::new(429)
            .insert_header("retry-after", retry_after)
            .set_body_json(json!({ "error": "Rate limit exceeded" }))
    }

    #[tokio::test]
    async fn kapsos_rate_limit_without_a_code_is_retried_and_the_reply_is_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(KAPSO_PATH))
            .respond_with(kapso_rate_limited("0"))
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
        assert!(sent.wamid.is_some());
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_deadline_returns_throttled_at_once_for_a_later_redelivery() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(kapso_rate_limited("60"))
            .expect(1)
            .mount(&server)
            .await;

        let started = Instant::now();
        let error = client(&server)
            .send(&kapso(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert_eq!(
            error,
            WhatsAppError::Throttled {
                code: None,
                retry_after: Some(Duration::from_secs(60)),
                message: "Rate limit exceeded".into()
            }
        );
        assert!(error.is_retryable() && !error.may_have_been_delivered());
        // It did not sit out the retry policy, let alone the minute.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_retry_after_within_the_deadline_is_waited_out_before_the_retry() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(kapso_rate_limited("1"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(accepted())
            .expect(1)
            .mount(&server)
            .await;

        let started = Instant::now();
        let sent = client(&server)
            .send(&kapso(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap();

        assert_eq!(sent.attempts, 2);
        // The policy's own delays are milliseconds: only Retry-After explains a second's wait.
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// A loopback listener whose accept queue is full, so the kernel drops further SYNs and a
    /// connect to it hangs until the client gives up. The returned stream keeps the queue full.
    fn hanging_listener() -> (tokio::net::TcpListener, std::net::TcpStream, String) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        // A backlog of 0 leaves room for one queued connection, which `filler` takes.
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        let filler = std::net::TcpStream::connect(address).unwrap();
        (listener, filler, format!("http://{address}"))
    }

    fn client_at(
        base_url: &str,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> WhatsAppClient {
        WhatsAppClient::new(
            WhatsAppConfig {
                kapso_base_url: base_url.to_owned(),
                meta_base_url: base_url.to_owned(),
                graph_version: "v24.0".into(),
                request_timeout,
                connect_timeout,
            },
            RetryPolicy::new(1, Duration::from_millis(1), Duration::from_millis(2)),
        )
    }

    #[tokio::test]
    async fn a_connect_that_hangs_is_unreachable_once_the_connect_timeout_passes() {
        let (_listener, _filler, url) = hanging_listener();
        let client = client_at(&url, Duration::from_secs(5), Duration::from_millis(200));

        let started = Instant::now();
        let error = client
            .send(&kapso(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert!(
            matches!(&error, WhatsAppError::Unreachable { message } if message.contains("in time")),
            "{error:?}"
        );
        assert!(!error.may_have_been_delivered());
        // Two attempts of 200 ms, nowhere near the 5 s request timeout.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn with_less_time_left_than_the_connect_timeout_nothing_is_attempted() {
        let (_listener, _filler, url) = hanging_listener();
        let client = client_at(&url, Duration::from_secs(5), Duration::from_secs(1));

        // The connect would hang; cut by the deadline instead of the connect timeout, it would
        // look like a request that timed out after it was sent ("maybe delivered").
        let started = Instant::now();
        let error = client
            .send(
                &kapso(),
                &phone_number_id(),
                &hello(),
                Instant::now() + Duration::from_millis(800),
            )
            .await
            .unwrap_err();

        assert!(
            matches!(&error, WhatsAppError::Unreachable { message } if message.contains("too little time")),
            "{error:?}"
        );
        assert!(!error.may_have_been_delivered());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "not even tried: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_connect_timeout_is_capped_below_the_request_timeout() {
        let (_listener, _filler, url) = hanging_listener();
        // Configured longer than a whole request: it must still fire first, or the request's own
        // timeout would report the hang as "maybe delivered".
        let client = client_at(&url, Duration::from_millis(400), Duration::from_secs(30));

        let error = client
            .send(&kapso(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        assert!(
            matches!(error, WhatsAppError::Unreachable { .. }),
            "{error:?}"
        );
    }

    async fn unconfirmed_by(answer: ResponseTemplate) -> WhatsAppError {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        client(&server)
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_2xx_whose_body_is_not_json_is_unconfirmed_and_not_retried() {
        let error =
            unconfirmed_by(ResponseTemplate::new(200).set_body_string("<html>OK</html>")).await;
        assert_eq!(
            error,
            WhatsAppError::Unconfirmed {
                status: 200,
                message: "its answer is not JSON".into()
            }
        );
        assert!(error.may_have_been_delivered() && !error.is_retryable());
    }

    #[tokio::test]
    async fn a_2xx_naming_no_message_id_is_unconfirmed() {
        let error = unconfirmed_by(
            ResponseTemplate::new(201).set_body_json(json!({ "messaging_product": "whatsapp" })),
        )
        .await;
        assert!(
            matches!(error, WhatsAppError::Unconfirmed { status: 201, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_2xx_with_an_invalid_message_id_is_unconfirmed() {
        let error = unconfirmed_by(
            ResponseTemplate::new(200).set_body_json(json!({ "messages": [{ "id": "" }] })),
        )
        .await;
        assert!(
            matches!(&error, WhatsAppError::Unconfirmed { status: 200, message } if message.contains("invalid")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_2xx_whose_body_breaks_off_is_unconfirmed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // wiremock always sends whole bodies: this server promises 1000 bytes, sends a few and
        // hangs up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the whole request (headers and the small JSON body) before answering.
            while !request.ends_with(b"}") {
                let read = stream.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the client closed before sending its request");
                request.extend_from_slice(&buffer[..read]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"messages\":[")
                .await
                .unwrap();
        });
        let client = client_at(&url, Duration::from_secs(5), DEFAULT_CONNECT_TIMEOUT);

        let error = client
            .send(&meta(), &phone_number_id(), &hello(), in_ten_seconds())
            .await
            .unwrap_err();

        server.await.unwrap();
        assert_eq!(
            error,
            WhatsAppError::Unconfirmed {
                status: 200,
                message: "its answer could not be read".into()
            }
        );
    }

    #[tokio::test]
    async fn a_read_receipt_answered_success_false_is_a_refusal() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": false })))
            .expect(1)
            .mount(&server)
            .await;
        let read = Outgoing::mark_read(Wamid::parse("wamid.R").unwrap(), false);

        let error = client(&server)
            .send(&meta(), &phone_number_id(), &read, in_ten_seconds())
            .await
            .unwrap_err();

        assert!(
            matches!(error, WhatsAppError::Rejected { status: 200, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn base_urls_lose_their_trailing_slashes() {
        let client = WhatsAppClient::new(
            WhatsAppConfig {
                kapso_base_url: "https://api.kapso.ai//".into(),
                meta_base_url: "https://graph.facebook.com/".into(),
                graph_version: "v24.0".into(),
                request_timeout: Duration::from_secs(5),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
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

    #[tokio::test]
    async fn looking_a_number_up_sends_the_given_token_and_reads_its_description() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v24.0/106540352242922"))
            .and(header("authorization", "Bearer workspace-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "display_phone_number": "+1 555-0100",
                "verified_name": "Acme",
                "code_verification_status": "VERIFIED",
                "id": PHONE_NUMBER_ID
            })))
            .expect(1)
            .mount(&server)
            .await;
        let info = client(&server)
            .phone_number(
                &SecretString::from("workspace-token"),
                &phone_number_id(),
                in_ten_seconds(),
            )
            .await
            .unwrap();
        assert_eq!(info.verified_name.as_deref(), Some("Acme"));
        assert_eq!(info.code_verification_status.as_deref(), Some("VERIFIED"));
    }

    #[tokio::test]
    async fn looking_a_number_up_with_a_refused_token_is_token_invalid() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(meta_error(401, 190))
            .mount(&server)
            .await;
        let error = client(&server)
            .phone_number(
                &SecretString::from("bad"),
                &phone_number_id(),
                in_ten_seconds(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, WhatsAppError::TokenInvalid { code: 190, .. }),
            "{error:?}"
        );
    }
}
