//! Signature verification at the edge: both schemes, the legacy header, and every way to fail.

use integration_tests::{
    ApiRequest, KAPSO_SECRET, META_SECRET, fixture, kapso_signature, meta_signature, spawn_stack,
    spawn_stack_with,
};
use serde_json::json;
use shared::ingest::signature::sign_hex;

#[tokio::test]
async fn a_meta_delivery_signed_with_the_app_secret_is_accepted() {
    let stack = spawn_stack().await;
    let body = fixture("meta/text.json");
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn a_kapso_delivery_signed_with_the_webhook_secret_is_accepted() {
    let stack = spawn_stack().await;
    let body = fixture("kapso/message_received.json");
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(kapso_signature(&body))
        .header(("X-Webhook-Event".into(), "whatsapp.message.received".into()))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn the_legacy_kapso_header_is_accepted() {
    let stack = spawn_stack().await;
    let body = fixture("kapso/message_received.json");
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(("x-kapso-signature".into(), sign_hex(KAPSO_SECRET, &body)))
        .header(("x-webhook-event".into(), "whatsapp.message.received".into()))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test]
async fn the_fixture_headers_kapso_would_send_are_accepted_as_they_are() {
    let stack = spawn_stack().await;
    let router = stack.ingest();
    for file in [
        "message_received.json",
        "batch_received.json",
        "message_failed.json",
    ] {
        let body = fixture(&format!("kapso/{file}"));
        let response = ApiRequest::post("/webhooks/kapso", body)
            .headers(integration_tests::kapso_headers(file))
            .send(&router)
            .await;
        assert_eq!(response.status, 200, "{file}: {}", response.body);
    }
}

#[tokio::test]
async fn header_names_are_matched_case_insensitively() {
    let stack = spawn_stack().await;
    let body = fixture("meta/text.json");
    let signature = format!("sha256={}", sign_hex(META_SECRET, &body));
    let response = ApiRequest::post("/webhooks/whatsapp", body)
        .header(("X-HUB-SIGNATURE-256".into(), signature))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test]
async fn a_signature_made_with_the_wrong_key_is_unauthorized_and_nothing_is_enqueued() {
    let stack = spawn_stack().await;
    let body = fixture("meta/text.json");
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header((
            "X-Hub-Signature-256".into(),
            format!("sha256={}", sign_hex("wrong", &body)),
        ))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error"], "invalid_signature");
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn a_kapso_signature_checked_against_the_meta_secret_is_unauthorized() {
    let stack = spawn_stack().await;
    let body = fixture("kapso/message_received.json");
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(("X-Webhook-Signature".into(), sign_hex(META_SECRET, &body)))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn a_tampered_body_is_unauthorized() {
    let stack = spawn_stack().await;
    let body = fixture("meta/text.json");
    let signature = meta_signature(&body);
    let tampered = String::from_utf8(body)
        .unwrap()
        .replace("16505551234", "16505550000");
    let response = ApiRequest::post("/webhooks/whatsapp", tampered.into_bytes())
        .header(signature)
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401);
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn a_delivery_without_a_signature_header_is_unauthorized() {
    let stack = spawn_stack().await;
    let response = ApiRequest::post("/webhooks/whatsapp", fixture("meta/text.json"))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["message"],
        "no signature header was presented"
    );
}

#[tokio::test]
async fn a_base64_encoded_body_is_verified_over_its_decoded_bytes() {
    let stack = spawn_stack().await;
    let body = fixture("meta/image.json");
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .base64()
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["event_type"], "image");
}

#[tokio::test]
async fn a_delivery_for_a_scheme_with_no_configured_secret_is_rejected() {
    // Only Meta's secret is configured: Kapso-signed deliveries cannot be verified.
    let stack = spawn_stack_with(json!({ "meta_app_secret": META_SECRET })).await;
    let body = fixture("kapso/message_received.json");
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(("X-Webhook-Signature".into(), sign_hex("", &body)))
        .header(("X-Webhook-Event".into(), "whatsapp.message.received".into()))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401);
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn an_empty_secret_is_treated_as_missing() {
    let stack = spawn_stack_with(json!({ "meta_app_secret": "" })).await;
    let body = fixture("meta/text.json");
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header((
            "X-Hub-Signature-256".into(),
            format!("sha256={}", sign_hex("", &body)),
        ))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401);
}

const PROJECT_SECRET: &str = "test_kapso_project_webhook_secret";

/// A Kapso project event, signed with `secret`, with the headers Kapso sends.
fn project_event(secret: &str) -> ApiRequest {
    let body = fixture("kapso/phone_number_created.json");
    ApiRequest::post("/webhooks/kapso", body.clone())
        .header(("X-Webhook-Signature".into(), sign_hex(secret, &body)))
        .header((
            "X-Webhook-Event".into(),
            "whatsapp.phone_number.created".into(),
        ))
}

#[tokio::test]
async fn a_kapso_project_event_signed_with_the_project_webhook_secret_is_accepted() {
    let stack = spawn_stack_with(json!({
        "kapso_webhook_secret": KAPSO_SECRET,
        "kapso_project_webhook_secret": PROJECT_SECRET,
    }))
    .await;
    let router = stack.ingest();
    let response = project_event(PROJECT_SECRET).send(&router).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].body["event_type"],
        "whatsapp.phone_number.created"
    );
    // The per-number secret still verifies alongside the project one.
    let response = project_event(KAPSO_SECRET).send(&router).await;
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test]
async fn a_kapso_delivery_is_unauthorized_when_neither_kapso_secret_is_configured() {
    let stack = spawn_stack_with(json!({ "meta_app_secret": META_SECRET })).await;
    let router = stack.ingest();
    for secret in [PROJECT_SECRET, KAPSO_SECRET, ""] {
        let response = project_event(secret).send(&router).await;
        assert_eq!(response.status, 401, "signed with {secret:?}");
    }
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn with_only_the_project_secret_configured_a_per_number_signature_is_unauthorized() {
    let stack = spawn_stack_with(json!({ "kapso_project_webhook_secret": PROJECT_SECRET })).await;
    let body = fixture("kapso/message_received.json");
    let response = ApiRequest::post("/webhooks/kapso", body.clone())
        .header(kapso_signature(&body))
        .header(("X-Webhook-Event".into(), "whatsapp.message.received".into()))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["error"], "invalid_signature");
    assert!(stack.drain().await.is_empty());
}
