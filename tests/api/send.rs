//! `POST /v1/messages`: every message type through the one WhatsApp client (a wiremock fake of
//! the Cloud API), the 24-hour window, opt-out, idempotency across requests, WhatsApp's
//! failures, tenant isolation, and the coverage that keeps the real processor from answering
//! what a person already answered.

use std::time::Duration;

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    CUSTOMER, build_processor, cloud_api, completion, envelopes_of, event, failures, invoke,
    meta_status, meta_texts, now, record, thread,
};
use integration_tests::{PHONE_NUMBER_ID, default_secrets};
use serde_json::{Value, json};
use shared::adapters::dynamo::{self, DynamoStore};
use shared::conversations::model::{AiConfig, Integration, IntegrationStatus, Provider};
use shared::conversations::processor::ProcessorSettings;
use shared::conversations::store::{ContactStore, TenantStore};
use shared::ids::{PhoneNumberId, WaId, Wamid, WorkspaceId};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Reply, TestApi, spawn_api_with, token, workspace};

struct Scene {
    api: TestApi,
    whatsapp: MockServer,
    grok: MockServer,
    ws: WorkspaceId,
    token: String,
}

/// The API with its WhatsApp fake, a workspace with one Meta number and AI off.
async fn scene() -> Scene {
    let whatsapp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(cloud_api())
        .mount(&whatsapp)
        .await;
    let grok = MockServer::start().await;
    let mut secrets = default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["meta_access_token"] = "test-meta-token".into();
    secrets["grok_api_key"] = "xai-test-key".into();
    let uri = whatsapp.uri();
    let api = spawn_api_with(
        secrets,
        &[
            ("META_GRAPH_BASE_URL", uri.as_str()),
            ("KAPSO_BASE_URL", uri.as_str()),
        ],
    )
    .await;
    let ws = workspace("ws");
    seed(&api.processor_store, &ws, PHONE_NUMBER_ID, false).await;
    Scene {
        token: token(&ws),
        api,
        whatsapp,
        grok,
        ws,
    }
}

async fn seed(store: &DynamoStore, ws: &WorkspaceId, number: &str, ai: bool) {
    let integration = Integration {
        phone_number_id: PhoneNumberId::parse(number).unwrap(),
        workspace_id: ws.clone(),
        provider: Provider::Meta,
        status: IntegrationStatus::Active,
        error: None,
        access_token: None,
    };
    let ai = AiConfig {
        enabled: ai,
        ..AiConfig::default()
    };
    store
        .put_workspace(ws, "Test shop", &integration, &ai)
        .await
        .unwrap();
}

impl Scene {
    /// The customer writes `text` `ago` seconds ago; the real processor stores it (AI off: no
    /// answer).
    async fn customer_writes(&self, wamid: &str, text: &str, ago: i64) {
        let processor = build_processor(
            &self.api.stack,
            self.api.processor_store.clone(),
            &self.whatsapp.uri(),
            ProcessorSettings::default(),
            &self.api.stack.aws,
        );
        let envelope = envelopes_of(&meta_texts(&[(wamid, CUSTOMER, text, now() - ago)])).remove(0);
        let response = invoke(&processor, event(vec![record(wamid, &envelope)])).await;
        assert!(failures(&response).is_empty());
    }

    async fn post(&self, body: &Value, key: Option<&str>) -> Reply {
        let mut headers = vec![
            ("authorization".to_owned(), format!("Bearer {}", self.token)),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        if let Some(key) = key {
            headers.push(("idempotency-key".to_owned(), key.to_owned()));
        }
        self.api
            .send_raw(integration_tests::ApiRequest {
                method: "POST",
                path: "/v1/messages".into(),
                query: String::new(),
                headers,
                body: Some(body.to_string().into_bytes()),
                base64: false,
            })
            .await
    }

    /// The message bodies the WhatsApp fake received (not read receipts).
    async fn sent(&self) -> Vec<Value> {
        self.whatsapp
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|b| b["status"] != "read")
            .collect()
    }

