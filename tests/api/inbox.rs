//! The inbox routes against moto, with the conversations written by the real message processor
//! (AI on or off, WhatsApp faked by wiremock): lists over several pages and each filter,
//! `updatedSince` after each kind of activity, one conversation and its messages, `PATCH`
//! (handoff honoured by the processor, end to end), validation, and tenant isolation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use integration_tests::processor::{
    TestProcessor, build_processor, cloud_api, envelopes_of, event, invoke, meta_status,
    meta_texts, now, record, seed,
};
use integration_tests::{ApiRequest, default_secrets};
use serde_json::{Value, json};
use shared::conversations::model::{AiConfig, Provider};
use shared::conversations::processor::ProcessorSettings;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer};

use crate::helpers::{Reply, TestApi, spawn_api_with, token, workspace};

pub(crate) struct Inbox {
    api: TestApi,
    token: String,
    whatsapp: MockServer,
    processor: Arc<TestProcessor>,
}

/// A workspace whose customers' messages go through the real processor, with the AI on (the
/// offline responder: no provider key) or off.
pub(crate) async fn inbox(ai_on: bool) -> Inbox {
    let mut secrets = default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["meta_access_token"] = "test-meta-token".into();
    let api = spawn_api_with(secrets, &[]).await;
    let whatsapp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(cloud_api())
        .mount(&whatsapp)
        .await;
    let ws = workspace("ws");
    let ai = AiConfig {
        enabled: ai_on,
        ..AiConfig::default()
    };
    seed(&api.processor_store, &ws, Provider::Meta, &ai).await;
    let settings = ProcessorSettings {
        grok_base_url: whatsapp.uri(),
        ..ProcessorSettings::default()
    };
    let processor = build_processor(
        &api.stack,
        api.processor_store.clone(),
        &whatsapp.uri(),
        settings,
        &api.stack.aws,
    );
    Inbox {
        token: token(&ws),
        api,
        whatsapp,
        processor,
    }
}

impl Inbox {
    pub(crate) async fn deliver(&self, payload: &Value) {
        let records = envelopes_of(payload)
            .iter()
            .enumerate()
            .map(|(i, e)| record(&format!("r{i}"), e))
            .collect();
        let response = invoke(&self.processor, event(records)).await;
        assert!(response.batch_item_failures.is_empty(), "processed");
    }

    /// A customer's text, processed.
    pub(crate) async fn customer_writes(&self, customer: &str, wamid: &str, text: &str) {
        self.deliver(&meta_texts(&[(wamid, customer, text, now())]))
            .await;
    }

