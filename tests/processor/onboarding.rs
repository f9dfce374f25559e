//! End to end: a number connected through the setup-link callback (the Kapso platform fake
//! confirming it) starts receiving AI replies, through ingest and the processor.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::processor::{CUSTOMER, Options, meta_text, spawn_world};
use integration_tests::{ApiRequest, PHONE_NUMBER_ID, unique_name};
use lambda_http::tower::ServiceExt;
use serde_json::json;
use shared::adapters::dynamo::integration_key;
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::ids::{KapsoCustomerId, PhoneNumberId, SetupLinkId};
use shared::onboarding::{OnboardingStore, SetupLinkRecord};
use shared::secrets::SecretsCache;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_number_connected_through_the_callback_starts_receiving_ai_replies() {
    let world = spawn_world(Options::default()).await;
    // The number starts unconnected: nothing routes it yet.
    world
        .store
        .delete_item(integration_key(
            &PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
        ))
        .await
        .unwrap();

    // The workspace's customer and the link the send API would have recorded.
    let customer = KapsoCustomerId::parse(unique_name("cus")).unwrap();
    let link = SetupLinkId::parse(unique_name("link")).unwrap();
    let store = &world.store;
    store
        .claim_customer(&world.workspace, &customer)
        .await
        .unwrap();
    store
        .record_setup_link(&SetupLinkRecord {
            id: link.clone(),
            workspace_id: world.workspace.clone(),
            customer_id: customer.clone(),
            expires_at: OffsetDateTime::now_utc() + time::Duration::days(30),
            created_at: OffsetDateTime::now_utc(),
            used_by: None,
        })
        .await
        .unwrap();
    let kapso = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/platform/v1/whatsapp/phone_numbers/{PHONE_NUMBER_ID}"
        )))
        .and(header("X-API-Key", "test-kapso-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "phone_number_id": PHONE_NUMBER_ID, "customer_id": customer.as_str(),
            "is_coexistence": true}})))
        .expect(1)
        .mount(&kapso)
        .await;
    let secrets = SecretsCache::new(
        SecretsManagerSource::new(
            &world.stack.aws,
            &world.stack.provisioned.secrets["AppSecret"].name,
        ),
        Duration::from_secs(300),
    );
    let callbacks = setup_callbacks::router(Arc::new(setup_callbacks::Callbacks {
        store: store.clone(),
        platform: KapsoPlatformClient::new(
            format!("{}/platform/v1", kapso.uri()),
            Arc::new(secrets),
        ),
        dashboard_url: "https://dashboard.example.com".into(),
    }));

    let request = ApiRequest::get(
        "/webhooks/kapso/success",
        &format!(
            "setup_link_id={}&status=completed&phone_number_id={PHONE_NUMBER_ID}",
            link.as_str()
        ),
    );
    let response = callbacks
        .oneshot(lambda_http::request::from_str(&request.event().to_string()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://dashboard.example.com/whatsapp/connected"
    );

    world
        .deliver_meta(&meta_text("wamid.AFTERCONNECT", "Hello, are you open?"))
        .await;
    world.pump().await;
    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1, "one AI reply");
    assert_eq!(texts[0]["to"], CUSTOMER);
    // Activated as a Kapso number, so the reply went through Kapso's proxy with its key.
    let sent = world.whatsapp.received_requests().await.unwrap_or_default();
    let reply = sent
        .iter()
        .find(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|b| b["type"] == "text")
        })
        .unwrap();
    assert!(
        reply.url.path().starts_with("/meta/whatsapp/"),
        "{}",
        reply.url
    );
    assert_eq!(reply.headers["x-api-key"], "test-kapso-key");
}