    async fn message_item(&self, wamid: &str) -> integration_tests::processor::dynamo_item::Item {
        self.api
            .processor_store
            .raw_item(dynamo::message_key(&Wamid::parse(wamid).unwrap()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{wamid} is stored"))
    }
}

fn to_customer(message: Value) -> Value {
    json!({ "contactId": CUSTOMER, "message": message })
}

fn text(body: &str) -> Value {
    to_customer(json!({ "type": "text", "body": body }))
}

fn template(name: &str) -> Value {
    to_customer(
        json!({ "type": "template", "name": name, "language": "en_US",
        "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "42" }] }] }),
    )
}

#[tokio::test]
async fn every_message_type_reaches_whatsapp_with_its_body_and_is_stored_in_the_conversation() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi there", 60).await;
    let cases: Vec<(Value, &str, Value)> = vec![
        (
            json!({ "type": "text", "body": "Hello!", "replyTo": "wamid.IN1" }),
            "text",
            json!({ "text": { "body": "Hello!" }, "context": { "message_id": "wamid.IN1" } }),
        ),
        (
            json!({ "type": "template", "name": "order_ready", "language": "en_US",
                    "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "42" }] }] }),
            "template",
            json!({ "template": { "name": "order_ready", "language": { "code": "en_US" },
                    "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "42" }] }] } }),
        ),
        (
            json!({ "type": "image", "link": "https://example.com/a.png", "caption": "Our menu" }),
            "image",
            json!({ "image": { "link": "https://example.com/a.png", "caption": "Our menu" } }),
        ),
        (
            json!({ "type": "document", "id": "1013859600285441", "filename": "invoice.pdf" }),
            "document",
            json!({ "document": { "id": "1013859600285441", "filename": "invoice.pdf" } }),
        ),
        (
            json!({ "type": "audio", "id": "998" }),
            "audio",
            json!({ "audio": { "id": "998" } }),
        ),
        (
            json!({ "type": "video", "link": "https://example.com/v.mp4" }),
            "video",
            json!({ "video": { "link": "https://example.com/v.mp4" } }),
        ),
        (
            json!({ "type": "sticker", "id": "777" }),
            "sticker",
            json!({ "sticker": { "id": "777" } }),
        ),
        (
            json!({ "type": "buttons", "body": "Pick a size", "footer": "Tap one",
                    "buttons": [{ "id": "s", "title": "Small" }, { "id": "l", "title": "Large" }] }),
            "interactive",
            json!({ "interactive": { "type": "button", "body": { "text": "Pick a size" },
                    "footer": { "text": "Tap one" },
                    "action": { "buttons": [
                        { "type": "reply", "reply": { "id": "s", "title": "Small" } },
                        { "type": "reply", "reply": { "id": "l", "title": "Large" } }] } } }),
        ),
        (
            json!({ "type": "list", "body": "Our branches", "button": "Choose",
                    "sections": [{ "title": "North", "rows": [{ "id": "n1", "title": "Uptown", "description": "Open 9-5" }] }] }),
            "interactive",
            json!({ "interactive": { "type": "list", "body": { "text": "Our branches" },
                    "action": { "button": "Choose", "sections": [{ "title": "North",
                        "rows": [{ "id": "n1", "title": "Uptown", "description": "Open 9-5" }] }] } } }),
        ),
        (
            json!({ "type": "reaction", "messageId": "wamid.IN1", "emoji": "👍" }),
            "reaction",
            json!({ "reaction": { "message_id": "wamid.IN1", "emoji": "👍" } }),
        ),
    ];
    for (i, (message, meta_type, expected)) in cases.iter().enumerate() {
        let reply = scene.post(&to_customer(message.clone()), None).await;
        assert_eq!(reply.status, 201, "{message}: {}", reply.body);
        let sent = scene.sent().await;
        assert_eq!(sent.len(), i + 1, "{message}");
        let body = &sent[i];
        assert_eq!(body["to"], CUSTOMER, "{message}");
        assert_eq!(body["type"], *meta_type, "{message}");
        assert_json_include(body, expected, &message.to_string());

        let answer = reply.json();
        let wamid = answer["wamid"].as_str().unwrap();
        let stored = scene.message_item(wamid).await;
        assert_eq!(s(&stored, "direction"), "outbound");
        assert_eq!(s(&stored, "origin"), "dashboard");
        assert_eq!(s(&stored, "status"), "sent");
        assert_eq!(s(&stored, "conversation_id"), answer["conversationId"]);
    }
}

/// `actual` holds everything in `expected` (objects may have more keys).
fn assert_json_include(actual: &Value, expected: &Value, what: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                assert_json_include(&a[k], v, what);
            }
        }
        _ => assert_eq!(actual, expected, "{what}"),
    }
}

#[tokio::test]
async fn outside_the_window_a_text_gets_422_before_any_call_and_a_template_still_goes_out() {
    let scene = scene().await;
    scene
        .customer_writes("wamid.OLD", "Hello?", 25 * 3600)
        .await;
    let reply = scene.post(&text("Sorry for the wait"), None).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_code(), "outside_customer_service_window");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("template")
    );
    assert!(scene.sent().await.is_empty(), "no request reached WhatsApp");

    let reply = scene.post(&template("follow_up"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(scene.sent().await.len(), 1);
    // It opened a new conversation, in which the message is stored.
    let answer = reply.json();
    let contact = scene
        .api
        .processor_store
        .raw_item(dynamo::contact_key(
            &scene.ws,
            &WaId::parse(CUSTOMER).unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s(&contact, &thread("conversation_id")),
        answer["conversationId"]
    );
    let stored = scene.message_item(answer["wamid"].as_str().unwrap()).await;
    assert_eq!(s(&stored, "type"), "template");
}

#[tokio::test]
async fn an_idempotency_key_sent_twice_sends_once_and_answers_the_same() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let first = scene.post(&text("On my way"), Some("key-1")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = scene.post(&text("On my way"), Some("key-1")).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.json(), first.json());
    assert_eq!(scene.sent().await.len(), 1, "one send only");
    // Another key is another message.
    let other = scene.post(&text("On my way"), Some("key-2")).await;
    assert_eq!(other.status, 201);
    assert_ne!(other.json()["wamid"], first.json()["wamid"]);
    assert_eq!(scene.sent().await.len(), 2);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_gets_422_and_sends_nothing() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    assert_eq!(scene.post(&text("One"), Some("k")).await.status, 201);
    let reply = scene.post(&text("Two"), Some("k")).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_code(), "idempotency_key_reused");
    assert_eq!(scene.sent().await.len(), 1);
}

#[tokio::test]
async fn a_404_for_a_customer_who_never_wrote_frees_its_idempotency_key() {
    let scene = scene().await;
    // No message from the customer yet: no such contact.
    let key = Some("retry-me");
    assert_eq!(scene.post(&text("Hi"), key).await.status, 404);
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let reply = scene.post(&text("Hi"), key).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn whatsapp_throttling_gives_429_with_retry_after_and_frees_the_messages() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("Retry-After", "30")
                .set_body_json(json!({ "error": { "code": 130429, "message": "Rate limit hit" } })),
        )
        .with_priority(1)
        .mount(&scene.whatsapp)
        .await;
    let reply = scene.post(&text("Hello"), Some("k")).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.error_code(), "whatsapp_throttled");
    assert_eq!(reply.headers["retry-after"], "30");
    // Certainly not sent: the customer's message is not covered.
    let inbound = scene.message_item("wamid.IN1").await;
    assert!(!inbound.contains_key("reply_intent"));
}

#[tokio::test]
async fn a_refused_token_marks_the_integration_and_answers_502() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({ "error": { "code": 190, "message": "Error validating access token" } }),
        ))
        .with_priority(1)
        .mount(&scene.whatsapp)
        .await;
    let reply = scene.post(&text("Hello"), None).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.error_code(), "whatsapp_token_invalid");
    let integration = scene
        .api
        .processor_store
        .integration(&PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(integration.status, IntegrationStatus::Error);
}

