//! A status that arrives before its message (an outbound echo not stored yet, or our own reply
//! between its send and its record) is kept and applied when the message is stored: on the
//! first attempt, and on a redelivery when the first attempt stored the message and then failed
//! before applying it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use integration_tests::PHONE_NUMBER_ID;
use integration_tests::fixture_json;
use integration_tests::moto_endpoint;
use integration_tests::processor::dynamo_item::{Item, map_keys, n, s};
use integration_tests::processor::{
    CUSTOMER, Options, World, build_processor, envelopes_of, event, failures, invoke, meta_status,
    meta_text, now, record, spawn_world,
};
use serde_json::{Value, json};
use shared::adapters::dynamo::DynamoStore;
use shared::conversations::model::Provider;
use shared::conversations::processor::ProcessorSettings;
use shared::envelope::{Envelope, Source};
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

/// A Business-app echo (`whatsapp.message.sent`, origin `business_app`) with a fresh timestamp.
fn fresh_echo() -> (Value, String) {
    let mut payload = fixture_json("kapso/message_sent_business_app.json");
    let t = now().to_string();
    payload["message"]["timestamp"] = t.clone().into();
    payload["message"]["kapso"]["statuses"][0]["timestamp"] = t.into();
    let wamid = payload["message"]["id"].as_str().unwrap().to_owned();
    (payload, wamid)
}

/// The envelopes ingest makes of a Kapso event.
fn kapso_envelopes(event_type: &str, payload: &Value) -> Vec<Envelope> {
    let body = serde_json::to_vec(payload).unwrap();
    shared::ingest::webhook::normalise(
        &body,
        &shared::ingest::webhook::DeliveryContext {
            source: Source::Kapso,
            event_header: Some(event_type),
            idempotency_key: None,
            received_at: time::OffsetDateTime::now_utc(),
        },
    )
    .unwrap()
    .envelopes
}

/// Delivers `delivered` then `read` for `wamid` before anything else knows it, and checks they
/// are kept for later.
async fn statuses_before(world: &World, wamid: &str) {
    let t = now();
    world
        .deliver_meta(&meta_status(wamid, "delivered", t, json!({})))
        .await;
    world
        .deliver_meta(&meta_status(wamid, "read", t + 1, json!({})))
        .await;
    world.pump().await;
    assert!(world.message(wamid).await.is_none(), "not stored yet");
    for status in ["delivered", "read"] {
        assert!(
            world
                .store
                .raw_item((format!("EARLY#{wamid}"), format!("STATUS#{status}")))
                .await
                .unwrap()
                .is_some(),
            "{status} is kept"
        );
    }
}

fn assert_read_with_its_history(message: &Item) {
    assert_eq!(s(message, "status"), "read", "{message:?}");
    assert_eq!(n(message, "status_rank"), Some(3));
    assert_eq!(
        map_keys(message, "status_at"),
        ["delivered", "read", "sent"]
    );
}

#[tokio::test]
async fn statuses_that_came_before_a_business_app_echo_are_applied_when_the_echo_is_stored() {
    let world = spawn_world(Options::default()).await;
    let (echo, wamid) = fresh_echo();
    statuses_before(&world, &wamid).await;

    world.deliver_kapso("whatsapp.message.sent", &echo).await;
    world.pump().await;

    let stored = world.message(&wamid).await.expect("the echo is stored");
    assert_eq!(s(&stored, "direction"), "outbound");
    assert_read_with_its_history(&stored);
}

/// A DynamoDB endpoint in front of moto that, while armed, fails every query for early
/// statuses with a 500: DynamoDB failing between the echo's write and the read of its statuses.
struct FaultyDynamo {
    armed: AtomicBool,
    upstream: String,
    http: reqwest::Client,
}

async fn forward(State(proxy): State<Arc<FaultyDynamo>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if proxy.armed.load(Ordering::SeqCst)
        && target.ends_with(".Query")
        && String::from_utf8_lossy(&body).contains("EARLY#")
    {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/x-amz-json-1.0")],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected fault"}"#,
        )
            .into_response();
    }
    let mut upstream = proxy.http.request(
        parts.method.clone(),
        format!(
            "{}{}",
            proxy.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        ),
    );
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.body(body).send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}

