//! Once through the real Lambda runtime loop: `cargo lambda watch` routes `/v1/` to send-api as
//! API Gateway does, and the local stack's minted token opens it.

use std::time::Duration;

use crate::helpers::{spawn_api, token, watch_send_api, workspace};

#[tokio::test]
async fn a_minted_token_reads_the_ai_config_through_cargo_lambda_watch() {
    let api = spawn_api().await;
    let watch = watch_send_api(&api, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let url = format!("{}/v1/ai-config", watch.base_url());

    // The first invocation compiles the function, so allow for a build.
    let ws = workspace("ws");
    let response = http
        .get(&url)
        .header("authorization", format!("Bearer {}", token(&ws)))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}; log: {}", watch.log.display());
    assert!(body.contains("\"grokWeight\""), "{body}");

    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
}