#[tokio::test]
async fn an_opted_out_contact_gets_409_but_a_transactional_template_goes_through() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let store = &scene.api.processor_store;
    store
        .set_opt_out(
            &scene.ws,
            &WaId::parse(CUSTOMER).unwrap(),
            true,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    store
        .set_transactional_templates(&scene.ws, &["receipt"])
        .await
        .unwrap();
    for body in [text("A deal for you"), template("promo")] {
        let reply = scene.post(&body, None).await;
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert_eq!(reply.error_code(), "contact_opted_out");
    }
    assert!(scene.sent().await.is_empty());
    let reply = scene.post(&template("receipt"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(scene.sent().await.len(), 1);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let cases = [
        (
            json!({ "phone": "6505551234", "message": { "type": "text", "body": "x" } }),
            "phone",
        ),
        (
            json!({ "message": { "type": "text", "body": "x" } }),
            "contactId",
        ),
        (text(""), "message.body"),
        (
            to_customer(json!({ "type": "image", "caption": "no source" })),
            "message.link",
        ),
        (
            to_customer(json!({ "type": "buttons", "body": "Pick",
                "buttons": [{"id":"1","title":"a"},{"id":"2","title":"b"},{"id":"3","title":"c"},{"id":"4","title":"d"}] })),
            "message.buttons",
        ),
        (
            to_customer(json!({ "type": "reaction", "messageId": "", "emoji": "x" })),
            "message.messageId",
        ),
        (
            json!({ "contactId": CUSTOMER, "phoneNumberId": "abc", "message": { "type": "text", "body": "x" } }),
            "phoneNumberId",
        ),
        (
            json!({ "contactId": CUSTOMER, "message": { "type": "text", "body": "x" }, "extra": 1 }),
            "extra",
        ),
    ];
    for (body, field) in cases {
        let reply = scene.post(&body, None).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        assert_eq!(reply.json()["error"]["details"]["field"], field, "{body}");
    }
    let reply = scene.post(&text("x"), Some("has space")).await;
    assert_eq!(reply.json()["error"]["details"]["field"], "Idempotency-Key");
    assert!(scene.sent().await.is_empty());
}

#[tokio::test]
async fn workspace_a_cannot_send_to_workspace_bs_contact_or_from_its_number() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let a = workspace("ws-a");
    seed(&scene.api.processor_store, &a, "106540352240000", false).await;
    let a_token = token(&a);
    let post = |body: Value| {
        let api = &scene.api;
        let a_token = a_token.clone();
        async move {
            api.send("POST", "/v1/messages", Some(&a_token), Some(&body))
                .await
        }
    };
    // B's customer, who never wrote to A.
    let reply = post(text("Hello from A")).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    // B's number.
    let mut body = text("Hello from A");
    body["phoneNumberId"] = PHONE_NUMBER_ID.into();
    let reply = post(body).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(scene.sent().await.is_empty());
}

#[tokio::test]
async fn a_dashboard_message_covers_the_pending_customer_message_so_the_processor_does_not_answer_it()
 {
    let scene = scene().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("AI answer", "grok-3-mini")),
        )
        .mount(&scene.grok)
        .await;
    // The customer's message is stored before the AI got to it (AI still off for it).
    scene
        .customer_writes("wamid.IN1", "Do you deliver?", 5)
        .await;
    let reply = scene.post(&text("Yes, we do!"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["covers"], json!(["wamid.IN1"]));
    let inbound = scene.message_item("wamid.IN1").await;
    assert!(s(&inbound, "reply_intent").contains("dashboard."));
    let contact = scene
        .api
        .processor_store
        .raw_item(dynamo::contact_key(
            &scene.ws,
            &WaId::parse(CUSTOMER).unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(!s(&contact, &thread("answered_through")).is_empty());

    // Now the AI is on, and the customer's message is delivered again: the real processor
    // leaves it to the person who answered.
    seed(&scene.api.processor_store, &scene.ws, PHONE_NUMBER_ID, true).await;
    let settings = ProcessorSettings {
        grok_base_url: scene.grok.uri(),
        ..ProcessorSettings::default()
    };
    let processor = build_processor(
        &scene.api.stack,
        scene.api.processor_store.clone(),
        &scene.whatsapp.uri(),
        settings,
        &scene.api.stack.aws,
    );
    let t = now() - 5;
    let again = envelopes_of(&meta_texts(&[(
        "wamid.IN1",
        CUSTOMER,
        "Do you deliver?",
        t,
    )]))
    .remove(0);
    assert!(failures(&invoke(&processor, event(vec![record("r1", &again)])).await).is_empty());
    let texts = |sent: Vec<Value>| sent.into_iter().filter(|b| b["type"] == "text").count();
    assert_eq!(
        texts(scene.sent().await),
        1,
        "only the person's message went out"
    );

    // A new customer message is answered by the AI: the processor does answer uncovered ones.
    let next = envelopes_of(&meta_texts(&[(
        "wamid.IN2",
        CUSTOMER,
        "And on Sundays?",
        now(),
    )]))
    .remove(0);
    assert!(failures(&invoke(&processor, event(vec![record("r2", &next)])).await).is_empty());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        texts(scene.sent().await),
        2,
        "the AI answered the new message"
    );
}

#[tokio::test]
async fn an_outside_the_window_422_frees_its_idempotency_key_for_a_send_after_the_customer_writes_again()
 {
    let scene = scene().await;
    scene
        .customer_writes("wamid.OLD", "Hello?", 25 * 3600)
        .await;
    let key = Some("after-the-window");
    let refused = scene.post(&text("Sorry for the wait"), key).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.error_code(), "outside_customer_service_window");
    assert!(scene.sent().await.is_empty());

    scene.customer_writes("wamid.NEW", "Anyone there?", 5).await;
    let reply = scene.post(&text("Sorry for the wait"), key).await;
    assert_eq!(reply.status, 201, "the same key sends now: {}", reply.body);
    assert_eq!(reply.json()["covers"], json!(["wamid.NEW"]));
    assert_eq!(scene.sent().await.len(), 1);
    // And is kept for this send from now on.
    let again = scene.post(&text("Sorry for the wait"), key).await;
    assert_eq!(again.json(), reply.json());
    assert_eq!(scene.sent().await.len(), 1);
}

