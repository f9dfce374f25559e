//! The LLM HTTP adapter: one call to an OpenAI-compatible `/chat/completions` endpoint, which both
//! xAI (Grok) and Ollama (SEA-LION) expose.

use std::error::Error as _;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{ChatMessage, ChatRequest, Completion, ProviderConfig, ProviderName};

/// Why a model call produced no reply. Messages name the provider and never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider did not answer within the time it was given.
    #[error("{provider} did not answer in time")]
    Timeout {
        /// Who was called.
        provider: ProviderName,
    },
    /// The provider answered with a non-success status.
    #[error("{provider} answered with HTTP status {status}")]
    Http {
        /// Who was called.
        provider: ProviderName,
        /// The HTTP status code.
        status: u16,
    },
    /// The request never got a response (connection refused, TLS, DNS, reset).
    #[error("could not reach {provider}: {message}")]
    Transport {
        /// Who was called.
        provider: ProviderName,
        /// The transport error and its causes.
        message: String,
    },
    /// The provider answered 2xx but with nothing usable as a reply.
    #[error("{provider} sent an unusable response: {message}")]
    BadResponse {
        /// Who was called.
        provider: ProviderName,
        /// What was wrong with it.
        message: String,
    },
    /// Both providers were tried and both failed.
    #[error("every provider failed; first: {first}; second: {second}")]
    AllFailed {
        /// The failure of the provider tried first.
        first: Box<LlmError>,
        /// The failure of the provider tried after it.
        second: Box<LlmError>,
    },
}

impl LlmError {
    /// Whether asking again cannot help: the provider refused the request itself (400, 404 or
    /// 422, e.g. a model name or parameter the workspace's AI settings got wrong), and so did the
    /// provider failed over to, if any. Timeouts, transport errors, throttling, 5xx and a refused
    /// API key (401/403: the app-wide key, which an operator fixes for every workspace at once,
    /// after which redelivery helps) may pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Http { status, .. } => matches!(status, 400 | 404 | 422),
            Self::AllFailed { first, second } => first.is_permanent() && second.is_permanent(),
            Self::Timeout { .. } | Self::Transport { .. } | Self::BadResponse { .. } => false,
        }
    }
}

/// Calls OpenAI-compatible chat endpoints. Build one per process and share it, so connections
/// are pooled across invocations.
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
}

impl Default for LlmClient {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmClient {
    /// A client with its own connection pool.
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    /// Asks `provider` for one non-streamed completion of `request`, giving up after `timeout`
    /// (which covers connecting, sending and reading the whole body).
    pub async fn complete(
        &self,
        provider: &ProviderConfig,
        request: &ChatRequest,
        timeout: Duration,
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let name = provider.name;
        let body = match tokio::time::timeout(timeout, self.post(provider, request)).await {
            Ok(body) => body?,
            Err(_elapsed) => return Err(LlmError::Timeout { provider: name }),
        };
        let latency_ms = elapsed_ms(started);

        let parsed: WireResponse =
            serde_json::from_slice(&body).map_err(|e| LlmError::BadResponse {
                provider: name,
                message: format!("not a chat completion: {e}"),
            })?;
        let text = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .map(|content| content.trim().to_owned())
            .unwrap_or_default();
        if text.is_empty() {
            return Err(LlmError::BadResponse {
                provider: name,
                message: "the reply has no content".to_owned(),
            });
        }
        let usage = parsed.usage.unwrap_or_default();
        Ok(Completion {
            text,
            provider: name,
            model: parsed
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| provider.model.clone()),
            latency_ms,
            first_token_ms: None,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            failover_from: None,
        })
    }

