//! The setup-callbacks function, in-process as `lambda_http` hands it API Gateway events: a
//! link created through the send API comes back through `/webhooks/kapso/success` or
//! `/failed`. Nothing in the query is trusted: only links we recorded, unexpired and unused,
//! and numbers the Kapso platform fake says belong to the workspace's customer, connect.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use integration_tests::{ApiRequest, template, unique_name};
use lambda_http::tower::ServiceExt;
use serde_json::{Value, json};
use shared::adapters::dynamo::{DynamoStore, integration_key, setup_link_key};
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::config::Env;
use shared::ids::{KapsoCustomerId, PhoneNumberId, SetupLinkId, WorkspaceId};
use shared::onboarding::settings::CallbackSettings;
use shared::onboarding::{OnboardingStore, SetupLinkRecord};
use shared::secrets::SecretsCache;
use time::OffsetDateTime;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApi, token, workspace};
use crate::onboarding::{KAPSO_KEY, post, spawn_onboarding_api};

const DASHBOARD: &str = "https://dashboard.example.com";

struct Setup {
    api: TestApi,
    kapso: MockServer,
    callbacks: Router,
}

/// The send API and the callbacks over one test stack, the callbacks configured from the
/// template's environment.
async fn setup() -> Setup {
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let mut env = template()
        .function_env("SetupCallbacksFunction", &api.stack.provisioned)
        .expect("the template gives setup-callbacks an environment");
    env.insert("DASHBOARD_URL".into(), DASHBOARD.into());
    env.insert(
        "KAPSO_PLATFORM_BASE_URL".into(),
        format!("{}/platform/v1", kapso.uri()),
    );
    let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let settings = CallbackSettings::from_env(&env).expect("valid callback settings");
    let secrets = SecretsCache::new(
        SecretsManagerSource::new(&api.stack.aws, env.required("APP_SECRET_ID").unwrap()),
        Duration::from_secs(300),
    );
    let callbacks = ::setup_callbacks::router(Arc::new(::setup_callbacks::Callbacks {
        store: DynamoStore::new(&api.stack.aws, env.required("TABLE_NAME").unwrap()),
        platform: KapsoPlatformClient::new(&settings.platform_base_url, Arc::new(secrets)),
        dashboard_url: settings.dashboard_url,
    }));
    Setup {
        api,
        kapso,
        callbacks,
    }
}

impl Setup {
    fn store(&self) -> &DynamoStore {
        &self.api.processor_store
    }

    /// A setup link for `ws` through the send API, its Kapso customer `customer`.
    async fn link(&self, ws: &WorkspaceId, customer: &str) -> String {
        let link = unique_name("link");
        Mock::given(method("POST"))
            .and(path("/platform/v1/customers"))
            .and(body_partial_json(
                json!({"customer": {"external_customer_id": ws.as_str()}}),
            ))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(json!({"data": {"id": customer}})),
            )
            .up_to_n_times(1)
            .mount(&self.kapso)
            .await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/platform/v1/customers/{customer}/setup_links"
            )))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"data": {
                "id": link, "url": "https://app.kapso.ai/whatsapp/setup/x",
                "expires_at": "2099-01-01T00:00:00Z"}})))
            .up_to_n_times(1)
            .mount(&self.kapso)
            .await;
        let reply = post(&self.api, ws, json!({"provisionPhoneNumber": false})).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        link
    }

    /// The Kapso platform says `pn` belongs to `customer`.
    async fn kapso_number(&self, pn: &PhoneNumberId, customer: &str) {
        Mock::given(method("GET"))
            .and(path(format!("/platform/v1/whatsapp/phone_numbers/{pn}")))
            .and(wiremock::matchers::header("X-API-Key", KAPSO_KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
                "id": pn.as_str(), "phone_number_id": pn.as_str(), "customer_id": customer,
                "display_phone_number": "+1 555-123-4567", "is_coexistence": false}})))
            .mount(&self.kapso)
            .await;
    }

    /// `GET path?query` through the callbacks router; the `Location` it redirects to.
    async fn callback(&self, path: &str, query: &str) -> String {
        let request = ApiRequest {
            method: "GET",
            path: path.into(),
            query: query.into(),
            headers: vec![],
            body: None,
            base64: false,
        };
        let request = lambda_http::request::from_str(&request.event().to_string())
            .expect("lambda_http accepts the API Gateway event");
        let response = self
            .callbacks
            .clone()
            .oneshot(request)
            .await
            .expect("routers are infallible");
        assert_eq!(response.status(), 302, "{path}?{query}");
        response.headers()["location"]
            .to_str()
            .expect("an ASCII location")
            .to_owned()
    }

    async fn success(&self, query: &str) -> String {
        self.callback("/webhooks/kapso/success", query).await
    }

    async fn connection(&self, ws: &WorkspaceId) -> Value {
        let reply = self
            .api
            .get("/v1/whatsapp/connection", Some(&token(ws)))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    async fn routed(&self, pn: &PhoneNumberId) -> bool {
        self.store()
            .raw_item(integration_key(pn))
            .await
            .unwrap()
            .is_some()
    }
}