async fn faulty_dynamo() -> (Arc<FaultyDynamo>, String) {
    let proxy = Arc::new(FaultyDynamo {
        armed: AtomicBool::new(true),
        upstream: moto_endpoint().trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
    });
    let app = Router::new()
        .fallback(forward)
        .with_state(Arc::clone(&proxy));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (proxy, endpoint)
}

#[tokio::test]
async fn statuses_that_came_before_an_echo_are_applied_on_its_redelivery_when_the_first_attempt_stored_it_and_then_failed()
 {
    let world = spawn_world(Options::default()).await;
    let (proxy, endpoint) = faulty_dynamo().await;
    let store = DynamoStore::new(
        &local_stack::aws_config_for(&endpoint).await,
        world.store.table(),
    );
    let processor = build_processor(
        &world.stack,
        store,
        &world.whatsapp.uri(),
        ProcessorSettings::default(),
        &world.stack.aws,
    );
    let (echo, wamid) = fresh_echo();
    statuses_before(&world, &wamid).await;
    let envelope = kapso_envelopes("whatsapp.message.sent", &echo).remove(0);

    let first = invoke(&processor, event(vec![record("echo-1", &envelope)])).await;

    assert_eq!(failures(&first), ["echo-1"], "left for SQS to redeliver");
    let stored = world
        .message(&wamid)
        .await
        .expect("the first attempt stored the echo");
    assert_eq!(
        s(&stored, "status"),
        "sent",
        "its early statuses not applied yet"
    );

    proxy.armed.store(false, Ordering::SeqCst);
    let second = invoke(&processor, event(vec![record("echo-1", &envelope)])).await;

    assert!(failures(&second).is_empty(), "{:?}", failures(&second));
    assert_read_with_its_history(&world.message(&wamid).await.unwrap());
}

#[tokio::test]
async fn a_delivered_status_that_comes_while_our_reply_is_being_sent_is_applied_when_the_reply_is_recorded()
 {
    let world = spawn_world(Options {
        provider: Provider::Kapso,
        whatsapp_timeout: Duration::from_secs(15),
        ..Options::default()
    })
    .await;
    const REPLY: &str = "wamid.SLOWREPLY";
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{ "input": CUSTOMER, "wa_id": CUSTOMER }],
                    "messages": [{ "id": REPLY }]
                }))
                // Long enough for the status's invocation below, even on a loaded machine.
                .set_delay(Duration::from_secs(4)),
        )
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let ask = envelopes_of(&meta_text("wamid.SLOWASK", "Do you deliver?")).remove(0);
    // Kapso reports the reply delivered (its statuses carry no callback data) while our
    // send's answer is still on its way.
    let t = now();
    let delivered = json!({
        "message": {
            "id": REPLY, "timestamp": t.to_string(), "type": "text",
            "text": { "body": "Yes, we do." },
            "kapso": {
                "direction": "outbound", "status": "delivered", "origin": "cloud_api",
                "has_media": false,
                "statuses": [
                    { "id": REPLY, "status": "delivered", "timestamp": t.to_string(), "recipient_id": CUSTOMER }
                ]
            }
        },
        "conversation": {
            "id": "8b0e2f4a-1c3d-4e5f-9a7b-6c5d4e3f2a10", "phone_number": format!("+{CUSTOMER}"),
            "status": "active", "phone_number_id": PHONE_NUMBER_ID
        },
        "is_new_conversation": false,
        "phone_number_id": PHONE_NUMBER_ID
    });
    let status = kapso_envelopes("whatsapp.message.delivered", &delivered).remove(0);

    let reply = invoke(&world.processor, event(vec![record("ask", &ask)]));
    let status_meanwhile = async {
        let waited = Instant::now();
        while world.sent_texts().await.is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the reply was not sent within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = invoke(&world.processor, event(vec![record("status", &status)])).await;
        assert!(failures(&response).is_empty());
        assert!(
            world.message(REPLY).await.is_none(),
            "the status came before the reply was recorded"
        );
    };
    let (reply, ()) = tokio::join!(reply, status_meanwhile);

    assert!(failures(&reply).is_empty(), "{:?}", failures(&reply));
    let stored = world.message(REPLY).await.expect("the reply is recorded");
    assert_eq!(s(&stored, "direction"), "outbound");
    assert_eq!(s(&stored, "status"), "delivered", "{stored:?}");
    assert_eq!(map_keys(&stored, "status_at"), ["delivered", "sent"]);
}
