//! `spawn_api()`: one test's own stack in moto (the template's table and secret, with the
//! local stack's token secret), and the send API wired to it as `main` wires it in Lambda.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use integration_tests::{ApiRequest, TestStack, default_secrets, spawn_stack_with, template};
use lambda_http::tower::ServiceExt;
use local_stack::token::{LOCAL_JWT_SECRET, TokenSpec};
use serde_json::Value;
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::config::{Env, SendApiConfig};
use shared::dashboard::auth::KeySource;
use shared::ids::WorkspaceId;
use shared::onboarding::settings::SetupLinkSettings;
use shared::retry::RetryPolicy;
use shared::secrets::SecretsCache;
use shared::whatsapp::WhatsAppClient;

pub struct TestApi {
    pub stack: TestStack,
    pub router: Router,
    /// The processor's adapter over the same table, to see what the processor would read.
    pub processor_store: DynamoStore,
}

/// The API with the local stack's auth: HS256 tokens keyed with the app secret's
/// `dashboard_jwt_secret`.
pub async fn spawn_api() -> TestApi {
    let mut secrets = default_secrets();
    secrets["dashboard_jwt_secret"] = LOCAL_JWT_SECRET.into();
    spawn_api_with(secrets, &[]).await
}

/// The API with `extra` environment on top of the template's and the local stack's. A JWKS
/// verifier refreshes without a floor, so a rotation in a test is seen at once.
pub async fn spawn_api_with(secrets: Value, extra: &[(&str, &str)]) -> TestApi {
    let stack = spawn_stack_with(secrets).await;
    let mut env = template()
        .function_env("SendApiFunction", &stack.provisioned)
        .expect("the template gives send-api an environment");
    env.extend(local_stack::token::auth_env());
    // Nothing leaves the machine: Kapso's platform API is unreachable unless a test points it
    // at its own fake.
    env.insert(
        "KAPSO_PLATFORM_BASE_URL".into(),
        "http://127.0.0.1:9/unreachable".into(),
    );
    env.insert(
        "SETUP_CALLBACK_BASE_URL".into(),
        "https://api.test.invalid".into(),
    );
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut config = SendApiConfig::from_env(&env).expect("a valid send-api configuration");
    let setup_links = SetupLinkSettings::from_env(&env).expect("valid setup-link settings");
    if let KeySource::Jwks(settings) = &mut config.auth.keys {
        settings.refresh_floor = Duration::ZERO;
    }
    let secrets = Arc::new(SecretsCache::new(
        SecretsManagerSource::new(&stack.aws, &config.common.app_secret_id),
        Duration::from_secs(300),
    ));
    let whatsapp = WhatsAppClient::new(
        config.whatsapp.clone(),
        RetryPolicy::new(1, Duration::from_millis(5), Duration::from_millis(20)),
    );
    let onboarding = send_api::whatsapp::Onboarding {
        platform: KapsoPlatformClient::new(&setup_links.platform_base_url, Arc::clone(&secrets)),
        settings: setup_links,
    };
    let api = send_api::SendApi::new(
        config.auth,
        secrets,
        whatsapp,
        DynamoStore::new(&stack.aws, &config.table_name),
        onboarding,
    );
    TestApi {
        processor_store: DynamoStore::new(&stack.aws, &config.table_name),
        router: send_api::router(Arc::new(api)),
        stack,
    }
}

/// A workspace id of this test's own.
pub fn workspace(name: &str) -> WorkspaceId {
    WorkspaceId::parse(integration_tests::unique_name(name)).expect("a valid workspace id")
}

/// A token the local stack's send API accepts, for `workspace`.
pub fn token(workspace: &WorkspaceId) -> String {
    TokenSpec::local(workspace.as_str())
        .mint()
        .expect("a token")
}

pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// The `code` of an error body, checking the body has the one error shape.
    pub fn error_code(&self) -> String {
        let body = self.json();
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {body}"));
        assert!(error["message"].is_string(), "{body}");
        assert!(
            error
                .keys()
                .all(|k| ["code", "message", "details"].contains(&k.as_str())),
            "{body}"
        );
        error["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl TestApi {
    /// Sends an API Gateway v2 event through the router, as Lambda would.
    pub async fn send(
        &self,
        method: &'static str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut headers = vec![];
        if let Some(token) = token {
            headers.push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        self.send_raw(ApiRequest {
            method,
            path: path.into(),
            query: String::new(),
            headers,
            body: body.map(|b| b.to_string().into_bytes()),
            base64: false,
        })
        .await
    }

    pub async fn send_raw(&self, request: ApiRequest) -> Reply {
        let request = lambda_http::request::from_str(&request.event().to_string())
            .expect("lambda_http accepts the API Gateway event");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("routers are infallible");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("response body");
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send("GET", path, token, None).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send("PUT", path, token, Some(body)).await
    }
}

/// send-api under `cargo lambda watch` (the real Lambda runtime loop, routed as API Gateway
/// routes it), with `api`'s stack, the local stack's auth and `extra` environment.
pub fn watch_send_api(api: &TestApi, extra: &[(&str, &str)]) -> local_stack::watch::LambdaWatch {
    let mut env = template()
        .function_env("SendApiFunction", &api.stack.provisioned)
        .expect("the template gives send-api an environment");
    env.extend(local_stack::aws_env(integration_tests::moto_endpoint()));
    env.extend(local_stack::token::auth_env());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut watch = local_stack::watch::LambdaWatch::start(
        local_stack::free_port().expect("a free port"),
        &env,
    )
    .expect("cargo lambda watch starts");
    watch
        .wait_listening(Duration::from_secs(60))
        .expect("cargo lambda watch listens");
    watch
}
