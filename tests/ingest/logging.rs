//! Logs under the real Lambda runtime: every line of an invocation is one JSON object carrying
//! its request id, including the runtime's own error for an event of the wrong shape.
//!
//! Each function runs as Lambda runs it (`lambda_http::run` / `lambda_runtime::run` with the
//! telemetry `main` installs) in a child process, the test binary itself, against a fake Lambda
//! Runtime API served here. The child's stdout is what CloudWatch would receive.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use integration_tests::{ApiRequest, meta_signature, moto_endpoint, unique_name};
use serde_json::{Value, json};

/// One invocation the fake Runtime API hands out, and what the function answered.
#[derive(Default)]
struct RuntimeApi {
    pending: VecDeque<(String, String)>,
    answers: Vec<(String, &'static str, String)>,
}

type Shared = Arc<Mutex<RuntimeApi>>;

async fn next(State(api): State<Shared>) -> impl IntoResponse {
    let invocation = api.lock().unwrap().pending.pop_front();
    let Some((request_id, body)) = invocation else {
        // Nothing more to run: the function waits here, as it would in Lambda, until killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
        ),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    (headers, body)
}

fn answer(api: &Shared, id: String, kind: &'static str, body: Bytes) -> StatusCode {
    let body = String::from_utf8_lossy(&body).into_owned();
    api.lock().unwrap().answers.push((id, kind, body));
    StatusCode::ACCEPTED
}

/// Runs the ignored test `child` in a child process under a fake Runtime API, hands it
/// `invocations`, and returns its stdout's JSON lines and the answers it posted.
async fn run_child(
    child: &str,
    invocations: Vec<(String, String)>,
) -> (Vec<Value>, Vec<(String, &'static str, String)>) {
    let count = invocations.len();
    let api: Shared = Arc::new(Mutex::new(RuntimeApi {
        pending: invocations.into(),
        answers: Vec::new(),
    }));
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(
                |State(api): State<Shared>, Path(id): Path<String>, body: Bytes| async move {
                    answer(&api, id, "response", body)
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(
                |State(api): State<Shared>, Path(id): Path<String>, body: Bytes| async move {
                    answer(&api, id, "error", body)
                },
            ),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let stdout_path = std::env::temp_dir().join(unique_name("lambda-stdout"));
    let stdout = std::fs::File::create(&stdout_path).unwrap();
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("MOTO_ENDPOINT", moto_endpoint())
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let started = Instant::now();
    while api.lock().unwrap().answers.len() < count {
        if started.elapsed() > Duration::from_secs(120) || process.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only this child, by its handle: it would otherwise wait for the next invocation forever.
    process.kill().unwrap_or_default();
    process.wait().unwrap();
    server.abort();

    let output = std::fs::read_to_string(&stdout_path).unwrap();
    std::fs::remove_file(&stdout_path).unwrap_or_default();
    // The test harness's own "running 1 test" and "test … " (no newline) are not the function's.
    let lines = output
        .lines()
        .filter_map(|l| l.find('{').map(|start| &l[start..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON line ({e}): {l}")))
        .collect();
    let answers = std::mem::take(&mut api.lock().unwrap().answers);
    assert_eq!(answers.len(), count, "every invocation answered: {output}");
    (lines, answers)
}

/// A Meta delivery with a change that is not actionable and a message above one SQS billing
/// chunk: both are logged from inside the use case (and the queue code), not by the handler.
fn delivery_that_logs_from_deep_inside() -> ApiRequest {
    let big = "x".repeat(70 * 1024);
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [
            { "id": "102290129340398", "changes": [{
                "field": "message_template_status_update",
                "value": { "event": "APPROVED", "message_template_id": 1 }
            }]},
            { "id": "102290129340398", "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "phone_number_id": "106540352242922" },
                    "messages": [{
                        "from": "16505551234", "id": "wamid.LOGGING", "timestamp": "1732267200",
                        "type": "text", "text": { "body": big }
                    }]
                }
            }]}
        ]
    }))
    .unwrap();
    ApiRequest::post("/webhooks/whatsapp", body.clone()).header(meta_signature(&body))
}

fn lines_of<'a>(lines: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["request_id"] == request_id)
        .collect()
}

fn messages(lines: &[&Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_log_line_of_an_ingest_invocation_is_json_with_its_request_id() {
    let delivery = delivery_that_logs_from_deep_inside().event().to_string();
    let sqs_shaped = json!({ "Records": [{ "messageId": "1", "body": "{}" }] }).to_string();
    let (lines, answers) = run_child(
        "logging::child_webhook_ingest_function",
        vec![
            ("req-ingest-1".into(), delivery),
            ("req-ingest-2".into(), sqs_shaped),
        ],
    )
    .await;

    assert!(!lines.is_empty());
    for line in &lines {
        let id = line["request_id"].as_str().unwrap_or_default();
        assert!(
            id == "req-ingest-1" || id == "req-ingest-2",
            "a line without its request id: {line}"
        );
    }
    let first = messages(&lines_of(&lines, "req-ingest-1"));
    for expected in [
        "event not actionable; not enqueued",
        "envelope above one 64 KiB SQS billing chunk",
        "delivery accepted",
    ] {
        assert!(
            first.iter().any(|m| m == expected),
            "{expected:?} in {first:?}"
        );
    }
    assert_eq!(answers[0].1, "response");
    assert_eq!(
        serde_json::from_str::<Value>(&answers[0].2).unwrap()["statusCode"],
        200
    );

    // An event of the wrong shape never reaches the handler: the runtime logs one error line.
    let second = lines_of(&lines, "req-ingest-2");
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0]["level"], "ERROR");
    assert!(
        second[0]["message"]
            .as_str()
            .unwrap()
            .contains("deserialization"),
        "{}",
        second[0]
    );
    assert_eq!(
        (answers[1].0.as_str(), answers[1].1),
        ("req-ingest-2", "error")
    );
}

#[tokio::test]
async fn a_processor_invoked_with_an_event_that_is_not_sqs_logs_one_json_error_line_with_its_request_id()
 {
    let api_gateway = delivery_that_logs_from_deep_inside().event().to_string();
    let (lines, answers) = run_child(
        "logging::child_message_processor_function",
        vec![("req-processor-1".into(), api_gateway)],
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["request_id"], "req-processor-1");
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(lines[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(answers[0].1, "error");
}

/// Skips unless run by a test above as its child.
fn is_child() -> bool {
    std::env::var("AWS_LAMBDA_RUNTIME_API").is_ok()
}

#[tokio::test]
#[ignore = "the webhook-ingest function, run by a test above in a child process"]
async fn child_webhook_ingest_function() {
    if !is_child() {
        return;
    }
    let stack = integration_tests::spawn_stack().await;
    // Installed after the setup, so only the function's own lines reach stdout, as in main.
    shared::telemetry::init();
    lambda_http::run(stack.ingest()).await.unwrap();
}

#[tokio::test]
#[ignore = "the message-processor function, run by a test above in a child process"]
async fn child_message_processor_function() {
    if !is_child() {
        return;
    }
    let world =
        integration_tests::processor::spawn_world(integration_tests::processor::Options::default())
            .await;
    shared::telemetry::init();
    let processor = world.processor.clone();
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        message_processor::handle(processor.clone(), event)
    }))
    .await
    .unwrap();
}
