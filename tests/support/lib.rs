//! Test support: a shared moto server, per-test AWS resources with unique names, the ingest
//! handler wired to them, and API Gateway v2 requests built from fixtures.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use base64::Engine;
use lambda_http::tower::ServiceExt;
use local_stack::{MotoServer, Provisioned, Template, aws_config_for, paths};
use serde_json::{Value, json};
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::adapters::sqs::SqsQueue;
use shared::ingest::Ingest;
use shared::ingest::queue::RetryPolicy;
use shared::secrets::SecretsCache;

pub const META_SECRET: &str = "test_meta_app_secret";
pub const KAPSO_SECRET: &str = "test_kapso_webhook_secret";
pub const KAPSO_PROJECT_SECRET: &str = "test_kapso_project_webhook_secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const PHONE_NUMBER_ID: &str = "106540352242922";

/// The moto endpoint: `MOTO_ENDPOINT` if given, otherwise one server started for this test
/// binary on a free port. It stops by itself when the test binary exits.
pub fn moto_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
            return endpoint;
        }
        let server = MotoServer::start(None).expect("moto starts (run infra/bootstrap first)");
        let endpoint = server.endpoint.clone();
        // Kept for the life of the test binary.
        std::mem::forget(server);
        endpoint
    })
}

/// The app secret every test stack starts with.
pub fn default_secrets() -> Value {
    json!({
        "meta_app_secret": META_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "kapso_webhook_secret": KAPSO_SECRET,
    })
}

/// One test's own stack: the template's queues, table and secret under a unique stack name.
pub struct TestStack {
    pub aws: aws_config::SdkConfig,
    pub provisioned: Provisioned,
    pub sqs: aws_sdk_sqs::Client,
}

pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn template() -> Template {
    Template::load(&paths::template()).expect("template.yaml parses")
}

pub async fn spawn_stack() -> TestStack {
    spawn_stack_with(default_secrets()).await
}

pub async fn spawn_stack_with(secrets: Value) -> TestStack {
    let aws = aws_config_for(moto_endpoint()).await;
    let provisioned = template()
        .provision(&aws, &unique_name("t"), &secrets.to_string())
        .await
        .expect("the template provisions in moto");
    TestStack {
        sqs: aws_sdk_sqs::Client::new(&aws),
        aws,
        provisioned,
    }
}

impl TestStack {
    pub fn queue_url(&self) -> &str {
        &self.provisioned.queues["EventsQueue"].url
    }

    pub fn secret_id(&self) -> &str {
        &self.provisioned.secrets["AppSecret"].arn
    }

    /// The ingest router wired to this stack, as `main` wires it in Lambda.
    pub fn ingest(&self) -> Router {
        self.ingest_with_queue(&self.aws, self.queue_url())
    }

    /// The ingest router with its queue client pointed elsewhere (e.g. at a dead endpoint).
    pub fn ingest_with_queue(&self, queue_aws: &aws_config::SdkConfig, queue_url: &str) -> Router {
        let secrets = SecretsCache::new(
            SecretsManagerSource::new(&self.aws, self.secret_id()),
            std::time::Duration::from_secs(300),
        );
        let ingest = Ingest::new(
            SqsQueue::new(queue_aws, queue_url),
            secrets,
            shared::config::DEFAULT_MAX_BODY_BYTES,
            RetryPolicy::new(
                2,
                std::time::Duration::from_millis(5),
                std::time::Duration::from_millis(10),
            ),
        );
        webhook_ingest::router(Arc::new(ingest))
    }

    /// Receives and deletes everything on the events queue, in order.
    pub async fn drain(&self) -> Vec<Received> {
        drain_queue(&self.sqs, self.queue_url()).await
    }
}

/// A message read back from a FIFO queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub group_id: String,
    pub dedup_id: String,
    pub attributes: std::collections::HashMap<String, String>,
}

pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Received> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
    let mut out = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(Attr::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive from moto");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            let system = m.attributes.clone().unwrap_or_default();
            let attributes = m
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                .collect();
            out.push(Received {
                body: serde_json::from_str(m.body().unwrap_or_default()).expect("envelope JSON"),
                group_id: system
                    .get(&Attr::MessageGroupId)
                    .cloned()
                    .unwrap_or_default(),
                dedup_id: system
                    .get(&Attr::MessageDeduplicationId)
                    .cloned()
                    .unwrap_or_default(),
                attributes,
            });
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .expect("delete from moto");
        }
    }
}

pub mod processor;
pub mod reminders;
pub mod switching_store;

// ----- fixtures and requests ------------------------------------------------------------------

pub fn fixture_path(name: &str) -> std::path::PathBuf {
    paths::root().join("tests/fixtures").join(name)
}

/// A fixture's exact bytes (signatures are over these).
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

/// The headers Kapso sends with a `kapso/` fixture, from `kapso/headers.json`.
pub fn kapso_headers(file: &str) -> Vec<(String, String)> {
    let all = fixture_json("kapso/headers.json");
    all[file]
        .as_object()
        .unwrap_or_else(|| panic!("no headers for {file}"))
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

pub fn meta_signature(body: &[u8]) -> (String, String) {
    (
        "X-Hub-Signature-256".into(),
        format!(
            "sha256={}",
            shared::ingest::signature::sign_hex(META_SECRET, body)
        ),
    )
}

pub fn kapso_signature(body: &[u8]) -> (String, String) {
    (
        "X-Webhook-Signature".into(),
        shared::ingest::signature::sign_hex(KAPSO_SECRET, body),
    )
}

/// An API Gateway HTTP API (payload v2) request, parsed by lambda_http as Lambda would.
pub struct ApiRequest {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub base64: bool,
}

impl ApiRequest {
    pub fn post(path: &str, body: Vec<u8>) -> Self {
        Self {
            method: "POST",
            path: path.into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body),
            base64: false,
        }
    }

    pub fn get(path: &str, query: &str) -> Self {
        Self {
            method: "GET",
            path: path.into(),
            query: query.into(),
            headers: vec![],
            body: None,
            base64: false,
        }
    }

    pub fn header(mut self, (name, value): (String, String)) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    pub fn base64(mut self) -> Self {
        self.base64 = true;
        self
    }

    /// The event JSON API Gateway would hand to Lambda.
    pub fn event(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let body = self.body.as_ref().map(|b| {
            if self.base64 {
                base64::engine::general_purpose::STANDARD.encode(b)
            } else {
                String::from_utf8(b.clone()).expect("non-base64 bodies are UTF-8")
            }
        });
        json!({
            "version": "2.0",
            "routeKey": format!("{} {}", self.method, self.path),
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "local.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "local",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.10",
                    "userAgent": "facebookexternalua"
                },
                "requestId": "test-request-id",
                "routeKey": format!("{} {}", self.method, self.path),
                "stage": "$default",
                "time": "22/Nov/2026:10:00:00 +0000",
                "timeEpoch": 1795341600000u64
            },
            "body": body,
            "isBase64Encoded": self.base64
        })
    }

    /// Sends the request through `router` in-process and returns status, headers and body.
    pub async fn send(&self, router: &Router) -> Response {
        send_event(&self.event().to_string(), router).await
    }
}

/// Parses an API Gateway v2 event as the Lambda runtime would and runs it through `router`.
pub async fn send_event(event: &str, router: &Router) -> Response {
    let request =
        lambda_http::request::from_str(event).expect("lambda_http accepts the API Gateway event");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("routers are infallible");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("response body");
    Response {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}
