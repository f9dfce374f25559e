//! `POST /v1/whatsapp/setup-links` and `GET /v1/whatsapp/connection`: a Kapso customer per
//! workspace (wiremock stands in for Kapso's platform API), setup links recorded in moto, and
//! the connection status in each of its states.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use shared::adapters::dynamo::{DynamoStore, integration_key, onboarding_key};
use shared::conversations::model::{Integration, IntegrationStatus, Provider};
use shared::conversations::store::TenantStore;
use shared::ids::{PhoneNumberId, WorkspaceId};
use shared::onboarding::{
    Activation, ActiveNumber, ConnectionType, OnboardingStore, RecordedError,
};
use time::OffsetDateTime;
use wiremock::matchers::{body_partial_json, header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, Times};

use crate::helpers::{TestApi, spawn_api_with, token, workspace};

pub const KAPSO_KEY: &str = "platform-key-123";

/// The send API with a Kapso platform fake at `kapso`.
pub async fn spawn_onboarding_api(kapso: &MockServer) -> TestApi {
    let mut secrets = integration_tests::default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["kapso_api_key"] = KAPSO_KEY.into();
    let platform = format!("{}/platform/v1", kapso.uri());
    spawn_api_with(secrets, &[("KAPSO_PLATFORM_BASE_URL", &platform)]).await
}

/// Kapso's setup-link route: a new link id on every call, as Kapso does.
struct NewLinks(AtomicUsize);

impl Respond for NewLinks {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(201).set_body_json(json!({"data": {
            "id": integration_tests::unique_name("link"),
            "status": "active",
            "url": format!("https://app.kapso.ai/whatsapp/setup/t{n}"),
            "expires_at": "2099-01-01T00:00:00Z",
        }}))
    }
}

/// Mounts Kapso's customer and setup-link routes; the customer is `customer`.
pub async fn mount_kapso(kapso: &MockServer, customer: &str, customers_expected: impl Into<Times>) {
    Mock::given(method("POST"))
        .and(path("/platform/v1/customers"))
        .and(header("X-API-Key", KAPSO_KEY))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"data": {"id": customer, "name": "ws"}})),
        )
        .expect(customers_expected)
        .mount(kapso)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/platform/v1/customers/{customer}/setup_links"
        )))
        .and(header("X-API-Key", KAPSO_KEY))
        .respond_with(NewLinks(AtomicUsize::new(0)))
        .mount(kapso)
        .await;
}

pub async fn post(api: &TestApi, ws: &WorkspaceId, body: Value) -> crate::helpers::Reply {
    api.send(
        "POST",
        "/v1/whatsapp/setup-links",
        Some(&token(ws)),
        Some(&body),
    )
    .await
}

