//! `POST /v1/whatsapp/integrations` and `DELETE /v1/whatsapp/integrations/{id}`: the manual Meta
//! integration, tested against a wiremock fake of Graph (the connection test and the sends) and
//! moto, and sends from the send API and the real processor with each workspace's own token.

use integration_tests::default_secrets;
use integration_tests::processor::{
    CUSTOMER, build_processor, cloud_api, completion, envelopes_of, event, failures, invoke,
    meta_texts, now, record, to_number,
};
use serde_json::{Value, json};
use shared::adapters::dynamo::{integration_key, message_key, onboarding_key};
use shared::conversations::model::{AiConfig, IntegrationStatus};
use shared::conversations::processor::ProcessorSettings;
use shared::conversations::store::TenantStore;
use shared::dashboard::ai_settings::AiConfigStore;
use shared::ids::{PhoneNumberId, Wamid, WorkspaceId};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Reply, TestApi, spawn_api_with, token, workspace};

/// Base64 of 32 bytes: the test stack's `integration_encryption_key`.
const KEY: &str = "dGVzdC1pbnRlZ3JhdGlvbi1lbmNyeXB0aW9uLWtleSE=";
const NUMBER_A: &str = "106540352240001";
const NUMBER_B: &str = "106540352240002";
const TOKEN_A: &str = "EAAJworkspaceAtoken0000000000000001";
const TOKEN_B: &str = "EAAJworkspaceBtoken0000000000000002";
const APP_TOKEN: &str = "app-wide-meta-token";

struct Scene {
    api: TestApi,
    graph: MockServer,
    grok: MockServer,
}

/// The API with a Graph fake for both the connection test and the sends, and the app secret
/// with `key` (none: `None`).
async fn scene_with_key(key: Option<&str>) -> Scene {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(cloud_api())
        .mount(&graph)
        .await;
    let mut secrets = default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["meta_access_token"] = APP_TOKEN.into();
    secrets["grok_api_key"] = "xai-test-key".into();
    if let Some(key) = key {
        secrets["integration_encryption_key"] = key.into();
    }
    let uri = graph.uri();
    let api = spawn_api_with(
        secrets,
        &[
            ("META_GRAPH_BASE_URL", uri.as_str()),
            ("KAPSO_BASE_URL", uri.as_str()),
        ],
    )
    .await;
    Scene {
        api,
        graph,
        grok: MockServer::start().await,
    }
}

async fn scene() -> Scene {
    scene_with_key(Some(KEY)).await
}

fn body(number: &str, access_token: &str) -> Value {
    json!({
        "phoneNumberId": number,
        "accessToken": access_token,
        "businessAccountId": "102290129340398",
        "webhookVerifyToken": "my-verify-token",
    })
}

fn pn(number: &str) -> PhoneNumberId {
    PhoneNumberId::parse(number).unwrap()
}