#[tokio::test]
async fn media_sent_by_id_with_a_caption_reaches_whatsapp_with_both_and_is_stored_with_them() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "The menu?", 10).await;
    let reply = scene
        .post(
            &to_customer(
                json!({ "type": "image", "id": "1013859600285441", "caption": "Our menu" }),
            ),
            None,
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let sent = scene.sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "image");
    assert_eq!(
        sent[0]["image"],
        json!({ "id": "1013859600285441", "caption": "Our menu" }),
        "the id and the caption, and no link"
    );
    let stored = scene
        .message_item(reply.json()["wamid"].as_str().unwrap())
        .await;
    assert_eq!(s(&stored, "type"), "image");
    assert_eq!(s(&stored, "media_id"), "1013859600285441");
    assert_eq!(s(&stored, "text"), "Our menu");
}

#[tokio::test]
async fn a_send_addressed_by_the_e164_phone_of_a_contact_lands_in_that_contacts_conversation() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let by_id = scene.post(&text("First, by id"), None).await;
    assert_eq!(by_id.status, 201, "{}", by_id.body);
    let body = json!({ "phone": format!("+{CUSTOMER}"), "message": { "type": "text", "body": "Then by phone" } });
    let reply = scene.post(&body, None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["contactId"], CUSTOMER);
    assert_eq!(answer["conversationId"], by_id.json()["conversationId"]);
    let sent = scene.sent().await;
    assert_eq!(sent[1]["to"], CUSTOMER);
    assert_eq!(sent[1]["text"]["body"], "Then by phone");
    let stored = scene.message_item(answer["wamid"].as_str().unwrap()).await;
    assert_eq!(s(&stored, "conversation_id"), answer["conversationId"]);
    assert_eq!(s(&stored, "direction"), "outbound");
}

