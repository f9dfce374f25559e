//! The OpenAPI document against the running API: schemathesis generates requests from the
//! served document (valid and invalid ones, with a valid token) and checks every answer: no 5xx,
//! no undocumented status, no body or header that breaks the document.
//!
//! The fuzz workspace holds data first, written through the real ingest path and routes: a
//! contact, a conversation with the customer's message, the AI's reply and a dashboard message
//! (delivered), a note and a quick reply. The hooks (`schemathesis_hooks.py`) put the real ids
//! in the generated paths, so the 200 bodies of conversations, messages, contacts, notes and
//! quick replies are checked against the document too.
//!
//! It runs twice: against the function's own router served on loopback, and against send-api
//! under `cargo lambda watch` (the local stack). `cargo lambda watch` itself answers a body that
//! is not UTF-8 with a 500 before the function is invoked (API Gateway hands such a body over
//! base64-encoded), so the second run generates no such body; the first one does. Setup links
//! go to a Kapso platform fake and messages to a WhatsApp fake, so no route needs the internet.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::PHONE_NUMBER_ID;
use integration_tests::processor::{
    CUSTOMER, build_processor, cloud_api, envelopes_of, event, failures, invoke, meta_status,
    meta_texts, now, record,
};
use local_stack::paths;
use serde_json::{Value, json};
use shared::conversations::model::{AiConfig, Integration, IntegrationStatus, Provider};
use shared::conversations::processor::ProcessorSettings;
use shared::ids::{PhoneNumberId, WorkspaceId};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer};

use crate::helpers::{TestApi, spawn_api_with, token, watch_send_api, workspace};
use crate::onboarding::{KAPSO_KEY, mount_kapso};

/// The API with its fakes: Kapso's platform API and the WhatsApp Cloud API.
struct Fuzz {
    api: TestApi,
    _kapso: MockServer,
    whatsapp: MockServer,
    env: Vec<(String, String)>,
}

async fn fuzz_api() -> Fuzz {
    let kapso = MockServer::start().await;
    mount_kapso(&kapso, "cus-fuzz", 0..).await;
    let whatsapp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(cloud_api())
        .mount(&whatsapp)
        .await;
    let mut secrets = integration_tests::default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["kapso_api_key"] = KAPSO_KEY.into();
    secrets["meta_access_token"] = "test-meta-token".into();
    let env: Vec<(String, String)> = [
        (
            "KAPSO_PLATFORM_BASE_URL",
            format!("{}/platform/v1", kapso.uri()),
        ),
        ("META_GRAPH_BASE_URL", whatsapp.uri()),
        ("KAPSO_BASE_URL", whatsapp.uri()),
        ("SETUP_CALLBACK_BASE_URL", "https://api.test.invalid".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let api = spawn_api_with(secrets, &extra).await;
    Fuzz {
        api,
        _kapso: kapso,
        whatsapp,
        env,
    }
}

/// The seeded ids, by the path template whose `{id}` they fill.
struct Seeded {
    workspace: WorkspaceId,
    path_ids: Value,
}

/// Seeds a workspace through the real processor and routes; see the module's documentation.
async fn seed(fuzz: &Fuzz) -> Seeded {
    let api = &fuzz.api;
    let ws = workspace("fuzz");
    let integration = Integration {
        phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
        workspace_id: ws.clone(),
        provider: Provider::Meta,
        status: IntegrationStatus::Active,
        error: None,
        access_token: None,
    };
    // AI on, with the offline responder (no provider key): its reply carries AI details.
    let ai = AiConfig {
        enabled: true,
        ..AiConfig::default()
    };
    api.processor_store
        .put_workspace(&ws, "Fuzz shop", &integration, &ai)
        .await
        .unwrap();
    let processor = build_processor(
        &api.stack,
        api.processor_store.clone(),
        &fuzz.whatsapp.uri(),
        ProcessorSettings::default(),
        &api.stack.aws,
    );
    let deliver = |payload: Value| {
        let processor = Arc::clone(&processor);
        async move {
            let envelope = envelopes_of(&payload).remove(0);
            let response = invoke(&processor, event(vec![record("seed", &envelope)])).await;
            assert!(failures(&response).is_empty(), "seeded");
        }
    };
    deliver(meta_texts(&[(
        "wamid.FUZZ1",
        CUSTOMER,
        "Do you deliver?",
        now() - 5,
    )]))
    .await;

    let token = token(&ws);
    let call = |method: &'static str, path: &'static str, body: Value| {
        let token = token.clone();
        async move {
            let reply = api.send(method, path, Some(&token), Some(&body)).await;
            assert!(reply.status < 300, "{method} {path}: {}", reply.body);
            reply.json()
        }
    };
    let sent = call(
        "POST",
        "/v1/messages",
        json!({ "contactId": CUSTOMER, "message": { "type": "text", "body": "Yes, every day" } }),
    )
    .await;
    deliver(meta_status(
        sent["wamid"].as_str().unwrap(),
        "delivered",
        now(),
        json!({}),
    ))
    .await;
    let notes_path: &'static str = format!("/v1/contacts/{CUSTOMER}/notes").leak();
    call(
        "POST",
        notes_path,
        json!({ "text": "Asked about delivery" }),
    )
    .await;
    let quick_reply = call(
        "POST",
        "/v1/quick-replies",
        json!({ "title": "Hours", "text": "We're open 9 to 6", "shortcut": "/hours" }),
    )
    .await;

    let conversation = sent["conversationId"].clone();
    let messages = api
        .get(
            &format!(
                "/v1/conversations/{}/messages",
                conversation.as_str().unwrap()
            ),
            Some(&token),
        )
        .await
        .json();
    let kinds: Vec<(&str, bool)> = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["direction"].as_str().unwrap(), m["ai"].is_object()))
        .collect();
    assert_eq!(
        kinds,
        [("inbound", false), ("outbound", true), ("outbound", false)],
        "the customer's message, the AI's reply and the dashboard's: {messages}"
    );
    Seeded {
        workspace: ws,
        path_ids: json!({
            "/v1/conversations/{id}": conversation,
            "/v1/conversations/{id}/messages": conversation,
            "/v1/contacts/{id}": CUSTOMER,
            "/v1/contacts/{id}/notes": CUSTOMER,
            "/v1/quick-replies/{id}": quick_reply["id"],
        }),
    }
}

