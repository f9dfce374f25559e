//! Meta's GET verification handshake.

use integration_tests::{ApiRequest, VERIFY_TOKEN, spawn_stack};

#[tokio::test]
async fn the_handshake_echoes_the_challenge_as_plain_text_when_the_token_matches() {
    let stack = spawn_stack().await;
    let query =
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444");
    let response = ApiRequest::get("/webhooks/whatsapp", &query)
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "1158201444");
    assert!(
        response.content_type.starts_with("text/plain"),
        "{}",
        response.content_type
    );
}

#[tokio::test]
async fn the_handshake_is_forbidden_with_a_wrong_token() {
    let stack = spawn_stack().await;
    let query = "hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444";
    let response = ApiRequest::get("/webhooks/whatsapp", query)
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 403);
    assert!(!response.body.contains("1158201444"));
}

#[tokio::test]
async fn the_handshake_is_forbidden_with_a_mode_other_than_subscribe() {
    let stack = spawn_stack().await;
    let query = format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42");
    let response = ApiRequest::get("/webhooks/whatsapp", &query)
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 403);
}

#[tokio::test]
async fn the_handshake_is_forbidden_when_any_parameter_is_missing() {
    let stack = spawn_stack().await;
    let router = stack.ingest();
    for query in [
        format!("hub.verify_token={VERIFY_TOKEN}&hub.challenge=42"),
        "hub.mode=subscribe&hub.challenge=42".to_owned(),
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"),
        String::new(),
    ] {
        let response = ApiRequest::get("/webhooks/whatsapp", &query)
            .send(&router)
            .await;
        assert_eq!(response.status, 403, "query {query:?}");
    }
}

#[tokio::test]
async fn the_handshake_is_forbidden_when_no_verify_token_is_configured() {
    let stack = integration_tests::spawn_stack_with(serde_json::json!({})).await;
    // Any token, even one a configured secret could hold, is refused when none is configured.
    let query = "hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=42";
    let response = ApiRequest::get("/webhooks/whatsapp", query)
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 403);
}
