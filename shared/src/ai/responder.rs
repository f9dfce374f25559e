//! The AI responder use case: route a contact to a provider, call it within the invocation's
//! deadline, fail over to the other provider, and fall back to the offline responder when no
//! provider is configured at all.

use std::time::{Duration, Instant};

use tracing::{instrument, warn};

use super::{
    ChatRequest, Completion, LlmClient, LlmError, ProviderConfig, ProviderName, offline_reply,
    route,
};

/// The share of the budget the first provider may use when a second one could take over, so a
/// hung first provider still leaves the failover enough time to answer.
const FIRST_CALL_SHARE_PERCENT: u32 = 60;

/// Answers customers with Grok or SEA-LION, whichever the contact is routed to, and the other
/// one when that fails.
#[derive(Debug, Clone)]
pub struct AiResponder {
    client: LlmClient,
    grok: Option<ProviderConfig>,
    sealion: Option<ProviderConfig>,
}

impl AiResponder {
    /// A responder over the configured providers, with its own HTTP client; either or both
    /// providers may be absent.
    pub fn new(grok: Option<ProviderConfig>, sealion: Option<ProviderConfig>) -> Self {
        Self::with_client(LlmClient::new(), grok, sealion)
    }

    /// A responder that reuses `client`, so a responder built per message (providers can change
    /// with workspace config) still shares the connection pool built once at cold start.
    pub fn with_client(
        client: LlmClient,
        grok: Option<ProviderConfig>,
        sealion: Option<ProviderConfig>,
    ) -> Self {
        Self {
            client,
            grok,
            sealion,
        }
    }

    /// Whether no provider is configured, so every reply comes from the offline responder.
    pub fn is_offline(&self) -> bool {
        self.grok.is_none() && self.sealion.is_none()
    }

    /// Routes, calls, and fails over to the other provider on error or timeout. Each call's
    /// timeout fits before `answer_by` (the caller keeps what sending needs after it); while a failover is possible the
    /// first call gets at most 60% of that budget. If the routed provider is not configured the
    /// other one answers (not counted as a failover). With no provider configured, answers with
    /// the offline responder.
    #[instrument(skip_all, fields(routed, first_provider))]
    pub async fn reply(
        &self,
        contact_key: &str,
        grok_weight_percent: u8,
        request: &ChatRequest,
        deadline: Instant,
    ) -> Result<Completion, LlmError> {
        let routed = route(contact_key, grok_weight_percent);
        let span = tracing::Span::current();
        span.record("routed", routed.as_str());

        let (first, second) = match (self.config(routed), self.config(other(routed))) {
            (Some(routed), other) => (routed, other),
            (None, Some(other)) => (other, None),
            (None, None) => return Ok(offline_reply(request)),
        };
        span.record("first_provider", first.name.as_str());

        let budget = budget_before(deadline);
        let first_timeout = if second.is_some() {
            budget * FIRST_CALL_SHARE_PERCENT / 100
        } else {
            budget
        };
        let first_error = match self.attempt(first, request, first_timeout).await {
            Ok(completion) => return Ok(completion),
            Err(error) => error,
        };
        let Some(second) = second else {
            return Err(first_error);
        };

        warn!(
            from = first.name.as_str(),
            to = second.name.as_str(),
            error.cause_chain = ?first_error,
            "provider failed, failing over"
        );
        match self.attempt(second, request, budget_before(deadline)).await {
            Ok(completion) => Ok(Completion {
                failover_from: Some(first.name),
                ..completion
            }),
            Err(second_error) => Err(LlmError::AllFailed {
                first: Box::new(first_error),
                second: Box::new(second_error),
            }),
        }
    }

    fn config(&self, name: ProviderName) -> Option<&ProviderConfig> {
        match name {
            ProviderName::Grok => self.grok.as_ref(),
            ProviderName::Sealion => self.sealion.as_ref(),
            ProviderName::Offline => None,
        }
    }

