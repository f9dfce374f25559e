//! The OpenAPI document against the running API: schemathesis generates requests from
//! `docs/openapi.json` (valid and invalid ones, with a valid token) and sends them to send-api
//! under `cargo lambda watch`, as the local stack serves it. Every answer must be one the
//! document describes: no 5xx, no undocumented status, no body that breaks its schema.

use std::process::Command;
use std::time::Duration;

use integration_tests::{moto_endpoint, template};
use local_stack::{aws_env, free_port, paths, watch::LambdaWatch};

use crate::helpers::{token, workspace};

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    // Setup links go to a Kapso platform fake, so no route needs the internet.
    let kapso = wiremock::MockServer::start().await;
    crate::onboarding::mount_kapso(&kapso, "cus-fuzz", 0..).await;
    let api = crate::onboarding::spawn_onboarding_api(&kapso).await;
    let mut env = template()
        .function_env("SendApiFunction", &api.stack.provisioned)
        .unwrap();
    env.extend(aws_env(moto_endpoint()));
    env.extend(local_stack::token::auth_env());
    env.insert(
        "KAPSO_PLATFORM_BASE_URL".into(),
        format!("{}/platform/v1", kapso.uri()),
    );
    env.insert(
        "SETUP_CALLBACK_BASE_URL".into(),
        "https://api.test.invalid".into(),
    );
    let mut watch = LambdaWatch::start(free_port().unwrap(), &env).unwrap();
    watch.wait_listening(Duration::from_secs(60)).unwrap();
    let base = watch.base_url();
    // The first invocation compiles the function; schemathesis should not time that.
    let warm = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);

    let token = token(&workspace("fuzz"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(paths::venv_bin().join("schemathesis"))
            .args(["run", &format!("{base}/v1/openapi.json"), "--url", &base])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", "25", "--workers", "2", "--seed", "1"])
            .args(["--request-timeout", "30"])
            .env("NO_COLOR", "1")
            // Bodies that are not UTF-8 would only test `cargo lambda watch` (see the hooks).
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", paths::root().join("tests/api"))
            .output()
            .expect("schemathesis is installed by infra/bootstrap")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\nfunction log: {}",
        watch.log.display()
    );
}