impl Scene {
    async fn get(&self, path: &str, query: &str) -> Value {
        let reply = self
            .api
            .send_raw(integration_tests::ApiRequest {
                headers: vec![("authorization".to_owned(), format!("Bearer {}", self.token))],
                ..integration_tests::ApiRequest::get(path, query)
            })
            .await;
        assert_eq!(reply.status, 200, "GET {path}?{query}: {}", reply.body);
        reply.json()
    }

    /// The conversations `GET /v1/conversations?updatedSince=<since>` lists.
    async fn updated_since(&self, since: &str) -> Vec<Value> {
        let query = format!("updatedSince={}", since.replace('+', "%2B"));
        let page = self.get("/v1/conversations", &query).await;
        let ids = page["items"].as_array().unwrap();
        ids.iter().map(|c| c["id"].clone()).collect()
    }
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn updated_since_after_a_dashboard_message_lists_its_conversation() {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mark = rfc3339_now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(scene.updated_since(&mark).await, Vec::<Value>::new());

    let reply = scene.post(&text("We're open"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        scene.updated_since(&mark).await,
        [reply.json()["conversationId"].clone()],
        "the message out is activity"
    );
}

#[tokio::test]
async fn a_dashboard_message_reads_back_in_its_conversation_and_a_delivered_status_updates_it() {
    let scene = scene().await;
    scene
        .customer_writes("wamid.IN1", "Where is my order?", 10)
        .await;
    let reply = scene.post(&text("On its way"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let answer = reply.json();
    let wamid = answer["wamid"].as_str().unwrap().to_owned();
    let messages_path = format!(
        "/v1/conversations/{}/messages",
        answer["conversationId"].as_str().unwrap()
    );

    let page = scene.get(&messages_path, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["id"], "wamid.IN1");
    let sent = &items[1];
    assert_eq!(sent["id"], wamid.as_str());
    assert_eq!(sent["direction"], "outbound");
    assert_eq!(sent["text"], "On its way");
    assert_eq!(sent["origin"], "dashboard");
    assert_eq!(sent["status"], "sent");

    // WhatsApp's status webhook, through the real processor.
    let mark = rfc3339_now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let processor = build_processor(
        &scene.api.stack,
        scene.api.processor_store.clone(),
        &scene.whatsapp.uri(),
        ProcessorSettings::default(),
        &scene.api.stack.aws,
    );
    let delivered = envelopes_of(&meta_status(&wamid, "delivered", now(), json!({}))).remove(0);
    let response = invoke(&processor, event(vec![record("status", &delivered)])).await;
    assert!(failures(&response).is_empty());

    let page = scene.get(&messages_path, "").await;
    let sent = &page["items"][1];
    assert_eq!(sent["id"], wamid.as_str());
    assert_eq!(sent["status"], "delivered", "{page}");
    let history: Vec<&str> = sent["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert!(history.contains(&"delivered"), "{sent}");
    assert_eq!(
        scene.updated_since(&mark).await,
        [answer["conversationId"].clone()],
        "the status is activity too"
    );
}

/// The real processor, with the workspace's AI settings as stored now (a new instance caches
/// nothing), handles the customer's `text` sent at `at`.
async fn processor_handles(scene: &Scene, wamid: &str, text: &str, at: i64) {
    let settings = ProcessorSettings {
        grok_base_url: scene.grok.uri(),
        ..ProcessorSettings::default()
    };
    let processor = build_processor(
        &scene.api.stack,
        scene.api.processor_store.clone(),
        &scene.whatsapp.uri(),
        settings,
        &scene.api.stack.aws,
    );
    let envelope = envelopes_of(&meta_texts(&[(wamid, CUSTOMER, text, at)])).remove(0);
    let response = invoke(&processor, event(vec![record(wamid, &envelope)])).await;
    assert!(failures(&response).is_empty());
}

#[tokio::test]
async fn a_dashboard_message_covers_a_same_second_customer_message_the_ai_left_unanswered() {
    let scene = scene().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("AI answer", "grok-3-mini")),
        )
        .mount(&scene.grok)
        .await;
    let texts = |sent: Vec<Value>| sent.into_iter().filter(|b| b["type"] == "text").count();
    let second = now() - 5;
    // The AI answers the first message of that second...
    seed(&scene.api.processor_store, &scene.ws, PHONE_NUMBER_ID, true).await;
    processor_handles(&scene, "wamid.SAME1", "Hi", second).await;
    assert_eq!(texts(scene.sent().await), 1, "the AI answered the first");
    // ...and not the second one, of the same second (AI off by then).
    seed(
        &scene.api.processor_store,
        &scene.ws,
        PHONE_NUMBER_ID,
        false,
    )
    .await;
    processor_handles(&scene, "wamid.SAME2", "Are you open?", second).await;
    assert_eq!(texts(scene.sent().await), 1);

    let reply = scene.post(&text("Yes, until 6"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.json()["covers"],
        json!(["wamid.SAME2"]),
        "the person's message answers the unanswered one, not the AI's"
    );
    assert!(s(&scene.message_item("wamid.SAME2").await, "reply_intent").contains("dashboard."));
    assert!(!s(&scene.message_item("wamid.SAME1").await, "reply_intent").contains("dashboard."));

    // The AI, on again, does not answer it when it is delivered again.
    seed(&scene.api.processor_store, &scene.ws, PHONE_NUMBER_ID, true).await;
    processor_handles(&scene, "wamid.SAME2", "Are you open?", second).await;
    assert_eq!(
        texts(scene.sent().await),
        2,
        "the AI's and the person's messages, nothing more"
    );
}

#[tokio::test]
async fn a_retry_while_the_first_request_is_in_flight_gets_409_and_sends_nothing() {
    use shared::dashboard::send::{
        IdempotencyKey, IdempotencyStore, SendMessageRequest, request_hash,
    };
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let body = text("Coming");
    // Another container holds the key for the same request and has not finished.
    let request: SendMessageRequest = serde_json::from_value(body.clone()).unwrap();
    let key = IdempotencyKey::parse("k-inflight").unwrap();
    scene
        .api
        .processor_store
        .claim_idempotency_key(
            &scene.ws,
            &key,
            &request_hash(&request),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let reply = scene.post(&body, Some("k-inflight")).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.error_code(), "idempotency_key_in_flight");
    assert!(scene.sent().await.is_empty());
}

#[tokio::test]
async fn an_opted_out_contact_gets_a_template_once_the_workspace_marks_it_transactional_through_the_route()
 {
    let scene = scene().await;
    scene.customer_writes("wamid.IN1", "Hi", 10).await;
    let path = "/v1/templates/transactional";
    let own = Some(scene.token.as_str());
    let opt_out = json!({ "optedOut": true });
    let reply = scene
        .api
        .send(
            "PATCH",
            &format!("/v1/contacts/{CUSTOMER}"),
            own,
            Some(&opt_out),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = scene.post(&template("receipt"), None).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.error_code(), "contact_opted_out");
    assert_eq!(
        scene.api.get(path, own).await.json(),
        json!({ "names": [] })
    );

    // Validation names the field, and changes nothing.
    let too_many: Vec<String> = (0..=100).map(|i| format!("t{i}")).collect();
    for (body, field) in [
        (json!({ "names": ["receipt", "Receipt"] }), "names[1]"),
        (json!({ "names": ["order-receipt"] }), "names[0]"),
        (json!({ "names": ["a".repeat(513)] }), "names[0]"),
        (json!({ "names": too_many }), "names"),
        (json!({ "names": "receipt" }), "names"),
        (json!({}), "names"),
    ] {
        let reply = scene.api.put(path, own, &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.json()["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(
        scene.api.get(path, own).await.json(),
        json!({ "names": [] })
    );

    let marked = scene
        .api
        .put(
            path,
            own,
            &json!({ "names": ["receipt", "otp", "receipt"] }),
        )
        .await;
    assert_eq!(marked.status, 200, "{}", marked.body);
    assert_eq!(marked.json(), json!({ "names": ["receipt", "otp"] }));
    assert_eq!(scene.api.get(path, own).await.json(), marked.json());
    let reply = scene.post(&template("receipt"), None).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(scene.sent().await.len(), 1);
    let reply = scene.post(&template("promo"), None).await;
    assert_eq!(reply.status, 409, "{}", reply.body);

    // Workspace B neither sees A's list nor changes it.
    let b = token(&workspace("ws-b"));
    assert_eq!(
        scene.api.get(path, Some(&b)).await.json(),
        json!({ "names": [] })
    );
    let reply = scene
        .api
        .put(path, Some(&b), &json!({ "names": ["promo"] }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(scene.api.get(path, own).await.json(), marked.json());
    let reply = scene.post(&template("promo"), None).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(scene.sent().await.len(), 1);
}
