//! What one inbound text costs a warm container in AWS requests (docs/data-model.md, "Cost of
//! one inbound text"): a second processor talks to moto through a proxy that counts every
//! request by its `X-Amz-Target`, is warmed by one message, and then handles a second one.

use std::sync::Arc;

use integration_tests::moto_endpoint;
use integration_tests::processor::{
    CUSTOMER, Options, TestProcessor, World, build_processor, envelopes_of, event, failures,
    invoke, meta_text, meta_texts, now, record, spawn_world,
};
use shared::adapters::dynamo::DynamoStore;
use shared::conversations::model::AiConfig;

use self::counting_proxy::{CountingProxy, Counts};

const DYNAMODB: &str = "DynamoDB_20120810";
const SECRETS_MANAGER: &str = "secretsmanager";

#[tokio::test]
async fn one_inbound_text_with_ai_off_costs_at_most_four_dynamodb_requests_and_no_secret_fetch() {
    let world = spawn_world(Options {
        // The seeded AI config is this one, so the workspace has AI off too.
        ai: AiConfig {
            enabled: false,
            ..AiConfig::default()
        },
        ..Options::default()
    })
    .await;

    let (warm_up, counts) = cost_of_a_warm_inbound_text(&world, "wamid.COSTOFF").await;

    assert!(
        world.sent_texts().await.is_empty(),
        "AI is off: nothing is sent"
    );
    assert_eq!(
        warm_up.of_service(SECRETS_MANAGER),
        0,
        "AI off needs no secret, cold or warm: {warm_up}"
    );
    let dynamodb = counts.of_service(DYNAMODB);
    assert!(
        dynamodb <= 4,
        "{dynamodb} DynamoDB requests for one inbound text with AI off: {counts}"
    );
    assert_eq!(
        counts.of_service(SECRETS_MANAGER),
        0,
        "no secret fetch: {counts}"
    );
}

#[tokio::test]
async fn one_inbound_text_with_ai_on_costs_at_most_seven_dynamodb_requests_and_no_secret_fetch_when_warm()
 {
    let world = spawn_world(Options::default()).await;

    let (warm_up, counts) = cost_of_a_warm_inbound_text(&world, "wamid.COSTON").await;

    assert_eq!(
        world.sent_texts().await.len(),
        2,
        "both texts are answered by the offline responder"
    );
    assert_eq!(
        warm_up.of_service(SECRETS_MANAGER),
        1,
        "the cold container fetches the secret once, through the proxy: {warm_up}"
    );
    let dynamodb = counts.of_service(DYNAMODB);
    assert!(
        dynamodb <= 7,
        "{dynamodb} DynamoDB requests for one inbound text with AI on: {counts}"
    );
    assert_eq!(
        counts.of_service(SECRETS_MANAGER),
        0,
        "the secret is cached on a warm container: {counts}"
    );
}

/// Warms a processor that reaches AWS through a counting proxy with one inbound text from the
/// customer, then counts the requests a second text from the same customer makes. Returns the
/// warm-up's counts and the second text's.
async fn cost_of_a_warm_inbound_text(world: &World, wamid: &str) -> (Counts, Counts) {
    let proxy = CountingProxy::start(moto_endpoint()).await;
    let processor = processor_through(world, &proxy).await;

    // A few seconds earlier, so the reply to it does not cover the measured message.
    let warm = meta_texts(&[("wamid.WARMUP", CUSTOMER, "Hello", now() - 5)]);
    handle_one(&processor, &warm).await;
    let warm_up = proxy.counts();
    println!("warm-up (cold caches): {warm_up}");
    // The tenant lookup proves the processor's requests really go through the proxy.
    assert_eq!(
        warm_up.of("DynamoDB_20120810.GetItem"),
        2,
        "tenant and AI config: {warm_up}"
    );
    proxy.reset();

    handle_one(&processor, &meta_text(wamid, "Do you ship abroad?")).await;
    let counts = proxy.counts();
    println!("one warm inbound text: {counts}");

    assert!(world.message(wamid).await.is_some(), "the text is stored");
    (warm_up, counts)
}

