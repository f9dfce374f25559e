//! The OpenAPI document against the running API: schemathesis generates requests from the
//! served document (valid and invalid ones, with a valid token) and checks every answer: no 5xx,
//! no undocumented status, no body or header that breaks the document.
//!
//! It runs twice: against the function's own router served on loopback, and against send-api
//! under `cargo lambda watch` (the local stack). `cargo lambda watch` itself answers a body that
//! is not UTF-8 with a 500 before the function is invoked (API Gateway hands such a body over
//! base64-encoded), so the second run generates no such body (`schemathesis_hooks.py`); the
//! first one does. Setup links go to a Kapso platform fake, so no route needs the internet.

use std::process::Command;
use std::time::Duration;

use local_stack::paths;

use crate::helpers::{token, watch_send_api, workspace};
use crate::onboarding::{mount_kapso, spawn_onboarding_api};

/// Runs schemathesis against the API at `base`; the report when it found anything.
async fn schemathesis(base: String, token: String, utf8_bodies_only: bool) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        // Each run in a folder of its own: schemathesis keeps caches in its working folder, and
        // two runs sharing one trip over each other.
        let workdir = std::env::temp_dir().join(integration_tests::unique_name("schemathesis"));
        std::fs::create_dir_all(&workdir).expect("a temporary folder");
        let mut command = Command::new(paths::venv_bin().join("schemathesis"));
        if utf8_bodies_only {
            command
                .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
                .env("PYTHONPATH", paths::root().join("tests/api"));
        }
        let output = command
            .current_dir(&workdir)
            .args(["run", &format!("{base}/v1/openapi.json"), "--url", &base])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", "25", "--seed", "1"])
            // One worker: with two threads, this CPython sometimes trips over its own AST recursion
            // counter while schemathesis builds its generators ("recursion depth mismatch").
            .args(["--workers", "1", "--request-timeout", "30"])
            .args(["--generation-database", ":memory:"])
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis is installed by infra/bootstrap");
        std::fs::remove_dir_all(&workdir).ok();
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    })
    .await
    .expect("schemathesis ran")
}

#[tokio::test]
async fn the_router_answers_every_generated_request_valid_or_not_as_its_document_says() {
    let kapso = wiremock::MockServer::start().await;
    mount_kapso(&kapso, "cus-fuzz", 0..).await;
    let api = spawn_onboarding_api(&kapso).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, api.router.clone()).into_future());

    let found = schemathesis(base, token(&workspace("fuzz")), false).await;

    server.abort();
    if let Err(report) = found {
        panic!("schemathesis found problems:\n{report}");
    }
}

#[tokio::test]
async fn the_local_stack_answers_every_generated_request_as_its_document_says() {
    let kapso = wiremock::MockServer::start().await;
    mount_kapso(&kapso, "cus-fuzz", 0..).await;
    let api = spawn_onboarding_api(&kapso).await;
    let platform = format!("{}/platform/v1", kapso.uri());
    let watch = watch_send_api(
        &api,
        &[
            ("KAPSO_PLATFORM_BASE_URL", &platform),
            ("SETUP_CALLBACK_BASE_URL", "https://api.test.invalid"),
        ],
    );
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

    let found = schemathesis(base, token(&workspace("fuzz")), true).await;

    if let Err(report) = found {
        panic!(
            "schemathesis found problems:\n{report}\nfunction log: {}",
            watch.log.display()
        );
    }
}