impl Scene {
    /// Graph describes `number` to whoever brings `access_token`.
    async fn graph_knows(&self, number: &str, access_token: &str) {
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{number}")))
            .and(header("authorization", format!("Bearer {access_token}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "verified_name": "Acme Bakery",
                "display_phone_number": "+1 555-010-0001",
                "code_verification_status": "VERIFIED",
                "quality_rating": "GREEN",
                "id": number,
            })))
            .mount(&self.graph)
            .await;
    }

    async fn connect(&self, ws: &WorkspaceId, number: &str, access_token: &str) -> Reply {
        self.api
            .send(
                "POST",
                "/v1/whatsapp/integrations",
                Some(&token(ws)),
                Some(&body(number, access_token)),
            )
            .await
    }

    async fn disconnect(&self, ws: &WorkspaceId, number: &str) -> Reply {
        self.api
            .send(
                "DELETE",
                &format!("/v1/whatsapp/integrations/{number}"),
                Some(&token(ws)),
                None,
            )
            .await
    }

    /// Every attribute of the number's integration item and the workspace's record, as text.
    async fn stored(&self, ws: &WorkspaceId, number: &str) -> String {
        let store = &self.api.processor_store;
        let integration = store.raw_item(integration_key(&pn(number))).await.unwrap();
        let record = store.raw_item(onboarding_key(ws)).await.unwrap();
        format!("{integration:?} {record:?}")
    }

    async fn sealed_token(&self, number: &str) -> Option<String> {
        let item = self
            .api
            .processor_store
            .raw_item(integration_key(&pn(number)))
            .await
            .unwrap()?;
        item.get("access_token")
            .and_then(|v| v.as_s().ok())
            .cloned()
    }

    /// The bearer tokens the Graph fake received for message sends from `number` (not read
    /// receipts).
    async fn send_tokens(&self, number: &str) -> Vec<String> {
        self.graph
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .filter(|r| r.url.path() == format!("/v24.0/{number}/messages"))
            .filter(|r| {
                serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["status"] != "read")
            })
            .map(|r| {
                r.headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// The real processor over the same stack, answering with Grok's fake.
    fn processor(&self) -> std::sync::Arc<integration_tests::processor::TestProcessor> {
        let settings = ProcessorSettings {
            grok_base_url: self.grok.uri(),
            ..ProcessorSettings::default()
        };
        build_processor(
            &self.api.stack,
            self.api.processor_store.clone(),
            &self.graph.uri(),
            settings,
            &self.api.stack.aws,
        )
    }

    /// The customer writes `text` to `number`; the processor handles it.
    async fn customer_writes(&self, number: &str, wamid: &str, text: &str) {
        let envelope = envelopes_of(&to_number(
            meta_texts(&[(wamid, CUSTOMER, text, now())]),
            number,
        ))
        .remove(0);
        let response = invoke(&self.processor(), event(vec![record(wamid, &envelope)])).await;
        assert!(failures(&response).is_empty());
    }
}

#[tokio::test]
async fn a_manual_integration_is_tested_with_its_token_stored_encrypted_and_never_returned() {
    let scene = scene().await;
    let ws = workspace("ws");
    scene.graph_knows(NUMBER_A, TOKEN_A).await;

    let reply = scene.connect(&ws, NUMBER_A, TOKEN_A).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let connected = reply.json();
    assert_eq!(connected["phoneNumberId"], NUMBER_A);
    assert_eq!(connected["displayName"], "Acme Bakery");
    assert_eq!(connected["verificationStatus"], "VERIFIED");
    assert_eq!(connected["status"], "connected");

    let status = scene
        .api
        .get("/v1/whatsapp/connection", Some(&token(&ws)))
        .await;
    assert_eq!(status.json()["status"], "connected", "{}", status.body);
    assert_eq!(status.json()["provider"], "meta");
    assert_eq!(status.json()["displayPhoneNumber"], "+1 555-010-0001");

    // No route answers with the token, in any form.
    let openapi = scene.api.get("/v1/openapi.json", None).await;
    for answer in [&reply, &status, &openapi] {
        assert!(!answer.body.contains(TOKEN_A), "{}", answer.body);
        assert!(!answer.body.contains("my-verify-token"), "{}", answer.body);
    }

    // DynamoDB holds it sealed, not in plaintext, and the verify token only as its digest.
    let stored = scene.stored(&ws, NUMBER_A).await;
    assert!(!stored.contains(TOKEN_A), "{stored}");
    assert!(!stored.contains("my-verify-token"), "{stored}");
    let sealed = scene.sealed_token(NUMBER_A).await.expect("a stored token");
    assert!(sealed.starts_with("v1:"), "{sealed}");
    let integration = scene
        .api
        .processor_store
        .integration(&pn(NUMBER_A))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(integration.workspace_id, ws);
    assert_eq!(integration.status, IntegrationStatus::Active);
}

#[tokio::test]
async fn each_refused_connection_test_gets_its_typed_error_and_stores_nothing() {
    let scene = scene().await;
    let ws = workspace("ws");
    let meta_error = |status: u16, code: i64| {
        ResponseTemplate::new(status).set_body_json(json!({"error": {
            "message": "Meta says no", "type": "OAuthException", "code": code,
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
        }}))
    };
    let cases = [
        (
            "106540352249901",
            meta_error(401, 190),
            401,
            "INVALID_CREDENTIALS",
        ),
        (
            "106540352249902",
            meta_error(403, 200),
            401,
            "INVALID_CREDENTIALS",
        ),
        (
            "106540352249903",
            meta_error(400, 100),
            400,
            "INVALID_PHONE_NUMBER",
        ),
        (
            "106540352249904",
            ResponseTemplate::new(503),
            502,
            "CONNECTION_FAILED",
        ),
    ];
    for (number, answer, status, code) in cases {
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{number}")))
            .respond_with(answer)
            .mount(&scene.graph)
            .await;
        let reply = scene.connect(&ws, number, TOKEN_A).await;
        assert_eq!(reply.status, status, "{number}: {}", reply.body);
        assert_eq!(reply.error_code(), code, "{number}");
        assert!(!reply.body.contains(TOKEN_A));
        assert!(
            reply.headers.get("www-authenticate").is_none(),
            "Meta refusing a token is no challenge to the caller's own"
        );
        let integration = scene.api.processor_store.integration(&pn(number)).await;
        assert_eq!(integration.unwrap(), None, "{number}: nothing stored");
    }
    let status = scene
        .api
        .get("/v1/whatsapp/connection", Some(&token(&ws)))
        .await;
    assert_eq!(status.json()["status"], "disconnected");
}

#[tokio::test]
async fn meta_unreachable_is_connection_failed() {
    let graph_down = "http://127.0.0.1:9";
    let mut secrets = default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["integration_encryption_key"] = KEY.into();
    let api = spawn_api_with(secrets, &[("META_GRAPH_BASE_URL", graph_down)]).await;
    let ws = workspace("ws");
    let reply = api
        .send(
            "POST",
            "/v1/whatsapp/integrations",
            Some(&token(&ws)),
            Some(&body(NUMBER_A, TOKEN_A)),
        )
        .await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.error_code(), "CONNECTION_FAILED");
}

