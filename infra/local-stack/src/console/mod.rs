//! The local console: a web page, served on loopback by `local-stack up`, to chat with the bot
//! as a customer (a phone simulator) and answer as the business (a minimal inbox).
//!
//! The page talks only to the stack's real routes. Its server hands it the local webhook secrets
//! and a freshly minted send-API token (`GET /console/config`), lists what the WhatsApp stand-in
//! received (`GET /whatsapp/requests?since=N`), and forwards `/webhooks/*` and `/v1/*` unchanged
//! to the functions under `cargo lambda watch`, so the page stays on one origin (the functions
//! answer no CORS preflight, as behind API Gateway). The page signs webhook deliveries itself
//! with WebCrypto, as Meta or Kapso would.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::standins::{Served, loopback, serve as serve_router};
use crate::token::TokenSpec;

const INDEX_HTML: &str = include_str!("index.html");
const CONSOLE_CSS: &str = include_str!("console.css");
const CONSOLE_JS: &str = include_str!("console.js");

/// A seeded workspace and the business number it owns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Business {
    pub workspace: String,
    pub name: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
}

/// What the console needs from the running stack.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The functions under `cargo lambda watch` (e.g. `http://127.0.0.1:9000`).
    pub functions_url: String,
    /// The WhatsApp stand-in.
    pub whatsapp_url: String,
    pub meta_app_secret: String,
    pub kapso_webhook_secret: String,
    pub businesses: Vec<Business>,
    /// A customer to start with.
    pub customer: String,
    pub customer_name: String,
}

/// The running console; it stops when dropped.
pub struct Console {
    pub url: String,
    _server: Served,
}

struct Shared {
    config: ConsoleConfig,
    http: reqwest::Client,
    /// The `Host` values the console answers (loopback with its port): a page on another
    /// site that rebinds its name to 127.0.0.1 gets nothing.
    hosts: [String; 2],
}

/// Serves the console on `127.0.0.1:port` (a free port when `None`). Loopback only.
pub async fn serve(config: ConsoleConfig, port: Option<u16>) -> anyhow::Result<Console> {
    let listener = loopback(port).await.context("binding the console")?;
    let port = listener.local_addr()?.port();
    let shared = Arc::new(Shared {
        config,
        // The first call to a function compiles it under `cargo lambda watch`.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?,
        hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
    });
    let server = serve_router(listener, router(shared), "console")?;
    Ok(Console {
        url: format!("{}/", server.base_url),
        _server: server,
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console.css",
            get(|| async { page("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
        .route(
            "/console.js",
            get(|| async { page("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route("/console/config", get(config))
        .route("/whatsapp/requests", get(whatsapp_requests))
        .route("/webhooks/{*rest}", any(forward))
        .route("/v1/{*rest}", any(forward))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            loopback_host,
        ))
        .with_state(shared)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn loopback_host(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if shared.hosts.iter().any(|h| h == host) {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "the console answers only on its loopback address" })),
        )
            .into_response()
    }
}

/// The local secrets and, per business, a send-API token valid for an hour. They protect
/// nothing: the stack listens on loopback only.
async fn config(State(shared): State<Arc<Shared>>) -> Response {
    let config = &shared.config;
    let mut businesses = Vec::new();
    for business in &config.businesses {
        match TokenSpec::local(&business.workspace).mint() {
            Ok(token) => {
                let mut entry = serde_json::to_value(business).unwrap_or(Value::Null);
                entry["token"] = json!(token);
                businesses.push(entry);
            }
            Err(e) => return upstream_error(&format!("minting a token: {e:#}")),
        }
    }
    Json(json!({
        "metaAppSecret": config.meta_app_secret,
        "kapsoWebhookSecret": config.kapso_webhook_secret,
        "customer": config.customer,
        "customerName": config.customer_name,
        "businesses": businesses,
    }))
    .into_response()
}

/// What the WhatsApp stand-in received after the page's cursor.
async fn whatsapp_requests(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let url = format!("{}/_requests{query}", shared.config.whatsapp_url);
    relay(shared.http.get(url)).await
}

/// Forwards a request to the functions unchanged: method, path, query, headers, body.
async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", shared.config.functions_url);
    let mut request = shared.http.request(method, url).body(body);
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "origin" | "referer" | "cookie"
        ) {
            request = request.header(name, value);
        }
    }
    relay(request).await
}

async fn relay(request: reqwest::RequestBuilder) -> Response {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return upstream_error(&format!("the stack did not answer: {e}")),
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(value) = response
            .headers()
            .get(name.as_str())
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            headers.insert(name, value);
        }
    }
    match response.bytes().await {
        Ok(body) => (status, headers, body).into_response(),
        Err(e) => upstream_error(&format!("the stack's answer broke off: {e}")),
    }
}