fn number() -> PhoneNumberId {
    let digits: String = unique_name("")
        .chars()
        .filter(char::is_ascii_digit)
        .take(15)
        .collect();
    PhoneNumberId::parse(format!("8{digits}")).unwrap()
}

fn connected() -> String {
    format!("{DASHBOARD}/whatsapp/connected")
}

fn failed(code: &str) -> String {
    format!("{DASHBOARD}/whatsapp/failed?error={code}")
}

#[tokio::test]
async fn a_valid_callback_activates_the_integration_and_redirects_to_the_dashboard() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    let link = s.link(&ws, &customer).await;
    let pn = number();
    s.kapso_number(&pn, &customer).await;

    let location = s
        .success(&format!(
            "setup_link_id={link}&status=completed&phone_number_id={pn}&business_account_id=98765&display_phone_number=%2B15551234567"
        ))
        .await;
    assert_eq!(location, connected());

    let integration = shared::conversations::store::TenantStore::integration(s.store(), &pn)
        .await
        .unwrap()
        .expect("the processor routes the number");
    assert_eq!(integration.workspace_id, ws);
    let status = s.connection(&ws).await;
    assert_eq!(status["status"], "connected", "{status}");
    assert_eq!(status["provider"], "kapso");
    assert_eq!(status["phoneNumberId"], pn.as_str());
    assert_eq!(status["connectionType"], "dedicated");
    assert_eq!(status["kapsoCustomerId"], customer.as_str());
}

#[tokio::test]
async fn a_replayed_callback_is_idempotent() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    let link = s.link(&ws, &customer).await;
    let pn = number();
    s.kapso_number(&pn, &customer).await;
    let query = format!("setup_link_id={link}&phone_number_id={pn}");

    assert_eq!(s.success(&query).await, connected());
    let first = s.connection(&ws).await;
    assert_eq!(s.success(&query).await, connected());
    assert_eq!(s.success(&query).await, connected());
    assert_eq!(s.connection(&ws).await, first, "a refresh changes nothing");
}

#[tokio::test]
async fn a_forged_setup_link_id_changes_nothing() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    s.link(&ws, &customer).await;
    let pn = number();
    s.kapso_number(&pn, &customer).await;

    for query in [
        format!("setup_link_id=forged-123&phone_number_id={pn}"),
        format!("phone_number_id={pn}&customer_id={customer}&connection_type=dedicated"),
    ] {
        let location = s.success(&query).await;
        assert!(
            location == failed("unknown_link") || location == failed("invalid_callback"),
            "{query}: {location}"
        );
    }
    assert!(!s.routed(&pn).await);
    assert_eq!(s.connection(&ws).await["status"], "pending");
}

#[tokio::test]
async fn a_link_of_another_workspace_does_not_connect_this_ones_number() {
    let s = setup().await;
    let (a, b) = (workspace("a"), workspace("b"));
    let (customer_a, customer_b) = (unique_name("cus-a"), unique_name("cus-b"));
    let link_a = s.link(&a, &customer_a).await;
    s.link(&b, &customer_b).await;
    let pn = number();
    s.kapso_number(&pn, &customer_b).await;

    // B's number through A's link, saying it is B's customer: refused both ways.
    for query in [
        format!("setup_link_id={link_a}&phone_number_id={pn}&customer_id={customer_b}"),
        format!("setup_link_id={link_a}&phone_number_id={pn}"),
    ] {
        assert_eq!(s.success(&query).await, failed("not_confirmed"), "{query}");
    }
    assert!(!s.routed(&pn).await);
    assert_eq!(s.connection(&a).await["status"], "pending");
    assert_eq!(s.connection(&b).await["status"], "pending");
}

#[tokio::test]
async fn a_number_kapso_does_not_know_changes_nothing() {
    let s = setup().await;
    let ws = workspace("ws");
    let link = s.link(&ws, &unique_name("cus")).await;
    let pn = number();
    Mock::given(path(format!("/platform/v1/whatsapp/phone_numbers/{pn}")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&s.kapso)
        .await;
    let location = s
        .success(&format!("setup_link_id={link}&phone_number_id={pn}"))
        .await;
    assert_eq!(location, failed("not_confirmed"));
    assert!(!s.routed(&pn).await);
}

#[tokio::test]
async fn an_expired_link_changes_nothing() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    s.link(&ws, &customer).await;
    let expired = SetupLinkId::parse(unique_name("old-link")).unwrap();
    s.store()
        .record_setup_link(&SetupLinkRecord {
            id: expired.clone(),
            workspace_id: ws.clone(),
            customer_id: KapsoCustomerId::parse(customer.clone()).unwrap(),
            expires_at: OffsetDateTime::now_utc() - time::Duration::minutes(1),
            created_at: OffsetDateTime::now_utc() - time::Duration::days(30),
            used_by: None,
        })
        .await
        .unwrap();
    let pn = number();
    s.kapso_number(&pn, &customer).await;
    let location = s
        .success(&format!(
            "setup_link_id={}&phone_number_id={pn}",
            expired.as_str()
        ))
        .await;
    assert_eq!(location, failed("link_expired"));
    assert!(!s.routed(&pn).await);
}

