//! Messages the AI must not answer are still stored; each skip rule is proven on its own, with
//! a control showing the same setup answers once the rule no longer applies.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::processor::dynamo_item::{bool, s};
use integration_tests::processor::{
    CUSTOMER, Options, World, kapso_text, meta_status, meta_text, meta_texts, now, spawn_world,
};
use serde_json::json;
use shared::adapters::dynamo;
use shared::ids::WaId;

/// Sets a boolean flag on the customer's contact item, as the dashboard would.
async fn set_contact_flag(world: &World, name: &str, value: bool) {
    let (pk, sk) = dynamo::contact_key(&world.workspace, &WaId::parse(CUSTOMER).unwrap());
    aws_sdk_dynamodb::Client::new(&world.stack.aws)
        .update_item()
        .table_name(world.store.table())
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S(sk))
        .update_expression("SET #flag = :value")
        .expression_attribute_names("#flag", name)
        .expression_attribute_values(":value", AttributeValue::Bool(value))
        .send()
        .await
        .unwrap();
}

/// Delivers one text from the customer with the given timestamp and processes it.
async fn deliver_text_at(world: &World, wamid: &str, text: &str, at: i64) {
    world
        .deliver_meta(&meta_texts(&[(wamid, CUSTOMER, text, at)]))
        .await;
    world.pump().await;
}

#[tokio::test]
async fn a_status_event_is_kept_and_gets_no_reply() {
    let world = spawn_world(Options::default()).await;
    world
        .deliver_meta(&meta_status(
            "wamid.SKIPSTATUS",
            "delivered",
            now(),
            json!({}),
        ))
        .await;
    world.pump().await;

    let early = world
        .store
        .raw_item(("EARLY#wamid.SKIPSTATUS".into(), "STATUS#delivered".into()))
        .await
        .unwrap();
    assert!(early.is_some(), "the status is kept for its message");
    assert!(world.sent_texts().await.is_empty());
}

#[tokio::test]
async fn a_message_older_than_the_max_age_is_stored_but_gets_no_reply() {
    let world = spawn_world(Options::default()).await;
    deliver_text_at(&world, "wamid.SKIPOLD", "Are you open?", now() - 3600).await;

    assert!(world.message("wamid.SKIPOLD").await.is_some());
    assert!(world.sent_texts().await.is_empty());

    // Control: a fresh message in the same world is answered.
    deliver_text_at(&world, "wamid.SKIPOLDFRESH", "Are you open?", now()).await;
    assert_eq!(world.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn a_kapso_message_from_the_business_app_is_stored_but_gets_no_reply() {
    let world = spawn_world(Options::default()).await;
    world
        .deliver_kapso(
            "whatsapp.message.received",
            &kapso_text(
                "wamid.SKIPBIZAPP",
                "Hi from the shop",
                now(),
                "business_app",
            ),
        )
        .await;
    world.pump().await;

    let message = world
        .message("wamid.SKIPBIZAPP")
        .await
        .expect("message stored");
    assert_eq!(s(&message, "direction"), "inbound");
    assert_eq!(s(&message, "origin"), "business_app");
    assert!(world.sent_texts().await.is_empty());

    // Control: the same message from the Cloud API is answered.
    world
        .deliver_kapso(
            "whatsapp.message.received",
            &kapso_text(
                "wamid.SKIPBIZAPPLIVE",
                "Hi from the shop",
                now(),
                "cloud_api",
            ),
        )
        .await;
    world.pump().await;
    assert_eq!(world.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn a_kapso_message_from_history_sync_is_stored_but_gets_no_reply() {
    let world = spawn_world(Options::default()).await;
    world
        .deliver_kapso(
            "whatsapp.message.received",
            &kapso_text(
                "wamid.SKIPHISTORY",
                "An old chat line",
                now(),
                "history_sync",
            ),
        )
        .await;
    world.pump().await;

    let message = world
        .message("wamid.SKIPHISTORY")
        .await
        .expect("message stored");
    assert_eq!(s(&message, "origin"), "history_sync");
    assert!(world.sent_texts().await.is_empty());

    // Control: the same message from the Cloud API is answered.
    world
        .deliver_kapso(
            "whatsapp.message.received",
            &kapso_text(
                "wamid.SKIPHISTORYLIVE",
                "An old chat line",
                now(),
                "cloud_api",
            ),
        )
        .await;
    world.pump().await;
    assert_eq!(world.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn a_message_in_a_bot_paused_conversation_is_stored_but_gets_no_reply() {
    let world = spawn_world(Options::default()).await;
    let t = now();
    deliver_text_at(&world, "wamid.PAUSE1", "Hello", t - 20).await;
    assert_eq!(
        world.sent_texts().await.len(),
        1,
        "the first message is answered"
    );

    world.set_bot_paused(true).await;
    deliver_text_at(&world, "wamid.PAUSE2", "Can a person help me?", t - 10).await;

    let second = world.message("wamid.PAUSE2").await.expect("message stored");
    let first = world.message("wamid.PAUSE1").await.unwrap();
    assert_eq!(
        s(&second, "conversation_id"),
        s(&first, "conversation_id"),
        "still the same conversation"
    );
    assert_eq!(world.sent_texts().await.len(), 1, "no second reply");

    // Control: once the bot is resumed, the next message is answered.
    world.set_bot_paused(false).await;
    deliver_text_at(&world, "wamid.PAUSE3", "Anyone there?", t).await;
    assert_eq!(world.sent_texts().await.len(), 2);
}

#[tokio::test]
async fn a_message_from_an_opted_out_contact_is_stored_but_gets_no_reply() {
    let world = spawn_world(Options::default()).await;
    let t = now();
    // An old message creates the contact without a reply.
    deliver_text_at(&world, "wamid.OPTED0", "Hi", t - 3600).await;
    set_contact_flag(&world, "opted_out", true).await;

    deliver_text_at(&world, "wamid.OPTED1", "What are your prices?", t - 10).await;

    assert!(world.message("wamid.OPTED1").await.is_some());
    assert!(bool(&world.contact(CUSTOMER).await.unwrap(), "opted_out"));
    assert!(world.sent_texts().await.is_empty());

    // Control: once the contact is opted in again, the next message is answered.
    set_contact_flag(&world, "opted_out", false).await;
    deliver_text_at(&world, "wamid.OPTED2", "What are your prices?", t).await;
    assert_eq!(world.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn a_message_to_a_workspace_with_ai_disabled_is_stored_but_gets_no_reply() {
    let mut options = Options::default();
    options.ai.enabled = false;
    let world = spawn_world(options).await;
    world
        .deliver_meta(&meta_text("wamid.AIOFF1", "Is anyone there?"))
        .await;
    world.pump().await;

    assert!(world.message("wamid.AIOFF1").await.is_some());
    assert!(world.sent_texts().await.is_empty());
}