    /// The AI replies the WhatsApp fake received.
    pub(crate) async fn replies(&self) -> usize {
        self.whatsapp
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "text")
            .count()
    }

    pub(crate) async fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Reply {
        self.call_as(&self.token, method, path, query, body).await
    }

    pub(crate) async fn call_as(
        &self,
        token: &str,
        method: &'static str,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        self.api
            .send_raw(ApiRequest {
                method,
                path: path.into(),
                query: query.into(),
                headers,
                body: body.map(|b| b.to_string().into_bytes()),
                base64: false,
            })
            .await
    }

    pub(crate) async fn ok(
        &self,
        method: &'static str,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Value {
        let reply = self.call(method, path, query, body).await;
        assert_eq!(reply.status, 200, "{method} {path}?{query}: {}", reply.body);
        reply.json()
    }

    /// The contact ids of one page of conversations.
    pub(crate) async fn listed(&self, query: &str) -> (Vec<String>, Option<String>) {
        let page = self.ok("GET", "/v1/conversations", query, None).await;
        let contacts = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["contactId"].as_str().unwrap().to_owned())
            .collect();
        (contacts, page["nextCursor"].as_str().map(str::to_owned))
    }

    /// Every page, following `nextCursor`.
    pub(crate) async fn listed_all(&self, query: &str) -> (Vec<String>, usize) {
        let (mut all, mut cursor) = self.listed(query).await;
        let mut pages = 1;
        while let Some(c) = cursor {
            let (more, next) = self.listed(&format!("{query}&cursor={c}")).await;
            all.extend(more);
            cursor = next;
            pages += 1;
            assert!(pages < 20, "pagination ends");
        }
        (all, pages)
    }

    /// The id of a customer's (newest) conversation, as the list shows it.
    pub(crate) async fn conversation_of(&self, customer: &str) -> String {
        let page = self.ok("GET", "/v1/conversations", "limit=100", None).await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["contactId"] == customer)
            .unwrap_or_else(|| panic!("{customer} has a conversation: {page}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub(crate) const CUSTOMERS: [&str; 5] = [
    "16505550001",
    "16505550002",
    "16505550003",
    "16505550004",
    "16505550005",
];

#[tokio::test]
async fn conversations_list_newest_activity_first_across_pages() {
    let inbox = inbox(false).await;
    for (i, customer) in CUSTOMERS.iter().enumerate() {
        inbox
            .customer_writes(customer, &format!("wamid.LIST{i}"), "Hi")
            .await;
    }
    let (first, cursor) = inbox.listed("limit=2").await;
    assert_eq!(first, [CUSTOMERS[4], CUSTOMERS[3]]);
    assert!(cursor.is_some(), "a second page");
    let (all, pages) = inbox.listed_all("limit=2").await;
    let newest_first: Vec<_> = CUSTOMERS.iter().rev().map(|c| c.to_string()).collect();
    assert_eq!(all, newest_first);
    assert_eq!(pages, 3);

    // A new message moves its conversation to the top.
    inbox
        .customer_writes(CUSTOMERS[1], "wamid.LIST9", "Again")
        .await;
    let (first, _) = inbox.listed("limit=1").await;
    assert_eq!(first, [CUSTOMERS[1]]);
}

#[tokio::test]
async fn the_status_filter_lists_only_active_or_only_ended_conversations_across_pages() {
    let inbox = inbox(false).await;
    for (i, customer) in CUSTOMERS.iter().take(4).enumerate() {
        inbox
            .customer_writes(customer, &format!("wamid.FILTER{i}"), "Hi")
            .await;
    }
    for customer in [CUSTOMERS[0], CUSTOMERS[2]] {
        let id = inbox.conversation_of(customer).await;
        let ended = inbox
            .ok(
                "PATCH",
                &format!("/v1/conversations/{id}"),
                "",
                Some(&json!({ "status": "ended" })),
            )
            .await;
        assert_eq!(ended["status"], "ended");
        assert!(ended["endedAt"].is_string());
    }
    let (ended, pages) = inbox.listed_all("status=ended&limit=1").await;
    assert_eq!(ended, [CUSTOMERS[2], CUSTOMERS[0]]);
    assert!(pages >= 2);
    let (active, pages) = inbox.listed_all("status=active&limit=1").await;
    assert_eq!(active, [CUSTOMERS[3], CUSTOMERS[1]]);
    assert!(pages >= 2);
    let (everything, _) = inbox.listed_all("limit=3").await;
    assert_eq!(everything.len(), 4);
}

#[tokio::test]
async fn updated_since_lists_only_conversations_with_a_message_a_status_or_a_change_after_it() {
    let inbox = inbox(true).await;
    let [a, b, c, d, _] = CUSTOMERS;
    for (i, customer) in [a, b, c, d].iter().enumerate() {
        inbox
            .customer_writes(customer, &format!("wamid.SINCE{i}"), "Hi")
            .await;
    }
    assert_eq!(inbox.replies().await, 4, "the AI answered each");
    let b_conversation = inbox.conversation_of(b).await;
    let c_conversation = inbox.conversation_of(c).await;
    let b_messages = inbox
        .ok(
            "GET",
            &format!("/v1/conversations/{b_conversation}/messages"),
            "",
            None,
        )
        .await;
    let b_reply = b_messages["items"][1]["id"].as_str().unwrap().to_owned();

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mark = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let since = format!("updatedSince={}", mark.replace('+', "%2B"));
    assert_eq!(inbox.listed_all(&since).await.0, Vec::<String>::new());

    // A message in.
    inbox.customer_writes(a, "wamid.SINCE9", "One more").await;
    assert_eq!(inbox.listed_all(&since).await.0, [a]);
    // A status of a message out.
    inbox
        .deliver(&meta_status(
            &b_reply,
            "read",
            now(),
            json!({ "recipient_id": b }),
        ))
        .await;
    assert_eq!(inbox.listed_all(&since).await.0, [b, a]);
    // A change from the dashboard.
    inbox
        .ok(
            "PATCH",
            &format!("/v1/conversations/{c_conversation}"),
            "",
            Some(&json!({ "botPaused": true })),
        )
        .await;
    assert_eq!(inbox.listed_all(&since).await.0, [c, b, a]);
    // Combined with a status filter, and paged.
    let (active, _) = inbox
        .listed_all(&format!("{since}&status=active&limit=1"))
        .await;
    assert_eq!(active, [c, b, a]);
    let (all, _) = inbox.listed_all("updatedSince=2020-01-01T00:00:00Z").await;
    assert_eq!(all, [c, b, a, d]);
}

#[tokio::test]
async fn a_conversation_and_its_messages_read_back_in_order_with_statuses_and_ai_details() {
    let inbox = inbox(true).await;
    let customer = CUSTOMERS[0];
    inbox
        .customer_writes(customer, "wamid.READ1", "Hello")
        .await;
    let id = inbox.conversation_of(customer).await;

    let conversation = inbox
        .ok("GET", &format!("/v1/conversations/{id}"), "", None)
        .await;
    assert_eq!(conversation["id"], id.as_str());
    assert_eq!(conversation["contactId"], customer);
    assert_eq!(conversation["status"], "active");
    assert_eq!(conversation["botPaused"], false);
    assert!(conversation["lastInboundAt"].is_string());

    let messages = inbox
        .ok("GET", &format!("/v1/conversations/{id}/messages"), "", None)
        .await;
    let items = messages["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{messages}");
    assert_eq!(items[0]["id"], "wamid.READ1");
    assert_eq!(items[0]["direction"], "inbound");
    assert_eq!(items[0]["type"], "text");
    assert_eq!(items[0]["text"], "Hello");
    assert!(items[0].get("ai").is_none());
    let reply = &items[1];
    assert_eq!(reply["direction"], "outbound");
    assert_eq!(reply["ai"]["provider"], "offline");
    assert!(reply["ai"]["model"].is_string());
    assert!(reply["ai"]["latencyMs"].is_u64());
    let reply_id = reply["id"].as_str().unwrap().to_owned();

    for status in ["delivered", "read"] {
        inbox
            .deliver(&meta_status(
                &reply_id,
                status,
                now(),
                json!({ "recipient_id": customer }),
            ))
            .await;
    }
    let messages = inbox
        .ok("GET", &format!("/v1/conversations/{id}/messages"), "", None)
        .await;
    let reply = &messages["items"][1];
    assert_eq!(reply["status"], "read");
    let history: Vec<&str> = reply["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["sent", "delivered", "read"]);

    // Paged, oldest first. WhatsApp stamps inbound messages in whole seconds: the next one
    // comes a second after the reply, so its place is certain.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    inbox.customer_writes(customer, "wamid.READ2", "And?").await;
    let first = inbox
        .ok(
            "GET",
            &format!("/v1/conversations/{id}/messages"),
            "limit=3",
            None,
        )
        .await;
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = inbox
        .ok(
            "GET",
            &format!("/v1/conversations/{id}/messages"),
            &format!("limit=3&cursor={cursor}"),
            None,
        )
        .await;
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "two texts, two replies: {ids:?}");
    assert_eq!(ids[0], "wamid.READ1");
    assert_eq!(ids[2], "wamid.READ2");
    assert!(second.get("nextCursor").is_none());
}

#[tokio::test]
async fn after_patch_bot_paused_a_customer_message_is_stored_without_an_ai_reply_until_resumed() {
    let inbox = inbox(true).await;
    let customer = CUSTOMERS[0];
    inbox
        .customer_writes(customer, "wamid.HAND1", "Hello")
        .await;
    assert_eq!(inbox.replies().await, 1, "the AI answers at first");
    let id = inbox.conversation_of(customer).await;
    let path = format!("/v1/conversations/{id}");

    let paused = inbox
        .ok("PATCH", &path, "", Some(&json!({ "botPaused": true })))
        .await;
    assert_eq!(paused["botPaused"], true);
    assert_eq!(inbox.ok("GET", &path, "", None).await["botPaused"], true);

    inbox
        .customer_writes(customer, "wamid.HAND2", "Can a person help me?")
        .await;
    let messages = inbox.ok("GET", &format!("{path}/messages"), "", None).await;
    assert!(
        messages["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "wamid.HAND2"),
        "stored in the same conversation: {messages}"
    );
    assert_eq!(inbox.replies().await, 1, "no AI reply while paused");

    let resumed = inbox
        .ok("PATCH", &path, "", Some(&json!({ "botPaused": false })))
        .await;
    assert_eq!(resumed["botPaused"], false);
    inbox
        .customer_writes(customer, "wamid.HAND3", "Anyone there?")
        .await;
    assert_eq!(inbox.replies().await, 2, "the AI answers again");
}

#[tokio::test]
async fn the_conversation_list_shows_which_conversations_a_person_has_taken_over() {
    let inbox = inbox(false).await;
    for (customer, wamid) in [
        (CUSTOMERS[0], "wamid.LISTP1"),
        (CUSTOMERS[1], "wamid.LISTP2"),
    ] {
        inbox.customer_writes(customer, wamid, "Hello").await;
    }
    let paused_id = inbox.conversation_of(CUSTOMERS[0]).await;
    let other_id = inbox.conversation_of(CUSTOMERS[1]).await;
    inbox
        .ok(
            "PATCH",
            &format!("/v1/conversations/{paused_id}"),
            "",
            Some(&json!({ "botPaused": true })),
        )
        .await;

    let list = inbox.ok("GET", "/v1/conversations", "", None).await;
    let paused_of = |id: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {list}"))["botPaused"]
            .clone()
    };
    assert_eq!(paused_of(&paused_id), true, "{list}");
    assert_eq!(paused_of(&other_id), false, "{list}");
}

#[tokio::test]
async fn an_ended_conversation_cannot_be_paused_or_reopened_and_the_next_message_starts_a_new_one()
{
    let inbox = inbox(false).await;
    let customer = CUSTOMERS[0];
    inbox.customer_writes(customer, "wamid.END1", "Hello").await;
    let id = inbox.conversation_of(customer).await;
    let path = format!("/v1/conversations/{id}");
    inbox
        .ok("PATCH", &path, "", Some(&json!({ "status": "ended" })))
        .await;

    for body in [json!({ "botPaused": true }), json!({ "status": "active" })] {
        let reply = inbox.call("PATCH", &path, "", Some(&body)).await;
        assert_eq!(reply.status, 409, "{body}: {}", reply.body);
        assert_eq!(reply.error_code(), "conflict");
    }

    inbox
        .customer_writes(customer, "wamid.END2", "Back again")
        .await;
    let newest = inbox.conversation_of(customer).await;
    assert_ne!(newest, id, "a new conversation");
    let (ended, _) = inbox.listed_all("status=ended").await;
    assert_eq!(ended, [customer]);
    let (active, _) = inbox.listed_all("status=active").await;
    assert_eq!(active, [customer]);
}

#[tokio::test]
async fn invalid_parameters_and_bodies_are_refused_naming_the_field() {
    let inbox = inbox(false).await;
    inbox
        .customer_writes(CUSTOMERS[0], "wamid.VAL1", "Hello")
        .await;
    let id = inbox.conversation_of(CUSTOMERS[0]).await;
    let cases: Vec<(&'static str, String, &str, Option<Value>, &str)> = vec![
        (
            "GET",
            "/v1/conversations".into(),
            "status=open",
            None,
            "status",
        ),
        (
            "GET",
            "/v1/conversations".into(),
            "updatedSince=yesterday",
            None,
            "updatedSince",
        ),
        ("GET", "/v1/conversations".into(), "limit=0", None, "limit"),
        (
            "GET",
            "/v1/conversations".into(),
            "limit=many",
            None,
            "limit",
        ),
        (
            "GET",
            "/v1/conversations".into(),
            "cursor=garbled",
            None,
            "cursor",
        ),
        ("GET", "/v1/conversations".into(), "sort=asc", None, "sort"),
        (
            "GET",
            format!("/v1/conversations/{id}/messages"),
            "limit=101",
            None,
            "limit",
        ),
        (
            "GET",
            format!("/v1/conversations/{id}/messages"),
            "cursor=eyJ4IjoxfQ",
            None,
            "cursor",
        ),
        (
            "PATCH",
            format!("/v1/conversations/{id}"),
            "",
            Some(json!({})),
            "body",
        ),
        (
            "PATCH",
            format!("/v1/conversations/{id}"),
            "",
            Some(json!({ "status": "closed" })),
            "status",
        ),
        (
            "PATCH",
            format!("/v1/conversations/{id}"),
            "",
            Some(json!({ "botPaused": "yes" })),
            "botPaused",
        ),
        (
            "PATCH",
            format!("/v1/conversations/{id}"),
            "",
            Some(json!({ "paused": true })),
            "paused",
        ),
    ];
    for (method, path, query, body, field) in cases {
        let reply = inbox.call(method, &path, query, body.as_ref()).await;
        assert_eq!(reply.status, 400, "{method} {path}?{query}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        assert_eq!(
            reply.json()["error"]["details"]["field"],
            field,
            "{}",
            reply.body
        );
    }
    // A conversations cursor is not a messages cursor.
    inbox
        .customer_writes(CUSTOMERS[1], "wamid.VAL2", "Hello")
        .await;
    let (_, cursor) = inbox.listed("limit=1").await;
    let reply = inbox
        .call(
            "GET",
            &format!("/v1/conversations/{id}/messages"),
            &format!("cursor={}", cursor.unwrap()),
            None,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}

#[tokio::test]
async fn workspace_a_gets_404_for_workspace_bs_conversation_on_every_route_and_never_its_data() {
    let inbox = inbox(false).await;
    inbox
        .customer_writes(CUSTOMERS[0], "wamid.TEN1", "B's customer")
        .await;
    inbox
        .customer_writes(CUSTOMERS[1], "wamid.TEN2", "B's other customer")
        .await;
    let b_id = inbox.conversation_of(CUSTOMERS[0]).await;
    let ws_a = workspace("ws-a");
    let a = token(&ws_a);

    let path = format!("/v1/conversations/{b_id}");
    for (method, path, body) in [
        ("GET", path.clone(), None),
        ("GET", format!("{path}/messages"), None),
        ("PATCH", path.clone(), Some(json!({ "status": "ended" }))),
        ("PATCH", path.clone(), Some(json!({ "botPaused": true }))),
        ("GET", "/v1/conversations/not-an-id".to_owned(), None),
    ] {
        let reply = inbox.call_as(&a, method, &path, "", body.as_ref()).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
        assert!(!reply.body.contains(CUSTOMERS[0]), "{}", reply.body);
    }
    let reply = inbox
        .call_as(&a, "GET", "/v1/conversations", "", None)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["items"], json!([]));

    // B's cursor cannot page through B's list for A.
    let (_, b_cursor) = inbox.listed("limit=1").await;
    let reply = inbox
        .call_as(
            &a,
            "GET",
            "/v1/conversations",
            &format!("limit=1&cursor={}", b_cursor.unwrap()),
            None,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    // A cursor forged in A's own shape reads A's partition only: never B's items, never a 5xx.
    let own = format!("CT#{}#16505550001", ws_a.as_str());
    let long = "CONV#".repeat(100);
    for (pk, sk, index_sk) in [
        (own.as_str(), "CONV#x", "CONV#999999999999999#x"),
        (own.as_str(), long.as_str(), "CONV#0"),
    ] {
        let forged = URL_SAFE_NO_PAD.encode(json!([pk, sk, index_sk]).to_string());
        let reply = inbox
            .call_as(
                &a,
                "GET",
                "/v1/conversations",
                &format!("cursor={forged}"),
                None,
            )
            .await;
        assert!(reply.status == 200 || reply.status == 400, "{}", reply.body);
        assert!(!reply.body.contains(CUSTOMERS[0]), "{}", reply.body);
    }

    // A's attempts changed nothing of B's.
    let b_view = inbox.ok("GET", &path, "", None).await;
    assert_eq!(b_view["status"], "active");
    assert_eq!(b_view["botPaused"], false);
}