async fn connection(api: &TestApi, ws: &WorkspaceId) -> Value {
    let reply = api.get("/v1/whatsapp/connection", Some(&token(ws))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

#[tokio::test]
async fn the_kapso_customer_is_created_once_and_a_second_link_reuses_it() {
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let ws = workspace("ws");
    let customer = integration_tests::unique_name("cus");
    mount_kapso(&kapso, &customer, 1).await;

    let first = post(&api, &ws, json!({"provisionPhoneNumber": false})).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = post(
        &api,
        &ws,
        json!({"provisionPhoneNumber": true, "countries": ["CO"]}),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);

    assert_eq!(first.json()["kapsoCustomerId"], customer.as_str());
    assert_eq!(second.json()["kapsoCustomerId"], customer.as_str());
    assert_ne!(first.json()["setupUrl"], second.json()["setupUrl"]);
    assert_eq!(first.json()["expiresAt"], "2099-01-01T00:00:00Z");
    let requests = kapso.received_requests().await.unwrap_or_default();
    let created: Value = requests
        .iter()
        .find(|r| r.url.path() == "/platform/v1/customers")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .expect("a customer was created");
    assert_eq!(
        created["customer"]["external_customer_id"],
        ws.as_str(),
        "the customer carries the workspace id"
    );
    kapso.verify().await;
}

#[tokio::test]
async fn a_setup_link_sends_the_browser_back_to_our_callbacks_with_the_requested_options() {
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let ws = workspace("ws");
    let customer = integration_tests::unique_name("cus");
    Mock::given(method("POST"))
        .and(path(format!(
            "/platform/v1/customers/{customer}/setup_links"
        )))
        .and(body_partial_json(json!({"setup_link": {
            "success_redirect_url": "https://api.test.invalid/webhooks/kapso/success",
            "failure_redirect_url": "https://api.test.invalid/webhooks/kapso/failed",
            "allowed_connection_types": ["dedicated"],
            "provision_phone_number": true,
            "phone_number_country_isos": ["US"],
            "phone_number_area_code": "415",
        }})))
        .respond_with(NewLinks(AtomicUsize::new(0)))
        .expect(1)
        .mount(&kapso)
        .await;
    mount_kapso(&kapso, &customer, 1).await;

    let reply = post(
        &api,
        &ws,
        json!({"provisionPhoneNumber": true, "connectionTypes": ["dedicated"],
               "countries": ["US"], "areaCode": "415"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    kapso.verify().await;
}

#[tokio::test]
async fn a_malformed_setup_link_request_is_refused_naming_the_field_and_calls_nobody() {
    let kapso = MockServer::start().await;
    Mock::given(path_regex(".*"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&kapso)
        .await;
    let api = spawn_onboarding_api(&kapso).await;
    let ws = workspace("ws");
    for (body, field) in [
        (
            json!({"provisionPhoneNumber": true, "countries": ["usa"]}),
            "countries",
        ),
        (
            json!({"provisionPhoneNumber": true, "areaCode": "4x"}),
            "areaCode",
        ),
        (
            json!({"provisionPhoneNumber": true, "connectionTypes": ["shared"]}),
            "connectionTypes[0]",
        ),
        (
            json!({"connectionTypes": ["dedicated"]}),
            "provisionPhoneNumber",
        ),
    ] {
        let reply = post(&api, &ws, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        assert_eq!(reply.json()["error"]["details"]["field"], field, "{body}");
    }
    kapso.verify().await;
}

#[tokio::test]
async fn kapso_refusing_the_customer_is_a_bad_gateway_and_records_nothing() {
    let kapso = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/platform/v1/customers"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"error": "invalid"})))
        .mount(&kapso)
        .await;
    let api = spawn_onboarding_api(&kapso).await;
    let ws = workspace("ws");
    let reply = post(&api, &ws, json!({"provisionPhoneNumber": false})).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.error_code(), "upstream_refused");
    assert!(
        api.processor_store
            .raw_item(onboarding_key(&ws))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(connection(&api, &ws).await["status"], "disconnected");
}

#[tokio::test]
async fn the_connection_routes_need_a_token() {
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let reply = api.get("/v1/whatsapp/connection", None).await;
    assert_eq!(reply.status, 401);
    let reply = api
        .send(
            "POST",
            "/v1/whatsapp/setup-links",
            None,
            Some(&json!({"provisionPhoneNumber": true})),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert!(
        kapso
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

fn number(pn: &PhoneNumberId) -> ActiveNumber {
    ActiveNumber {
        phone_number_id: pn.clone(),
        provider: Provider::Kapso,
        display_phone_number: Some("+1 555-123-4567".into()),
        connection_type: Some(ConnectionType::Coexistence),
        connected_at: OffsetDateTime::now_utc(),
    }
}

async fn activate(store: &DynamoStore, ws: &WorkspaceId, pn: &PhoneNumberId) {
    store
        .activate(&Activation {
            workspace_id: ws.clone(),
            number: number(pn),
            setup_link: None,
        })
        .await
        .expect("activated");
}

fn unique_number() -> PhoneNumberId {
    let digits: String = integration_tests::unique_name("")
        .chars()
        .filter(char::is_ascii_digit)
        .take(15)
        .collect();
    PhoneNumberId::parse(format!("9{digits}")).unwrap()
}

#[tokio::test]
async fn the_connection_status_reflects_each_state() {
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let store = &api.processor_store;
    let ws = workspace("ws");
    let customer = integration_tests::unique_name("cus");
    mount_kapso(&kapso, &customer, 1).await;

    // None: never onboarded.
    let none = connection(&api, &ws).await;
    assert_eq!(none["status"], "disconnected");
    assert_eq!(none["isConnected"], false);
    assert_eq!(none["provider"], Value::Null);
    assert_eq!(none["kapsoCustomerId"], Value::Null);

    // Pending: a setup link is out.
    assert_eq!(
        post(&api, &ws, json!({"provisionPhoneNumber": false}))
            .await
            .status,
        201
    );
    let pending = connection(&api, &ws).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["kapsoCustomerId"], customer.as_str());

    // Error: the setup flow failed after that link.
    store
        .record_error(
            &ws,
            &RecordedError {
                code: "waba_limit_reached".into(),
                message: None,
                at: OffsetDateTime::now_utc(),
            },
        )
        .await
        .unwrap();
    let failed = connection(&api, &ws).await;
    assert_eq!(failed["status"], "error");
    assert_eq!(failed["error"]["code"], "waba_limit_reached");

    // Connected: the number is activated, which clears the error.
    let pn = unique_number();
    activate(store, &ws, &pn).await;
    let connected = connection(&api, &ws).await;
    assert_eq!(connected["status"], "connected", "{connected}");
    assert_eq!(connected["isConnected"], true);
    assert_eq!(connected["provider"], "kapso");
    assert_eq!(connected["phoneNumberId"], pn.as_str());
    assert_eq!(connected["connectionType"], "coexistence");
    assert_eq!(connected["displayPhoneNumber"], "+1 555-123-4567");
    assert!(connected["connectedAt"].is_string());
    assert_eq!(connected["error"], Value::Null);
    // The processor routes the number to the workspace.
    let routed = store.integration(&pn).await.unwrap().expect("routed");
    assert_eq!(routed.workspace_id, ws);
    assert_eq!(routed.status, IntegrationStatus::Active);

    // Error: WhatsApp refused the number's token.
    store
        .mark_integration_error(&pn, "190: the access token has expired")
        .await
        .unwrap();
    let refused = connection(&api, &ws).await;
    assert_eq!(refused["status"], "error");
    assert_eq!(refused["isConnected"], false);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("190")
    );

    // Disconnected.
    store
        .put_integration(&Integration {
            phone_number_id: pn.clone(),
            workspace_id: ws.clone(),
            provider: Provider::Kapso,
            status: IntegrationStatus::Disconnected,
            error: None,
            access_token: None,
        })
        .await
        .unwrap();
    let disconnected = connection(&api, &ws).await;
    assert_eq!(disconnected["status"], "disconnected");
    assert_eq!(disconnected["phoneNumberId"], Value::Null);
}

#[tokio::test]
async fn a_number_connected_to_one_workspace_is_never_activated_for_another() {
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let store = &api.processor_store;
    let (a, b) = (workspace("a"), workspace("b"));
    let pn = unique_number();
    activate(store, &a, &pn).await;
    let taken = store
        .activate(&Activation {
            workspace_id: b.clone(),
            number: number(&pn),
            setup_link: None,
        })
        .await;
    assert_eq!(taken, Err(shared::onboarding::ActivationError::Taken));
    let routed = store.raw_item(integration_key(&pn)).await.unwrap().unwrap();
    assert_eq!(routed["workspace_id"].as_s().unwrap(), a.as_str());
    assert_eq!(connection(&api, &b).await["status"], "disconnected");
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_a_validation_error_and_calls_nobody() {
    // API Gateway hands such a body to Lambda base64-encoded.
    let kapso = MockServer::start().await;
    let api = spawn_onboarding_api(&kapso).await;
    let request = integration_tests::ApiRequest::post(
        "/v1/whatsapp/setup-links",
        vec![0x9f, b';', 0xef, 0xb0, 0x80, b'H', 0xd5, 0xbb, 0xff],
    )
    .header((
        "authorization".into(),
        format!("Bearer {}", token(&workspace("ws"))),
    ))
    .base64();
    let reply = api.send_raw(request).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error_code(), "validation_failed");
    assert!(
        kapso
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// Kapso's customer route: each new customer's id names the workspace it was created for.
struct CustomerPerWorkspace;

impl Respond for CustomerPerWorkspace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let ws = body["customer"]["external_customer_id"].as_str().unwrap();
        ResponseTemplate::new(201)
            .set_body_json(json!({"data": {"id": format!("cus-{ws}"), "name": ws}}))
    }
}

#[tokio::test]
async fn a_setup_link_of_one_workspace_never_creates_or_returns_another_workspaces_customer_or_link()
 {
    let kapso = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/platform/v1/customers"))
        .respond_with(CustomerPerWorkspace)
        .expect(2)
        .mount(&kapso)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/platform/v1/customers/[^/]+/setup_links$"))
        .respond_with(NewLinks(AtomicUsize::new(0)))
        .mount(&kapso)
        .await;
    let api = spawn_onboarding_api(&kapso).await;
    let (a, b) = (workspace("a"), workspace("b"));
    let body = || json!({"provisionPhoneNumber": false});

    let a_first = post(&api, &a, body()).await;
    assert_eq!(a_first.status, 201, "{}", a_first.body);
    let b_first = post(&api, &b, body()).await;
    assert_eq!(b_first.status, 201, "{}", b_first.body);
    let a_again = post(&api, &a, body()).await;
    assert_eq!(a_again.status, 201, "{}", a_again.body);

    let (cus_a, cus_b) = (format!("cus-{}", a.as_str()), format!("cus-{}", b.as_str()));
    assert_eq!(a_first.json()["kapsoCustomerId"], cus_a.as_str());
    assert_eq!(
        b_first.json()["kapsoCustomerId"],
        cus_b.as_str(),
        "B gets a customer of its own"
    );
    assert_eq!(
        a_again.json()["kapsoCustomerId"],
        cus_a.as_str(),
        "A keeps its own"
    );
    let urls = [&a_first, &b_first, &a_again].map(|r| r.json()["setupUrl"].clone());
    assert!(
        urls[0] != urls[1] && urls[1] != urls[2],
        "every link is a new one: {urls:?}"
    );

    // Kapso was asked for each workspace's links under that workspace's customer only.
    let requests = kapso.received_requests().await.unwrap_or_default();
    let link_paths: Vec<&str> = requests
        .iter()
        .map(|r| r.url.path())
        .filter(|p| p.ends_with("/setup_links"))
        .collect();
    assert_eq!(
        link_paths,
        [
            format!("/platform/v1/customers/{cus_a}/setup_links"),
            format!("/platform/v1/customers/{cus_b}/setup_links"),
            format!("/platform/v1/customers/{cus_a}/setup_links"),
        ]
    );
    let created: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path() == "/platform/v1/customers")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["customer"]["external_customer_id"]
                .clone()
        })
        .collect();
    assert_eq!(created, [json!(a.as_str()), json!(b.as_str())]);
    // Neither connection shows the other's customer.
    let b_connection = connection(&api, &b).await.to_string();
    assert!(!b_connection.contains(&cus_a), "{b_connection}");
    let a_connection = connection(&api, &a).await.to_string();
    assert!(!a_connection.contains(&cus_b), "{a_connection}");
    kapso.verify().await;
}