#[tokio::test]
async fn malformed_fields_get_400_naming_the_field_and_meta_is_not_asked() {
    let scene = scene().await;
    let ws = workspace("ws");
    let cases = [
        (
            json!({"phoneNumberId": "12ab", "accessToken": TOKEN_A, "businessAccountId": "1"}),
            "phoneNumberId",
        ),
        (
            json!({"phoneNumberId": NUMBER_A, "accessToken": "", "businessAccountId": "1"}),
            "accessToken",
        ),
        (
            json!({"phoneNumberId": NUMBER_A, "accessToken": "two words", "businessAccountId": "1"}),
            "accessToken",
        ),
        (
            json!({"phoneNumberId": NUMBER_A, "accessToken": TOKEN_A, "businessAccountId": "waba"}),
            "businessAccountId",
        ),
        (
            json!({"phoneNumberId": NUMBER_A, "accessToken": TOKEN_A, "businessAccountId": "1", "webhookVerifyToken": ""}),
            "webhookVerifyToken",
        ),
        (
            json!({"phoneNumberId": NUMBER_A, "businessAccountId": "1"}),
            "accessToken",
        ),
    ];
    for (request, field) in cases {
        let reply = scene
            .api
            .send(
                "POST",
                "/v1/whatsapp/integrations",
                Some(&token(&ws)),
                Some(&request),
            )
            .await;
        assert_eq!(reply.status, 400, "{request}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        assert_eq!(
            reply.json()["error"]["details"]["field"],
            field,
            "{request}"
        );
    }
    assert!(
        scene
            .graph
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn without_a_valid_encryption_key_the_route_fails_closed_with_503_and_stores_nothing() {
    for key in [None, Some("not-base64-of-32-bytes")] {
        let scene = scene_with_key(key).await;
        let ws = workspace("ws");
        scene.graph_knows(NUMBER_A, TOKEN_A).await;
        let reply = scene.connect(&ws, NUMBER_A, TOKEN_A).await;
        assert_eq!(reply.status, 503, "{key:?}: {}", reply.body);
        assert!(!reply.body.contains(TOKEN_A));
        let integration = scene.api.processor_store.integration(&pn(NUMBER_A)).await;
        assert_eq!(integration.unwrap(), None, "{key:?}: nothing stored");
        assert!(
            scene
                .graph
                .received_requests()
                .await
                .unwrap_or_default()
                .is_empty(),
            "{key:?}: the token is not even tested"
        );
    }
}

#[tokio::test]
async fn a_number_connected_to_another_workspace_gets_409_and_keeps_its_owner_and_token() {
    let scene = scene().await;
    let (a, b) = (workspace("a"), workspace("b"));
    scene.graph_knows(NUMBER_A, TOKEN_A).await;
    scene.graph_knows(NUMBER_A, TOKEN_B).await;
    assert_eq!(scene.connect(&a, NUMBER_A, TOKEN_A).await.status, 201);
    let sealed = scene.sealed_token(NUMBER_A).await;

    let reply = scene.connect(&b, NUMBER_A, TOKEN_B).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.error_code(), "number_taken");
    let integration = scene
        .api
        .processor_store
        .integration(&pn(NUMBER_A))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(integration.workspace_id, a);
    assert_eq!(
        scene.sealed_token(NUMBER_A).await,
        sealed,
        "A's token is untouched"
    );
}

#[tokio::test]
async fn delete_disconnects_only_the_callers_number_and_its_webhooks_are_dropped_from_then_on() {
    let scene = scene().await;
    let (a, b) = (workspace("a"), workspace("b"));
    scene.graph_knows(NUMBER_A, TOKEN_A).await;
    assert_eq!(scene.connect(&a, NUMBER_A, TOKEN_A).await.status, 201);
    scene
        .customer_writes(NUMBER_A, "wamid.BEFORE", "Hello")
        .await;

    // Another workspace's number is not found, and stays connected.
    let reply = scene.disconnect(&b, NUMBER_A).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    assert_eq!(scene.disconnect(&b, "not-a-number").await.status, 404);
    let still = scene.api.processor_store.integration(&pn(NUMBER_A)).await;
    assert_eq!(still.unwrap().unwrap().status, IntegrationStatus::Active);

    let reply = scene.disconnect(&a, NUMBER_A).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let status = scene
        .api
        .get("/v1/whatsapp/connection", Some(&token(&a)))
        .await;
    assert_eq!(status.json()["status"], "disconnected", "{}", status.body);
    assert_eq!(status.json()["isConnected"], false);
    let integration = scene.api.processor_store.integration(&pn(NUMBER_A)).await;
    assert_eq!(
        integration.unwrap().unwrap().status,
        IntegrationStatus::Disconnected
    );
    assert_eq!(
        scene.sealed_token(NUMBER_A).await,
        None,
        "the token is deleted"
    );

    // A new processor (no cached tenant) drops the number's webhooks; the history is kept.
    scene
        .customer_writes(NUMBER_A, "wamid.AFTER", "Anyone?")
        .await;
    let store = &scene.api.processor_store;
    let message = |w: &str| message_key(&Wamid::parse(w).unwrap());
    assert!(
        store
            .raw_item(message("wamid.BEFORE"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .raw_item(message("wamid.AFTER"))
            .await
            .unwrap()
            .is_none()
    );

    // Once disconnected, the number is free for another workspace.
    scene.graph_knows(NUMBER_A, TOKEN_B).await;
    let taken_over = scene.connect(&b, NUMBER_A, TOKEN_B).await;
    assert_eq!(taken_over.status, 201, "{}", taken_over.body);
    let status = scene
        .api
        .get("/v1/whatsapp/connection", Some(&token(&a)))
        .await;
    assert_eq!(status.json()["status"], "disconnected", "{}", status.body);
}

#[tokio::test]
async fn ai_replies_from_the_processor_carry_each_workspaces_own_token() {
    let scene = scene().await;
    let (a, b) = (workspace("a"), workspace("b"));
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("Fresh bread!", "grok-3-mini")),
        )
        .mount(&scene.grok)
        .await;
    for (ws, number, access_token) in [(&a, NUMBER_A, TOKEN_A), (&b, NUMBER_B, TOKEN_B)] {
        scene.graph_knows(number, access_token).await;
        assert_eq!(scene.connect(ws, number, access_token).await.status, 201);
        let ai = AiConfig {
            enabled: true,
            ..AiConfig::default()
        };
        scene
            .api
            .processor_store
            .write_ai_config(ws, &ai)
            .await
            .unwrap();
    }

    scene.customer_writes(NUMBER_A, "wamid.TOA", "Bread?").await;
    scene.customer_writes(NUMBER_B, "wamid.TOB", "Cake?").await;

    let (to_a, to_b) = (
        scene.send_tokens(NUMBER_A).await,
        scene.send_tokens(NUMBER_B).await,
    );
    assert!(!to_a.is_empty() && !to_b.is_empty(), "both numbers replied");
    assert!(
        to_a.iter().all(|t| *t == format!("Bearer {TOKEN_A}")),
        "{to_a:?}"
    );
    assert!(
        to_b.iter().all(|t| *t == format!("Bearer {TOKEN_B}")),
        "{to_b:?}"
    );
}

#[tokio::test]
async fn sends_through_the_send_api_carry_each_workspaces_own_token_and_a_new_token_clears_an_error()
 {
    let scene = scene().await;
    let (a, b) = (workspace("a"), workspace("b"));
    for (ws, number, access_token) in [(&a, NUMBER_A, TOKEN_A), (&b, NUMBER_B, TOKEN_B)] {
        scene.graph_knows(number, access_token).await;
        assert_eq!(scene.connect(ws, number, access_token).await.status, 201);
        // AI off: the customer's message opens the window and is only stored.
        scene
            .customer_writes(number, &format!("wamid.IN{number}"), "Hi")
            .await;
    }
    let send = |ws: &WorkspaceId| {
        let request = json!({"contactId": CUSTOMER, "message": {"type": "text", "body": "Hello!"}});
        let token = token(ws);
        let api = &scene.api;
        async move {
            api.send("POST", "/v1/messages", Some(&token), Some(&request))
                .await
        }
    };
    assert_eq!(send(&a).await.status, 201);
    assert_eq!(send(&b).await.status, 201);
    assert_eq!(
        scene.send_tokens(NUMBER_A).await,
        [format!("Bearer {TOKEN_A}")]
    );
    assert_eq!(
        scene.send_tokens(NUMBER_B).await,
        [format!("Bearer {TOKEN_B}")]
    );

    // Meta revoked A's token (190): the number is not used until a new token comes.
    let store = &scene.api.processor_store;
    store
        .mark_integration_error(&pn(NUMBER_A), "190: token expired")
        .await
        .unwrap();
    let refused = send(&a).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.error_code(), "whatsapp_number_unavailable");
    assert_eq!(
        scene.send_tokens(NUMBER_A).await.len(),
        1,
        "nothing was sent"
    );
    let status = scene
        .api
        .get("/v1/whatsapp/connection", Some(&token(&a)))
        .await;
    assert_eq!(status.json()["status"], "error");

    let renewed = "EAAJworkspaceAtokenRENEWED000000003";
    scene.graph_knows(NUMBER_A, renewed).await;
    assert_eq!(scene.connect(&a, NUMBER_A, renewed).await.status, 201);
    let status = scene
        .api
        .get("/v1/whatsapp/connection", Some(&token(&a)))
        .await;
    assert_eq!(status.json()["status"], "connected", "{}", status.body);
    assert_eq!(send(&a).await.status, 201);
    assert_eq!(
        scene.send_tokens(NUMBER_A).await.last().cloned(),
        Some(format!("Bearer {renewed}"))
    );
    assert!(
        !scene
            .send_tokens(NUMBER_A)
            .await
            .contains(&format!("Bearer {APP_TOKEN}")),
        "a number with its own token never sends with the app's"
    );
}