/// Runs schemathesis against the API at `base`; the report when it found anything.
async fn schemathesis(
    base: String,
    token: String,
    path_ids: &Value,
    utf8_bodies_only: bool,
) -> Result<(), String> {
    let path_ids = path_ids.to_string();
    tokio::task::spawn_blocking(move || {
        // Each run in a folder of its own: schemathesis keeps caches in its working folder, and
        // two runs sharing one trip over each other.
        let workdir = std::env::temp_dir().join(integration_tests::unique_name("schemathesis"));
        std::fs::create_dir_all(&workdir).expect("a temporary folder");
        let mut command = Command::new(paths::venv_bin().join("schemathesis"));
        command
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", paths::root().join("tests/api"))
            .env("FUZZ_PATH_IDS", path_ids);
        if utf8_bodies_only {
            command.env("FUZZ_UTF8_BODIES_ONLY", "1");
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
    let fuzz = fuzz_api().await;
    let seeded = seed(&fuzz).await;
    // Which requests got a 200, to show the seeded data was read (and so schema-checked).
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = Arc::clone(&answered);
    let router = fuzz.api.router.clone().layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let log = Arc::clone(&log);
            async move {
                let line = format!("{} {}", request.method(), request.uri().path());
                let response = next.run(request).await;
                if response.status() == 200 {
                    let body = response.into_body();
                    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    log.lock().unwrap().push((line, text));
                    return axum::response::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(bytes))
                        .unwrap();
                }
                response
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, router).into_future());

    let found = schemathesis(base, token(&seeded.workspace), &seeded.path_ids, false).await;

    server.abort();
    if let Err(report) = found {
        panic!("schemathesis found problems:\n{report}");
    }
    let answered = answered.lock().unwrap();
    let conversation = seeded.path_ids["/v1/conversations/{id}"].as_str().unwrap();
    let quick_reply = seeded.path_ids["/v1/quick-replies/{id}"].as_str().unwrap();
    for (route, holds) in [
        (format!("GET /v1/conversations/{conversation}"), CUSTOMER),
        (
            format!("GET /v1/conversations/{conversation}/messages"),
            "wamid.FUZZ1",
        ),
        (format!("GET /v1/contacts/{CUSTOMER}"), CUSTOMER),
        (
            format!("GET /v1/contacts/{CUSTOMER}/notes"),
            "Asked about delivery",
        ),
        ("GET /v1/conversations".to_owned(), conversation),
        ("GET /v1/quick-replies".to_owned(), quick_reply),
        (format!("GET /v1/quick-replies/{quick_reply}"), quick_reply),
    ] {
        assert!(
            answered
                .iter()
                .any(|(r, body)| *r == route && body.contains(holds)),
            "schemathesis read {route} with its data (and checked it against the document)"
        );
    }
}

#[tokio::test]
async fn the_local_stack_answers_every_generated_request_as_its_document_says() {
    let fuzz = fuzz_api().await;
    let seeded = seed(&fuzz).await;
    let extra: Vec<(&str, &str)> = fuzz
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let watch = watch_send_api(&fuzz.api, &extra);
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

    let found = schemathesis(base, token(&seeded.workspace), &seeded.path_ids, true).await;

    if let Err(report) = found {
        panic!(
            "schemathesis found problems:\n{report}\nfunction log: {}",
            watch.log.display()
        );
    }
}