fn upstream_error(message: &str) -> Response {
    (StatusCode::BAD_GATEWAY, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(functions_url: &str, whatsapp_url: &str) -> ConsoleConfig {
        ConsoleConfig {
            functions_url: functions_url.into(),
            whatsapp_url: whatsapp_url.into(),
            meta_app_secret: "meta-secret".into(),
            kapso_webhook_secret: "kapso-secret".into(),
            businesses: vec![Business {
                workspace: "demo-shop".into(),
                name: "Demo shop".into(),
                phone_number_id: "106540352242922".into(),
                display_phone_number: "15550100".into(),
            }],
            customer: "16505551234".into(),
            customer_name: "Sheena Nelson".into(),
        }
    }

    async fn functions_echo() -> String {
        let echo = Router::new().route(
            "/{*rest}",
            any(|method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                Json(json!({
                    "method": method.as_str(),
                    "uri": uri.to_string(),
                    "signature": headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()),
                    "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
                    "body": String::from_utf8_lossy(&body),
                }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, echo).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn the_page_and_its_scripts_are_served_from_the_binary() {
        let console = serve(config("http://127.0.0.1:9", "http://127.0.0.1:9"), None)
            .await
            .unwrap();
        for (path, kind, marker) in [
            ("", "text/html", "console.js"),
            ("console.js", "text/javascript", "crypto.subtle"),
            ("console.css", "text/css", ".bubble"),
        ] {
            let response = reqwest::get(format!("{}{path}", console.url))
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let content_type = response.headers()[header::CONTENT_TYPE.as_str()]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(content_type.starts_with(kind), "{path}: {content_type}");
            assert!(response.text().await.unwrap().contains(marker), "{path}");
        }
    }

    #[tokio::test]
    async fn webhook_deliveries_and_api_calls_reach_the_functions_unchanged() {
        let functions = functions_echo().await;
        let console = serve(config(&functions, "http://127.0.0.1:9"), None)
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let echoed: Value = http
            .post(format!("{}webhooks/whatsapp?x=1", console.url))
            .header("x-hub-signature-256", "sha256=abc")
            .body("{\"a\":1}")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["uri"], "/webhooks/whatsapp?x=1");
        assert_eq!(echoed["signature"], "sha256=abc");
        assert_eq!(echoed["body"], "{\"a\":1}");

        let echoed: Value = http
            .patch(format!("{}v1/conversations/01J?limit=5", console.url))
            .bearer_auth("tok")
            .body("{}")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echoed["method"], "PATCH");
        assert_eq!(echoed["uri"], "/v1/conversations/01J?limit=5");
        assert_eq!(echoed["authorization"], "Bearer tok");
    }

    #[tokio::test]
    async fn the_config_hands_out_a_token_the_send_api_accepts_for_each_business() {
        let console = serve(config("http://127.0.0.1:9", "http://127.0.0.1:9"), None)
            .await
            .unwrap();
        let config: Value = reqwest::get(format!("{}console/config", console.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(config["metaAppSecret"], "meta-secret");
        assert_eq!(config["businesses"][0]["phoneNumberId"], "106540352242922");
        let businesses = config["businesses"].as_array().unwrap();
        assert_eq!(businesses.len(), 1);
        for business in businesses {
            let token = business["token"].as_str().unwrap();
            let workspace = send_api_authenticates(token).await.unwrap();
            assert_eq!(workspace.as_str(), business["workspace"]);
        }
        // The authenticator does check: a token signed with another key is refused.
        let forged = TokenSpec {
            secret: "not-the-local-secret",
            ..TokenSpec::local("demo-shop")
        }
        .mint()
        .unwrap();
        assert_eq!(
            send_api_authenticates(&forged).await,
            Err(shared::dashboard::auth::AuthError::Invalid)
        );
    }

    /// Verifies `token` with the send API's own authenticator, configured from the environment
    /// the local stack gives the function (`token::auth_env`) and the app secret it seeds.
    async fn send_api_authenticates(
        token: &str,
    ) -> Result<shared::ids::WorkspaceId, shared::dashboard::auth::AuthError> {
        use shared::config::{Env, SendApiConfig};
        use shared::dashboard::auth::Authenticator;
        use shared::secrets::{SecretSource, SecretsCache, SecretsError};

        struct LocalAppSecret;
        impl SecretSource for LocalAppSecret {
            async fn fetch(&self) -> Result<String, SecretsError> {
                Ok(json!({ "dashboard_jwt_secret": crate::token::LOCAL_JWT_SECRET }).to_string())
            }
        }
        let mut env = crate::token::auth_env();
        env.extend(
            [("APP_SECRET_ID", "app-secret"), ("TABLE_NAME", "app-table")]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let config = SendApiConfig::from_env(&env).unwrap();
        let secrets = SecretsCache::new(LocalAppSecret, Duration::from_secs(60));
        Authenticator::new(config.auth, Arc::new(secrets))
            .authenticate(Some(&format!("Bearer {token}")))
            .await
    }

    #[tokio::test]
    async fn a_request_naming_another_host_is_refused() {
        let console = serve(config("http://127.0.0.1:9", "http://127.0.0.1:9"), None)
            .await
            .unwrap();
        let response = reqwest::Client::new()
            .get(format!("{}console/config", console.url))
            .header("host", "attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert!(!response.text().await.unwrap().contains("meta-secret"));
    }

    #[tokio::test]
    async fn an_unreachable_stack_is_a_bad_gateway_with_a_reason() {
        let console = serve(config("http://127.0.0.1:9", "http://127.0.0.1:9"), None)
            .await
            .unwrap();
        let response = reqwest::get(format!("{}whatsapp/requests?since=0", console.url))
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        assert!(response.text().await.unwrap().contains("did not answer"));
    }
}