/// The processor as `main` builds it, with its DynamoDB and Secrets Manager clients behind
/// the proxy. No LLM provider is configured, so AI replies come from the offline responder.
async fn processor_through(world: &World, proxy: &CountingProxy) -> Arc<TestProcessor> {
    let aws = local_stack::aws_config_for(proxy.url()).await;
    let table = &world.stack.provisioned.tables["AppTable"];
    let mut settings = Options::default().settings;
    settings.grok_base_url = world.grok.uri();
    build_processor(
        &world.stack,
        DynamoStore::new(&aws, table),
        &world.whatsapp.uri(),
        settings,
        &aws,
    )
}

async fn handle_one(processor: &Arc<TestProcessor>, payload: &serde_json::Value) {
    let envelopes = envelopes_of(payload);
    assert_eq!(envelopes.len(), 1);
    let response = invoke(processor, event(vec![record("1", &envelopes[0])])).await;
    assert!(failures(&response).is_empty(), "{response:?}");
}

/// A reverse proxy in front of moto that counts requests per `X-Amz-Target`
/// (`<service>.<operation>`, e.g. `DynamoDB_20120810.GetItem`).
mod counting_proxy {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use axum::body::{Body, Bytes};
    use axum::extract::{Request, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};

    /// Requests counted per `X-Amz-Target`; requests without one as `<METHOD> <path>`.
    #[derive(Debug, Clone, Default)]
    pub struct Counts(BTreeMap<String, usize>);

    impl Counts {
        /// Requests with one exact target.
        pub fn of(&self, target: &str) -> usize {
            self.0.get(target).copied().unwrap_or_default()
        }

        /// Requests to one service, the part of the target before the dot.
        pub fn of_service(&self, service: &str) -> usize {
            self.0
                .iter()
                .filter(|(target, _)| target.split_once('.').map(|(s, _)| s) == Some(service))
                .map(|(_, n)| n)
                .sum()
        }
    }

    impl fmt::Display for Counts {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0.is_empty() {
                return write!(f, "no requests");
            }
            let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{t} x{n}")).collect();
            write!(f, "{}", parts.join(", "))
        }
    }

    struct Shared {
        upstream: String,
        http: reqwest::Client,
        counts: Mutex<Counts>,
    }

    /// Listens on a free loopback port until dropped.
    pub struct CountingProxy {
        url: String,
        shared: Arc<Shared>,
        server: tokio::task::JoinHandle<()>,
    }

    impl CountingProxy {
        pub async fn start(upstream: &str) -> Self {
            let shared = Arc::new(Shared {
                upstream: upstream.trim_end_matches('/').to_owned(),
                http: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("an HTTP client"),
                counts: Mutex::default(),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let url = format!("http://{}", listener.local_addr().expect("a bound address"));
            let app = axum::Router::new()
                .fallback(forward)
                .with_state(Arc::clone(&shared));
            let server = tokio::spawn(async move {
                axum::serve(listener, app).await.expect("the proxy serves");
            });
            Self {
                url,
                shared,
                server,
            }
        }

        pub fn url(&self) -> &str {
            &self.url
        }

        pub fn reset(&self) {
            *self.shared.counts.lock().expect("counts lock") = Counts::default();
        }

        pub fn counts(&self) -> Counts {
            self.shared.counts.lock().expect("counts lock").clone()
        }
    }

    impl Drop for CountingProxy {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    /// Headers that belong to one hop; the client and the server set their own.
    fn end_to_end(headers: &HeaderMap) -> HeaderMap {
        let mut headers = headers.clone();
        for name in [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ] {
            headers.remove(name);
        }
        headers
    }

    async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || format!("{} {}", parts.method, parts.uri.path()),
                str::to_owned,
            );
        *shared
            .counts
            .lock()
            .expect("counts lock")
            .0
            .entry(target)
            .or_default() += 1;

        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
        let upstream = shared
            .http
            .request(parts.method, format!("{}{path}", shared.upstream))
            .headers(end_to_end(&parts.headers))
            .body(body)
            .send()
            .await;
        let upstream = match upstream {
            Ok(response) => response,
            Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        };
        let status = upstream.status();
        let headers = end_to_end(upstream.headers());
        let body: Bytes = match upstream.bytes().await {
            Ok(body) => body,
            Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}
