//! What lambda_http and axum cost per webhook, on their own: parsing the bench's API Gateway v2
//! event (one Meta text, as `infra/bench` sends it), routing it to a handler that only answers,
//! and reading the response body, against a bare `serde_json::Value` parse of the same event.
//! Run: `cargo run --release -p webhook-ingest --example framework_overhead`. It bounds what
//! replacing them with a hand-written event type could save (README, Performance).

use std::time::Instant;

use axum::routing::post;
use lambda_http::tower::ServiceExt;

fn event() -> String {
    let body = serde_json::json!({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550100","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Customer 1000"},"wa_id":"16505551000"}],"messages":[{"from":"16505551000","id":"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUJFTkNIABCDEF000001","timestamp":"1763800000","type":"text","text":{"body":"Hello, this is message 1. Do you ship abroad?"}}]}}]}]}).to_string();
    serde_json::json!({
        "version": "2.0", "routeKey": "POST /webhooks/whatsapp", "rawPath": "/webhooks/whatsapp", "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "facebookexternalua", "x-hub-signature-256": "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": "POST", "path": "/webhooks/whatsapp", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "facebookexternalua"},
            "requestId": "abcdef0123456789", "routeKey": "POST /webhooks/whatsapp", "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 1763800000000u64,
        },
        "body": body, "isBase64Encoded": false,
    }).to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let raw = event();
    let router = axum::Router::new().route(
        "/webhooks/whatsapp",
        post(|body: axum::body::Bytes| async move {
            axum::Json(serde_json::json!({"status":"accepted","enqueued": body.len()}))
        }),
    );
    let n = 20000;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            let request = lambda_http::request::from_str(&raw).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            std::hint::black_box((parts, bytes));
        }
        let full = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
            std::hint::black_box(v);
        }
        let parse = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: lambda_http parse + axum dispatch + body: {full:.1} µs; serde_json::Value parse alone: {parse:.1} µs"
        );
    }
}
