//! Sending a reply: Meta's refusals are retried, recorded or escalated by what they mean, and
//! Kapso-connected numbers send through Kapso's proxy.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use integration_tests::PHONE_NUMBER_ID;
use integration_tests::processor::dynamo_item::{n, s};
use integration_tests::processor::{Options, World, meta_text, spawn_world};
use local_stack::bridge::PumpReport;
use serde_json::json;
use shared::conversations::model::{Direction, Provider};
use shared::conversations::store::{MessageStore, TenantStore};
use shared::ids::PhoneNumberId;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

/// A Cloud API error answer, shaped as Meta sends it.
fn meta_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": message },
            "fbtrace_id": "AbCdEfGhIjK"
        }
    }))
}

/// Text sends (not read receipts) answered with `answer`, ahead of the fake's default responder.
fn text_sends_answered_with(answer: ResponseTemplate) -> Mock {
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(answer)
        .with_priority(1)
}

const ONE_DELIVERED_AND_DELETED: PumpReport = PumpReport {
    received: 1,
    failed: 0,
    deleted: 1,
};

/// The wamids of the outbound messages stored in the contact's conversation.
async fn stored_replies(world: &World) -> Vec<String> {
    world
        .store
        .history(&world.conversation_id().await, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .map(|m| m.wamid.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn a_throttled_reply_is_retried_and_then_sent_and_stored_once() {
    let world = spawn_world(Options::default()).await;
    text_sends_answered_with(meta_error(400, 130429, "(#130429) Rate limit hit"))
        .up_to_n_times(1)
        .mount(&world.whatsapp)
        .await;
    world
        .deliver_meta(&meta_text("wamid.THROTTLED1", "Are you open?"))
        .await;
    world.pump().await;

    assert_eq!(
        world.sent_texts().await.len(),
        2,
        "one throttled send, one accepted retry"
    );
    assert_eq!(stored_replies(&world).await, ["wamid.REPLY0001"]);
}

#[tokio::test]
async fn a_reply_outside_the_24_hour_window_is_recorded_as_failed_without_a_retry_or_a_batch_failure()
 {
    let world = spawn_world(Options::default()).await;
    text_sends_answered_with(meta_error(400, 131047, "(#131047) Re-engagement message"))
        .mount(&world.whatsapp)
        .await;
    world
        .deliver_meta(&meta_text("wamid.LATE1", "Still there?"))
        .await;

    let report = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(report, ONE_DELIVERED_AND_DELETED, "the batch does not fail");
    assert_eq!(world.sent_texts().await.len(), 1, "no retry");
    let intent = world
        .intent("wamid.LATE1")
        .await
        .expect("the intent is kept");
    assert_eq!(s(&intent, "state"), "failed");
    assert_eq!(n(&intent, "error_code"), Some(131047));
    assert!(stored_replies(&world).await.is_empty());
}

#[tokio::test]
async fn an_expired_token_marks_the_integration_errored_without_failing_the_batch_or_retrying() {
    let world = spawn_world(Options::default()).await;
    text_sends_answered_with(meta_error(
        401,
        190,
        "Error validating access token: Session has expired",
    ))
    .mount(&world.whatsapp)
    .await;
    world
        .deliver_meta(&meta_text("wamid.TOKEN1", "Hello?"))
        .await;

    let report = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(report, ONE_DELIVERED_AND_DELETED, "the batch does not fail");
    assert_eq!(world.sent_texts().await.len(), 1, "no retry");
    let integration = world
        .store
        .raw_item((format!("PN#{PHONE_NUMBER_ID}"), "INTEGRATION".into()))
        .await
        .unwrap()
        .expect("the integration item");
    assert_eq!(s(&integration, "status"), "error");
}

#[tokio::test]
async fn a_number_whose_token_was_refused_stores_the_customers_messages_but_sends_no_ai_reply() {
    let world = spawn_world(Options::default()).await;
    // WhatsApp refused the number's token earlier (190): the integration is in `error` until the
    // business reconnects it.
    world
        .store
        .mark_integration_error(
            &PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
            "Error validating access token",
        )
        .await
        .unwrap();
    world
        .deliver_meta(&meta_text("wamid.ERRNUM1", "Is anyone there?"))
        .await;

    let report = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(report, ONE_DELIVERED_AND_DELETED);
    assert!(
        world.message("wamid.ERRNUM1").await.is_some(),
        "the message is stored"
    );
    assert!(
        world.sent_texts().await.is_empty(),
        "no reply through a number whose token is refused"
    );
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_releases_the_intent_and_fails_the_record_so_its_redelivery_replies_once()
 {
    let world = spawn_world(Options::default()).await;
    // Redeliver a failed record after one second instead of the template's three minutes.
    world
        .stack
        .sqs
        .set_queue_attributes()
        .queue_url(world.stack.queue_url())
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    // Throttled for the first send and all three retries of the harness's policy. (Not a scoped
    // mock: wiremock 0.6.5 re-sorts its mocks by priority, so dropping a guard can unmount
    // the wrong one.)
    text_sends_answered_with(meta_error(400, 130429, "(#130429) Rate limit hit"))
        .up_to_n_times(4)
        .mount(&world.whatsapp)
        .await;
    world
        .deliver_meta(&meta_text("wamid.THROTTLED2", "Is it in stock?"))
        .await;

    let first = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(
        first,
        PumpReport {
            received: 1,
            failed: 1,
            deleted: 0
        },
        "the record is reported failed and stays on the queue"
    );
    assert_eq!(
        world.sent_texts().await.len(),
        4,
        "the first send and the harness policy's three retries"
    );
    assert!(
        world.intent("wamid.THROTTLED2").await.is_none(),
        "the intent is released"
    );
    assert!(stored_replies(&world).await.is_empty());

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let redelivery = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(redelivery, ONE_DELIVERED_AND_DELETED);
    assert_eq!(world.sent_texts().await.len(), 5, "one more send, accepted");
    assert_eq!(stored_replies(&world).await, ["wamid.REPLY0001"]);
    let intent = world.intent("wamid.THROTTLED2").await.unwrap();
    assert_eq!(s(&intent, "state"), "sent");
}

#[tokio::test]
async fn kapso_mode_sends_to_the_kapso_proxy_path_with_the_api_key() {
    let world = spawn_world(Options {
        provider: Provider::Kapso,
        ..Options::default()
    })
    .await;
    world
        .deliver_meta(&meta_text("wamid.KAPSO1", "Hi from Kapso"))
        .await;
    world.pump().await;

    let requests = world.whatsapp.received_requests().await.unwrap();
    let texts: Vec<_> = requests
        .iter()
        .filter(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["type"] == "text")
        .collect();
    assert_eq!(texts.len(), 1);
    assert_eq!(
        texts[0].url.path(),
        format!("/meta/whatsapp/v24.0/{PHONE_NUMBER_ID}/messages")
    );
    assert_eq!(
        texts[0]
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok()),
        Some("test-kapso-key")
    );
    assert!(
        texts[0].headers.get("authorization").is_none(),
        "no Meta bearer token"
    );
    assert_eq!(stored_replies(&world).await, ["wamid.REPLY0001"]);
}