    /// One call, skipped when there is no time left for it: a request that cannot finish before
    /// the deadline would only delay the failover or the error report.
    async fn attempt(
        &self,
        provider: &ProviderConfig,
        request: &ChatRequest,
        timeout: Duration,
    ) -> Result<Completion, LlmError> {
        if timeout.is_zero() {
            return Err(LlmError::Timeout {
                provider: provider.name,
            });
        }
        self.client.complete(provider, request, timeout).await
    }
}

fn other(provider: ProviderName) -> ProviderName {
    match provider {
        ProviderName::Grok => ProviderName::Sealion,
        ProviderName::Sealion | ProviderName::Offline => ProviderName::Grok,
    }
}

/// The time left for model calls.
fn budget_before(answer_by: Instant) -> Duration {
    answer_by.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::ai::OFFLINE_MODEL;
    use crate::ai::llm::tests::{TEST_KEY, chat_request, completion_body};

    const ALWAYS_GROK: u8 = 100;
    const ALWAYS_SEALION: u8 = 0;
    const CONTACT: &str = "6591234567";
    const SEALION_MODEL: &str = "aisingapore/Gemma-SEA-LION-v4-27B-IT";

    /// A deadline leaving `budget` for model calls.
    fn deadline_with_budget(budget: Duration) -> Instant {
        Instant::now() + budget
    }

    fn grok_at(server: &MockServer) -> ProviderConfig {
        ProviderConfig::grok(
            format!("{}/v1", server.uri()),
            None,
            SecretString::from(TEST_KEY),
        )
    }

    fn sealion_at(server: &MockServer) -> ProviderConfig {
        ProviderConfig::sealion(format!("{}/v1", server.uri()), None)
    }

    async fn provider_answering(response: ResponseTemplate, expected_calls: u64) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(response)
            .expect(expected_calls)
            .mount(&server)
            .await;
        server
    }

    fn sealion_ok() -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_json(completion_body(SEALION_MODEL, "Halo dari SEA-LION"))
    }

    fn grok_ok() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(completion_body("grok-3", "Hello from Grok"))
    }

    #[tokio::test]
    async fn the_routed_provider_answers_when_it_succeeds() {
        let grok = provider_answering(grok_ok(), 1).await;
        let sealion = provider_answering(sealion_ok(), 0).await;
        let responder = AiResponder::new(Some(grok_at(&grok)), Some(sealion_at(&sealion)));

        let completion = responder
            .reply(
                CONTACT,
                ALWAYS_GROK,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect("grok answers");

        assert_eq!(completion.provider, ProviderName::Grok);
        assert_eq!(completion.text, "Hello from Grok");
        assert_eq!(completion.failover_from, None);
    }

    #[tokio::test]
    async fn a_grok_server_error_fails_over_to_sealion() {
        let grok = provider_answering(ResponseTemplate::new(500), 1).await;
        // Ollama wants the dummy key and the SEA-LION model name.
        let sealion = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", "Bearer ollama"))
            .and(body_partial_json(json!({ "model": SEALION_MODEL })))
            .respond_with(sealion_ok())
            .expect(1)
            .mount(&sealion)
            .await;
        let responder = AiResponder::new(Some(grok_at(&grok)), Some(sealion_at(&sealion)));

        let completion = responder
            .reply(
                CONTACT,
                ALWAYS_GROK,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect("sealion answers");

        assert_eq!(completion.provider, ProviderName::Sealion);
        assert_eq!(completion.model, SEALION_MODEL);
        assert_eq!(completion.text, "Halo dari SEA-LION");
        assert_eq!(completion.failover_from, Some(ProviderName::Grok));
    }

    #[tokio::test]
    async fn a_grok_timeout_fails_over_to_sealion_before_the_deadline() {
        let grok = provider_answering(grok_ok().set_delay(Duration::from_secs(3)), 1).await;
        let sealion = provider_answering(sealion_ok(), 1).await;
        let responder = AiResponder::new(Some(grok_at(&grok)), Some(sealion_at(&sealion)));
        let deadline = deadline_with_budget(Duration::from_millis(500));

        let completion = responder
            .reply(CONTACT, ALWAYS_GROK, &chat_request(), deadline)
            .await
            .expect("sealion answers");

        assert_eq!(completion.provider, ProviderName::Sealion);
        assert_eq!(completion.failover_from, Some(ProviderName::Grok));
        assert!(
            Instant::now() <= deadline + Duration::from_millis(50),
            "the models ran past the time they were given"
        );
    }

    #[tokio::test]
    async fn both_providers_failing_is_all_failed_with_both_causes() {
        let grok = provider_answering(ResponseTemplate::new(500), 1).await;
        let sealion = provider_answering(ResponseTemplate::new(503), 1).await;
        let responder = AiResponder::new(Some(grok_at(&grok)), Some(sealion_at(&sealion)));

        let error = responder
            .reply(
                CONTACT,
                ALWAYS_GROK,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect_err("both fail");

        let LlmError::AllFailed { first, second } = error else {
            panic!("expected AllFailed, got {error:?}");
        };
        assert!(matches!(
            *first,
            LlmError::Http {
                provider: ProviderName::Grok,
                status: 500
            }
        ));
        assert!(matches!(
            *second,
            LlmError::Http {
                provider: ProviderName::Sealion,
                status: 503
            }
        ));
    }

    #[tokio::test]
    async fn a_routed_provider_that_is_not_configured_is_replaced_by_the_other_one() {
        let sealion = provider_answering(sealion_ok(), 1).await;
        let responder = AiResponder::new(None, Some(sealion_at(&sealion)));

        let completion = responder
            .reply(
                CONTACT,
                ALWAYS_GROK,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect("sealion answers");

        assert_eq!(completion.provider, ProviderName::Sealion);
        assert_eq!(completion.failover_from, None);
    }

    #[tokio::test]
    async fn a_sealion_contact_is_answered_by_grok_when_only_grok_is_configured() {
        let grok = provider_answering(grok_ok(), 1).await;
        let responder = AiResponder::new(Some(grok_at(&grok)), None);

        let completion = responder
            .reply(
                CONTACT,
                ALWAYS_SEALION,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect("grok answers");

        assert_eq!(completion.provider, ProviderName::Grok);
    }

    #[tokio::test]
    async fn the_single_configured_provider_failing_is_its_own_error() {
        let grok = provider_answering(ResponseTemplate::new(500), 1).await;
        let responder = AiResponder::new(Some(grok_at(&grok)), None);

        let error = responder
            .reply(
                CONTACT,
                ALWAYS_GROK,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect_err("grok fails");

        assert!(matches!(
            error,
            LlmError::Http {
                provider: ProviderName::Grok,
                status: 500
            }
        ));
    }

    #[tokio::test]
    async fn with_no_provider_configured_the_offline_responder_answers() {
        let responder = AiResponder::new(None, None);

        let completion = responder
            .reply(
                CONTACT,
                50,
                &chat_request(),
                deadline_with_budget(Duration::from_secs(2)),
            )
            .await
            .expect("offline always answers");

        assert!(responder.is_offline());
        assert_eq!(completion.provider, ProviderName::Offline);
        assert_eq!(completion.model, OFFLINE_MODEL);
        assert!(completion.text.contains("Berapa harga paket premium?"));
    }

    #[tokio::test]
    async fn a_spent_deadline_calls_no_provider() {
        let grok = provider_answering(grok_ok(), 0).await;
        let sealion = provider_answering(sealion_ok(), 0).await;
        let responder = AiResponder::new(Some(grok_at(&grok)), Some(sealion_at(&sealion)));

        let error = responder
            .reply(CONTACT, ALWAYS_GROK, &chat_request(), Instant::now())
            .await
            .expect_err("no time left");

        assert!(matches!(error, LlmError::AllFailed { .. }), "{error:?}");
        assert!(!responder.is_offline());
    }
}
