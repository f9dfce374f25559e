//! End to end: a number connected through the setup-link callback, or through Kapso's
//! `whatsapp.phone_number.created` project webhook alone (the Kapso platform fake confirming it),
//! starts receiving AI replies, through ingest and the processor.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use integration_tests::processor::{CUSTOMER, Options, meta_text, spawn_world};
use integration_tests::{ApiRequest, PHONE_NUMBER_ID, unique_name};
use lambda_http::tower::ServiceExt;
use local_stack::bridge::PumpReport;
use serde_json::json;
use shared::adapters::dynamo::integration_key;
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::conversations::model::{IntegrationStatus, Provider};
use shared::conversations::store::TenantStore;
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

/// A world whose number is not connected yet, and whose workspace has `customer` as its Kapso
/// customer (what its first setup link recorded).
async fn unconnected_world(customer: &KapsoCustomerId) -> integration_tests::processor::World {
    let world = spawn_world(Options::default()).await;
    world
        .store
        .delete_item(integration_key(
            &PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
        ))
        .await
        .unwrap();
    world
        .store
        .claim_customer(&world.workspace, customer)
        .await
        .unwrap();
    world
}

/// Kapso's platform API says the number belongs to `owner`.
async fn kapso_knows_the_number_as(world: &integration_tests::processor::World, owner: &str) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/platform/v1/whatsapp/phone_numbers/{PHONE_NUMBER_ID}"
        )))
        .and(header("X-API-Key", "test-kapso-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "phone_number_id": PHONE_NUMBER_ID, "customer_id": owner,
            "display_phone_number": "+1 555-0100", "is_coexistence": false}})))
        .mount(&world.kapso)
        .await;
}

/// Kapso's signed `whatsapp.phone_number.created` project webhook for the number, given to
/// `customer`, posted to ingest (and so onto the queue).
async fn kapso_announces_the_number_for(
    world: &integration_tests::processor::World,
    customer: &KapsoCustomerId,
) {
    let event = json!({
        "phone_number_id": PHONE_NUMBER_ID,
        "project": { "id": "990e8400-e29b-41d4-a716-446655440004" },
        "customer": { "id": customer.as_str() }
    });
    world
        .deliver_kapso_project("whatsapp.phone_number.created", &event)
        .await;
}

#[tokio::test]
async fn the_phone_number_created_project_webhook_alone_connects_the_number_and_it_gets_ai_replies()
{
    let customer = KapsoCustomerId::parse(unique_name("cus")).unwrap();
    let world = unconnected_world(&customer).await;
    kapso_knows_the_number_as(&world, customer.as_str()).await;

    // A message before the number is connected is stored nowhere and answered by no one (and
    // the processor now remembers the number as unknown).
    world
        .deliver_meta(&meta_text("wamid.BEFORECONNECT", "Anyone there?"))
        .await;
    world.pump().await;
    assert!(world.sent_texts().await.is_empty());

    // The business closed the browser before the success redirect: only the webhook comes.
    kapso_announces_the_number_for(&world, &customer).await;
    world.pump().await;

    let pn = PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap();
    let integration = world.store.integration(&pn).await.unwrap().unwrap();
    assert_eq!(integration.workspace_id, world.workspace);
    assert_eq!(integration.provider, Provider::Kapso);
    assert_eq!(integration.status, IntegrationStatus::Active);
    let connection = world.store.connection(&world.workspace).await.unwrap();
    let active = connection.active.expect("the workspace shows the number");
    assert_eq!(active.display_phone_number.as_deref(), Some("+1 555-0100"));

    // The next message is routed at once (the unknown number was forgotten) and answered.
    world
        .deliver_meta(&meta_text("wamid.AFTERWEBHOOK", "Hello, are you open?"))
        .await;
    world.pump().await;
    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1, "one AI reply: {texts:?}");
    assert_eq!(texts[0]["to"], CUSTOMER);
}

#[tokio::test]
async fn a_project_webhook_for_a_number_kapso_gives_to_another_customer_connects_nothing_and_is_not_retried()
 {
    let customer = KapsoCustomerId::parse(unique_name("cus")).unwrap();
    let world = unconnected_world(&customer).await;
    kapso_knows_the_number_as(&world, "someone-else").await;

    kapso_announces_the_number_for(&world, &customer).await;
    // The event is handled and acknowledged (deleted), not reported as failed for redelivery.
    let report = world.bridge().pump_once(0).await.unwrap();
    assert_eq!(
        report,
        PumpReport {
            received: 1,
            failed: 0,
            deleted: 1
        }
    );

    let pn = PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap();
    assert_eq!(world.store.integration(&pn).await.unwrap(), None);
    assert_eq!(
        world
            .store
            .connection(&world.workspace)
            .await
            .unwrap()
            .active,
        None
    );
}

#[tokio::test]
async fn a_project_webhook_for_a_customer_of_no_workspace_connects_nothing() {
    let ours = KapsoCustomerId::parse(unique_name("cus")).unwrap();
    let world = unconnected_world(&ours).await;
    let stranger = KapsoCustomerId::parse(unique_name("cus")).unwrap();
    kapso_knows_the_number_as(&world, stranger.as_str()).await;

    kapso_announces_the_number_for(&world, &stranger).await;
    world.pump().await;

    let pn = PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap();
    assert_eq!(world.store.integration(&pn).await.unwrap(), None);
    // Nothing was asked of Kapso for a customer we do not know.
    assert!(
        world
            .kapso
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn a_project_webhook_while_kapso_cannot_confirm_the_number_is_retried_and_then_connects() {
    let customer = KapsoCustomerId::parse(unique_name("cus")).unwrap();
    let world = unconnected_world(&customer).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/platform/v1/whatsapp/phone_numbers/{PHONE_NUMBER_ID}"
        )))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&world.kapso)
        .await;
    kapso_knows_the_number_as(&world, customer.as_str()).await;
    // Redeliver after one second instead of the template's three minutes.
    world
        .stack
        .sqs
        .set_queue_attributes()
        .queue_url(world.stack.queue_url())
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();

    kapso_announces_the_number_for(&world, &customer).await;
    let bridge = world.bridge();
    let first = bridge.pump_once(0).await.unwrap();
    assert_eq!(first.received, 1);
    assert_eq!(
        first.failed, 1,
        "Kapso's outage fails the record, for SQS to redeliver"
    );
    let pn = PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap();
    assert_eq!(world.store.integration(&pn).await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = bridge.pump_once(0).await.unwrap();
    assert_eq!((second.received, second.deleted), (1, 1), "{second:?}");
    let integration = world.store.integration(&pn).await.unwrap().unwrap();
    assert_eq!(integration.workspace_id, world.workspace);
    assert_eq!(integration.status, IntegrationStatus::Active);
}
