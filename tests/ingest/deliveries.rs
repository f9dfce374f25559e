//! Delivery-level behaviour: duplicates, bad input, nothing actionable, and a queue that is down.

use integration_tests::{
    ApiRequest, KAPSO_SECRET, fixture, fixture_json, kapso_signature, meta_signature, spawn_stack,
};
use shared::ingest::signature::sign_hex;

#[tokio::test]
async fn the_same_delivery_posted_twice_is_enqueued_once() {
    let stack = spawn_stack().await;
    let router = stack.ingest();
    let body = fixture("meta/multi.json");
    for _ in 0..2 {
        let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
            .header(meta_signature(&body))
            .send(&router)
            .await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.json()["enqueued"],
            5,
            "both answers say every event is stored"
        );
    }
    assert_eq!(stack.drain().await.len(), 5);
}

#[tokio::test]
async fn a_message_delivered_by_both_meta_and_kapso_is_enqueued_once() {
    let stack = spawn_stack().await;
    let router = stack.ingest();
    let meta_body = fixture("meta/text.json");
    let wamid =
        fixture_json("meta/text.json")["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let mut kapso = fixture_json("kapso/message_received.json");
    kapso["message"]["id"] = wamid.clone().into();
    let kapso_body = serde_json::to_vec(&kapso).unwrap();

    let meta = ApiRequest::post("/webhooks/whatsapp", meta_body.clone())
        .header(meta_signature(&meta_body))
        .send(&router)
        .await;
    let kapso = ApiRequest::post("/webhooks/kapso", kapso_body.clone())
        .header(kapso_signature(&kapso_body))
        .header(("X-Webhook-Event".into(), "whatsapp.message.received".into()))
        .send(&router)
        .await;
    assert_eq!((meta.status, kapso.status), (200, 200));
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["event_id"], format!("msg:{wamid}"));
}

#[tokio::test]
async fn a_delivered_and_a_read_status_of_one_message_are_two_events() {
    let stack = spawn_stack().await;
    let router = stack.ingest();
    for file in ["meta/status_delivered.json", "meta/status_read.json"] {
        let body = fixture(file);
        let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
            .header(meta_signature(&body))
            .send(&router)
            .await;
        assert_eq!(response.status, 200);
    }
    let kinds: Vec<_> = stack
        .drain()
        .await
        .iter()
        .map(|r| r.body["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["delivered", "read"]);
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_that_names_the_problem() {
    let stack = spawn_stack().await;
    let body = br#"{"object":"whatsapp_business_account","entry":[{"#.to_vec();
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 400);
    let error = response.json();
    assert_eq!(error["error"], "malformed_json");
    assert!(
        error["message"].as_str().unwrap().contains("EOF"),
        "{error}"
    );
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn json_that_is_no_webhook_is_a_bad_request() {
    let stack = spawn_stack().await;
    let body = br#"{"hello":"world"}"#.to_vec();
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(kapso_signature(&body))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "unrecognised_payload");
}

#[tokio::test]
async fn a_body_above_the_limit_is_payload_too_large_before_anything_else() {
    let stack = spawn_stack().await;
    let body = vec![b' '; shared::config::DEFAULT_MAX_BODY_BYTES + 1];
    // No signature at all: size is checked first, so no HMAC is spent on a huge body.
    let response = ApiRequest::post("/webhooks/whatsapp", body)
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"], "payload_too_large");
}

#[tokio::test]
async fn a_three_megabyte_meta_delivery_is_accepted() {
    let stack = spawn_stack().await;
    let mut payload = fixture_json("meta/text.json");
    let message = payload["entry"][0]["changes"][0]["value"]["messages"][0].clone();
    // 60 messages of ~50 KB each: about 3 MB, every envelope under SQS's message limit.
    let messages: Vec<_> = (0..60)
        .map(|i| {
            let mut m = message.clone();
            m["id"] = format!("wamid.BIG{i:04}").into();
            m["text"]["body"] = "x".repeat(50_000).into();
            m
        })
        .collect();
    payload["entry"][0]["changes"][0]["value"]["messages"] = messages.into();
    let body = serde_json::to_vec(&payload).unwrap();
    assert!(body.len() > 3_000_000, "{}", body.len());
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(stack.drain().await.len(), 60);
}

#[tokio::test]
async fn a_delivery_with_nothing_actionable_is_acknowledged_and_enqueues_nothing() {
    let stack = spawn_stack().await;
    let router = stack.ingest();
    for file in ["meta/no_actionable.json", "meta/account_update.json"] {
        let body = fixture(file);
        let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
            .header(meta_signature(&body))
            .send(&router)
            .await;
        assert_eq!(response.status, 200, "{file}");
        assert_eq!(response.json()["enqueued"], 0);
    }
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn an_unreachable_queue_is_service_unavailable_so_the_sender_retries() {
    let stack = spawn_stack().await;
    let dead = local_stack::aws_config_for("http://127.0.0.1:9").await;
    let router = stack.ingest_with_queue(&dead, "http://127.0.0.1:9/123456789012/gone.fifo");
    let body = fixture("meta/text.json");
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .send(&router)
        .await;
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["error"], "unavailable");
    assert!(
        !response.body.contains("127.0.0.1"),
        "no internals leak to the caller"
    );
}

#[tokio::test]
async fn a_queue_that_rejects_the_batch_is_service_unavailable() {
    let stack = spawn_stack().await;
    let missing = stack.queue_url().replace("-events.fifo", "-missing.fifo");
    let router = stack.ingest_with_queue(&stack.aws, &missing);
    let body = fixture("kapso/batch_received.json");
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(("X-Webhook-Signature".into(), sign_hex(KAPSO_SECRET, &body)))
        .send(&router)
        .await;
    assert_eq!(response.status, 503);
}

#[tokio::test]
async fn a_missing_app_secret_is_service_unavailable_not_accepted() {
    let stack = spawn_stack().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.aws);
    secrets
        .delete_secret()
        .secret_id(stack.secret_id())
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let body = fixture("meta/text.json");
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 503);
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn an_unknown_route_is_not_found() {
    let stack = spawn_stack().await;
    let response = ApiRequest::post("/webhooks/other", b"{}".to_vec())
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 404);
}