#[tokio::test]
async fn a_used_link_does_not_connect_a_second_number() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    let link = s.link(&ws, &customer).await;
    let (first, second) = (number(), number());
    s.kapso_number(&first, &customer).await;
    s.kapso_number(&second, &customer).await;
    assert_eq!(
        s.success(&format!("setup_link_id={link}&phone_number_id={first}"))
            .await,
        connected()
    );
    assert_eq!(
        s.success(&format!("setup_link_id={link}&phone_number_id={second}"))
            .await,
        failed("already_used")
    );
    assert!(!s.routed(&second).await);
    assert_eq!(s.connection(&ws).await["phoneNumberId"], first.as_str());
    let item = s
        .store()
        .raw_item(setup_link_key(&SetupLinkId::parse(link).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item["used_by"].as_s().unwrap(), first.as_str());
}

#[tokio::test]
async fn no_parameter_moves_the_redirect_off_the_dashboard() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    let link = s.link(&ws, &customer).await;
    let evil = [
        "redirect=https%3A%2F%2Fevil.example",
        "next=%2F%2Fevil.example&return_to=https://evil.example",
        "success_redirect_url=https%3A%2F%2Fevil.example",
        "error_code=%2F%2Fevil.example%2F",
        "error_code=x%0D%0ALocation%3A%20https%3A%2F%2Fevil.example",
        "error=..%2F..%2Fevil&error_description=%3Cscript%3E",
        "setup_link_id=a&setup_link_id=b",
        "%ZZ=%",
    ];
    for params in evil {
        for route in ["/webhooks/kapso/success", "/webhooks/kapso/failed"] {
            let query = format!("setup_link_id={link}&{params}");
            let location = s.callback(route, &query).await;
            let rest = location
                .strip_prefix(&format!("{DASHBOARD}/whatsapp/"))
                .unwrap_or_else(|| panic!("{route}?{query} -> {location}"));
            assert!(
                rest == "connected"
                    || rest.strip_prefix("failed?error=").is_some_and(|code| code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')),
                "{route}?{query} -> {location}"
            );
        }
    }
}

#[tokio::test]
async fn the_failure_callback_records_each_error_code_current_and_older() {
    let s = setup().await;
    let ws = workspace("ws");
    let customer = unique_name("cus");
    for code in [
        "facebook_auth_failed",
        "phone_verification_failed",
        "waba_limit_reached",
        "token_exchange_failed",
        "link_expired",
        "already_used",
    ] {
        let link = s.link(&ws, &customer).await;
        let location = s
            .callback(
                "/webhooks/kapso/failed",
                &format!("setup_link_id={link}&error_code={code}"),
            )
            .await;
        assert_eq!(location, failed(code));
        let status = s.connection(&ws).await;
        assert_eq!(status["status"], "error", "{code}: {status}");
        assert_eq!(status["error"]["code"], code);
    }
    // The older form: the customer, `error` and `error_description`.
    s.link(&ws, &customer).await;
    let location = s
        .callback(
            "/webhooks/kapso/failed",
            &format!(
                "customer_id={customer}&error=access_denied&error_description=The+user+cancelled"
            ),
        )
        .await;
    assert_eq!(location, failed("access_denied"));
    let status = s.connection(&ws).await;
    assert_eq!(status["error"]["code"], "access_denied");
    assert_eq!(status["error"]["message"], "The user cancelled");
}

#[tokio::test]
async fn a_failure_for_nothing_of_ours_records_nothing() {
    let s = setup().await;
    let ws = workspace("ws");
    s.link(&ws, &unique_name("cus")).await;
    for query in [
        "setup_link_id=forged&error_code=waba_limit_reached",
        "customer_id=someone-else&error=access_denied",
        "error_code=waba_limit_reached",
    ] {
        assert_eq!(
            s.callback("/webhooks/kapso/failed", query).await,
            failed(if query.contains("access_denied") {
                "access_denied"
            } else {
                "waba_limit_reached"
            })
        );
    }
    assert_eq!(s.connection(&ws).await["status"], "pending");
}
