//! The same message, however often and however it arrives, is stored once and answered once.

use integration_tests::processor::dynamo_item::s;
use std::time::Duration;

use integration_tests::processor::completion;
use integration_tests::processor::{
    Options, envelopes_of, event, invoke, kapso_text, meta_text, now, record, spawn_world, thread,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn five_deliveries_across_batches_concurrently_and_through_both_providers_give_one_message_and_one_reply()
 {
    let world = spawn_world(Options::default()).await;
    let wamid = "wamid.FIVETIMES";
    let payload = meta_text(wamid, "Do you ship to Jakarta?");

    // 1 and 2: Meta delivers it, and a retry comes after SQS's dedup window (a new batch).
    world.deliver_meta(&payload).await;
    world.pump().await;
    let envelope = envelopes_of(&payload).remove(0);
    let response = invoke(
        &world.processor,
        event(vec![record("redelivery-1", &envelope)]),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());

    // 3 and 4: two batches carrying it race each other.
    let (a, b) = tokio::join!(
        invoke(&world.processor, event(vec![record("race-a", &envelope)])),
        invoke(&world.processor, event(vec![record("race-b", &envelope)])),
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());

    // 5: Kapso delivers the same message in its own format.
    world
        .deliver_kapso(
            "whatsapp.message.received",
            &kapso_text(wamid, "Do you ship to Jakarta?", now(), "cloud_api"),
        )
        .await;
    world.pump().await;

    assert!(world.message(wamid).await.is_some());
    assert_eq!(
        world.sent_texts().await.len(),
        1,
        "exactly one reply reached the WhatsApp API"
    );
    let contact = world
        .contact(integration_tests::processor::CUSTOMER)
        .await
        .unwrap();
    assert!(!s(&contact, &thread("answered_through")).is_empty());
}

#[tokio::test]
async fn two_invocations_racing_on_an_unanswered_message_send_one_reply_because_the_intent_write_decides()
 {
    let world = spawn_world(Options {
        grok_key: true,
        ..Options::default()
    })
    .await;
    // A slow model: both invocations store (or find) the message and reach the intent write
    // before either has begun the reply, so no coverage mark can decide for them.
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("We ship to Jakarta.", "grok-test"))
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&world.grok)
        .await;
    let envelope = envelopes_of(&meta_text("wamid.RACE1", "Do you ship?")).remove(0);

    let (a, b) = tokio::join!(
        invoke(&world.processor, event(vec![record("race-a", &envelope)])),
        invoke(&world.processor, event(vec![record("race-b", &envelope)])),
    );

    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    assert_eq!(
        world.grok.received_requests().await.unwrap().len(),
        2,
        "both invocations reached the reply"
    );
    assert_eq!(world.sent_texts().await.len(), 1, "exactly one reply");
}
