//! Once through the real Lambda runtime loop: `cargo lambda watch` serves the built function,
//! routed the way API Gateway routes it, against the moto stack.

use std::time::Duration;

use integration_tests::{fixture, meta_signature, moto_endpoint, spawn_stack, template};
use local_stack::{aws_env, free_port, watch::LambdaWatch};

#[tokio::test]
async fn a_signed_delivery_through_cargo_lambda_watch_lands_on_the_queue() {
    let stack = spawn_stack().await;
    let mut env = template()
        .function_env("WebhookIngestFunction", &stack.provisioned)
        .unwrap();
    env.extend(aws_env(moto_endpoint()));
    let mut watch = LambdaWatch::start(free_port().unwrap(), &env).unwrap();
    watch.wait_listening(Duration::from_secs(60)).unwrap();

    let body = fixture("meta/text.json");
    let (name, value) = meta_signature(&body);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    // The first invocation compiles the function, so allow for a build.
    let response = http
        .post(format!("{}/webhooks/whatsapp", watch.base_url()))
        .header(name, value)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}; log: {}", watch.log.display());

    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["event_type"], "text");

    let unsigned = http
        .post(format!("{}/webhooks/whatsapp", watch.base_url()))
        .body(fixture("meta/text.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}