    /// Sends the request and reads the body of a successful response.
    async fn post(
        &self,
        provider: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<Vec<u8>, LlmError> {
        let name = provider.name;
        let url = format!(
            "{}/chat/completions",
            provider.base_url.trim().trim_end_matches('/')
        );
        let body = WireRequest {
            model: &provider.model,
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            stream: false,
        };
        let response = self
            .http
            .post(url)
            .bearer_auth(provider.api_key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(name, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(LlmError::Http {
                provider: name,
                status: status.as_u16(),
            });
        }
        let bytes = response.bytes().await.map_err(|e| transport(name, &e))?;
        Ok(bytes.to_vec())
    }
}

/// A transport error with its whole cause chain, since reqwest's top-level message alone
/// ("error sending request") does not say what went wrong.
fn transport(provider: ProviderName, error: &reqwest::Error) -> LlmError {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    LlmError::Transport { provider, message }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: f32,
    max_tokens: u32,
    stream: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
    #[serde(default)]
    total_tokens: Option<u32>,
}

#[cfg(test)]
pub(crate) mod tests {
    use secrecy::SecretString;
    use serde_json::json;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::ai::Role;

    pub(crate) const TEST_KEY: &str = "xai-test-key-do-not-print";

    #[test]
    fn only_a_refused_request_is_permanent_and_only_when_the_failover_was_refused_too() {
        let http = |status| LlmError::Http {
            provider: ProviderName::Grok,
            status,
        };
        for status in [400, 404, 422] {
            assert!(http(status).is_permanent(), "{status}");
        }
        for status in [401, 403, 408, 429, 500, 503] {
            assert!(!http(status).is_permanent(), "{status}");
        }
        let timeout = LlmError::Timeout {
            provider: ProviderName::Sealion,
        };
        assert!(!timeout.is_permanent());
        let both_refused = LlmError::AllFailed {
            first: Box::new(http(404)),
            second: Box::new(http(400)),
        };
        assert!(both_refused.is_permanent());
        let failover_timed_out = LlmError::AllFailed {
            first: Box::new(http(404)),
            second: Box::new(timeout),
        };
        assert!(!failover_timed_out.is_permanent());
    }

    pub(crate) fn chat_request() -> ChatRequest {
        ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, "You are a helpful sales assistant."),
                ChatMessage::new(Role::User, "Berapa harga paket premium?"),
            ],
            temperature: 0.7,
            max_tokens: 256,
        }
    }

    /// An OpenAI-style chat completion body as xAI and Ollama return it.
    pub(crate) fn completion_body(model: &str, text: &str) -> serde_json::Value {
        json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": "stop"
            }],
            "usage": { "prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30 }
        })
    }

    fn grok_at(server: &MockServer) -> ProviderConfig {
        ProviderConfig::grok(
            format!("{}/v1/", server.uri()),
            None,
            SecretString::from(TEST_KEY),
        )
    }

    const QUICK: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn a_successful_completion_parses_text_model_and_usage_and_sends_key_and_model() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header(
                "authorization",
                format!("Bearer {TEST_KEY}").as_str(),
            ))
            .and(body_partial_json(json!({
                "model": "grok-3",
                "stream": false,
                "max_tokens": 256,
                "messages": [
                    { "role": "system", "content": "You are a helpful sales assistant." },
                    { "role": "user", "content": "Berapa harga paket premium?" }
                ]
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(completion_body("grok-3", "  Paket premium Rp 500.000.\n")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let completion = LlmClient::new()
            .complete(&grok_at(&server), &chat_request(), QUICK)
            .await
            .expect("completion");

        assert_eq!(completion.text, "Paket premium Rp 500.000.");
        assert_eq!(completion.provider, ProviderName::Grok);
        assert_eq!(completion.model, "grok-3");
        assert_eq!(completion.prompt_tokens, Some(21));
        assert_eq!(completion.completion_tokens, Some(9));
        assert_eq!(completion.total_tokens, Some(30));
        assert_eq!(completion.first_token_ms, None);
        assert_eq!(completion.failover_from, None);
    }

    #[tokio::test]
    async fn a_server_error_is_an_http_error_with_its_status() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;

        let error = LlmClient::new()
            .complete(&grok_at(&server), &chat_request(), QUICK)
            .await
            .expect_err("a 500 must fail");

        assert!(
            matches!(
                error,
                LlmError::Http {
                    provider: ProviderName::Grok,
                    status: 500
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_response_slower_than_the_timeout_is_a_timeout() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(completion_body("grok-3", "too late"))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&server)
            .await;

        let started = Instant::now();
        let error = LlmClient::new()
            .complete(
                &grok_at(&server),
                &chat_request(),
                Duration::from_millis(200),
            )
            .await
            .expect_err("a slow provider must time out");

        assert!(
            matches!(
                error,
                LlmError::Timeout {
                    provider: ProviderName::Grok
                }
            ),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "did not give up on time"
        );
    }

    #[tokio::test]
    async fn malformed_json_is_a_bad_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{\"choices\": [oops"))
            .mount(&server)
            .await;

        let error = LlmClient::new()
            .complete(&grok_at(&server), &chat_request(), QUICK)
            .await
            .expect_err("malformed JSON must fail");

        assert!(
            matches!(
                error,
                LlmError::BadResponse {
                    provider: ProviderName::Grok,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_reply_is_a_bad_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion_body("grok-3", "  ")))
            .mount(&server)
            .await;

        let error = LlmClient::new()
            .complete(&grok_at(&server), &chat_request(), QUICK)
            .await
            .expect_err("an empty reply must fail");

        assert!(matches!(error, LlmError::BadResponse { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_a_transport_error_that_never_shows_the_key() {
        // Bind and drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let provider = ProviderConfig::grok(
            format!("http://127.0.0.1:{port}/v1"),
            None,
            SecretString::from(TEST_KEY),
        );

        let error = LlmClient::new()
            .complete(&provider, &chat_request(), QUICK)
            .await
            .expect_err("nothing is listening");

        assert!(matches!(error, LlmError::Transport { .. }), "{error:?}");
        assert!(!error.to_string().contains(TEST_KEY));
        assert!(!format!("{error:?}").contains(TEST_KEY));
        assert!(!format!("{provider:?}").contains(TEST_KEY));
    }
}
