//! STOP and START: the contact's opt-out flag follows the keyword, a fixed confirmation is sent
//! once (never an AI reply), and an opted-out contact is not answered.

use integration_tests::processor::dynamo_item::{bool, s};
use integration_tests::processor::{
    CUSTOMER, Options, World, envelopes_of, event, failures, invoke, meta_texts, now, record,
    spawn_world,
};
use serde_json::Value;
use shared::conversations::store::TenantStore;

/// Delivers one text from the customer with the given timestamp and processes it.
async fn deliver_text_at(world: &World, wamid: &str, text: &str, at: i64) {
    world
        .deliver_meta(&meta_texts(&[(wamid, CUSTOMER, text, at)]))
        .await;
    world.pump().await;
}

fn body(text: &Value) -> &str {
    text["text"]["body"].as_str().unwrap_or_default()
}

async fn opted_out(world: &World) -> bool {
    bool(
        &world.contact(CUSTOMER).await.expect("contact stored"),
        "opted_out",
    )
}

#[tokio::test]
async fn stop_opts_the_contact_out_with_one_confirmation_and_later_messages_get_no_reply() {
    let world = spawn_world(Options::default()).await;
    let t = now();
    deliver_text_at(&world, "wamid.STOP1", "STOP", t - 10).await;

    assert!(world.message("wamid.STOP1").await.is_some());
    assert!(opted_out(&world).await);
    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["to"], CUSTOMER);
    assert!(body(&texts[0]).contains("unsubscribed"), "{texts:?}");
    let confirmation = world.message("wamid.REPLY0001").await.unwrap();
    assert!(
        !confirmation.contains_key("ai"),
        "a confirmation is not an AI reply"
    );

    deliver_text_at(&world, "wamid.STOP2", "Do you have the jacket in M?", t).await;
    assert!(world.message("wamid.STOP2").await.is_some());
    assert_eq!(world.sent_texts().await.len(), 1, "no reply after STOP");
}

#[tokio::test]
async fn start_opts_the_contact_back_in_with_a_confirmation_and_the_next_message_gets_an_ai_reply()
{
    let world = spawn_world(Options::default()).await;
    let t = now();
    deliver_text_at(&world, "wamid.START0", "STOP", t - 20).await;
    assert!(opted_out(&world).await);

    deliver_text_at(&world, "wamid.START1", "START", t - 10).await;
    assert!(!opted_out(&world).await);
    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(body(&texts[1]).contains("subscribed again"), "{texts:?}");
    let confirmation = world.message("wamid.REPLY0002").await.unwrap();
    assert!(
        !confirmation.contains_key("ai"),
        "a confirmation is not an AI reply"
    );

    deliver_text_at(&world, "wamid.START2", "Do you have the jacket in M?", t).await;
    assert_eq!(world.sent_texts().await.len(), 3);
    let reply = world
        .message("wamid.REPLY0003")
        .await
        .expect("AI reply stored");
    assert_eq!(
        reply["ai"].as_m().unwrap()["provider"].as_s().unwrap(),
        "offline"
    );
}

#[tokio::test]
async fn stop_inside_a_sentence_is_an_ordinary_message_that_gets_an_ai_reply() {
    let world = spawn_world(Options::default()).await;
    deliver_text_at(&world, "wamid.MUSIC1", "don't stop the music", now()).await;

    assert!(!opted_out(&world).await);
    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(!body(&texts[0]).contains("unsubscribed"), "{texts:?}");
    let reply = world
        .message("wamid.REPLY0001")
        .await
        .expect("reply stored");
    assert_eq!(s(&reply, "direction"), "outbound");
    assert_eq!(
        reply["ai"].as_m().unwrap()["provider"].as_s().unwrap(),
        "offline"
    );
}

#[tokio::test]
async fn a_redelivered_stop_does_not_send_a_second_confirmation() {
    let world = spawn_world(Options::default()).await;
    let payload = meta_texts(&[("wamid.STOPAGAIN", CUSTOMER, "STOP", now())]);
    world.deliver_meta(&payload).await;
    world.pump().await;
    assert_eq!(world.sent_texts().await.len(), 1);

    let envelope = envelopes_of(&payload).remove(0);
    let response = invoke(
        &world.processor,
        event(vec![record("redelivery-1", &envelope)]),
    )
    .await;

    assert!(failures(&response).is_empty(), "{:?}", failures(&response));
    assert!(opted_out(&world).await);
    assert_eq!(world.sent_texts().await.len(), 1, "one confirmation in all");
}

#[tokio::test]
async fn an_old_stop_opts_the_contact_out_silently() {
    let world = spawn_world(Options::default()).await;
    deliver_text_at(&world, "wamid.OLDSTOP", "STOP", now() - 3600).await;

    assert!(world.message("wamid.OLDSTOP").await.is_some());
    assert!(opted_out(&world).await);
    let texts = world.sent_texts().await;
    assert!(texts.is_empty(), "{texts:?}");
}

#[tokio::test]
async fn stop_to_a_number_whose_token_was_refused_opts_the_contact_out_without_a_confirmation() {
    let world = spawn_world(Options::default()).await;
    world
        .store
        .mark_integration_error(
            &shared::ids::PhoneNumberId::parse(integration_tests::PHONE_NUMBER_ID).unwrap(),
            "Error validating access token",
        )
        .await
        .unwrap();

    deliver_text_at(&world, "wamid.ERRSTOP", "STOP", now() - 10).await;

    assert!(opted_out(&world).await, "the keyword still applies");
    assert!(
        world.sent_texts().await.is_empty(),
        "nothing is sent through a number whose token is refused"
    );
}
