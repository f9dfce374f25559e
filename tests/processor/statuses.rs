//! Delivery statuses of outbound messages: applied monotonically, kept in a history, kept for
//! later when the message is not stored yet, and read from both Meta and Kapso.

use integration_tests::PHONE_NUMBER_ID;
use integration_tests::processor::dynamo_item::{Item, map_keys, n, s};
use integration_tests::processor::{
    Options, World, envelopes_of, event, failures, invoke, meta_status, meta_text, now, record,
    spawn_world,
};
use serde_json::{Value, json};

/// The wamid the WhatsApp fake gives the processor's first reply.
const REPLY: &str = "wamid.REPLY0001";

/// A world in which the processor has answered a fresh message, so `REPLY` is stored as `sent`.
async fn world_with_a_reply() -> World {
    let world = spawn_world(Options::default()).await;
    world
        .deliver_meta(&meta_text("wamid.STATUSASK", "Where is my order?"))
        .await;
    world.pump().await;
    let reply = world.message(REPLY).await.expect("the reply is stored");
    assert_eq!(s(&reply, "status"), "sent");
    world
}

async fn deliver_status(world: &World, status: &str, extra: Value) {
    world
        .deliver_meta(&meta_status(REPLY, status, now(), extra))
        .await;
    world.pump().await;
}

async fn reply(world: &World) -> Item {
    world.message(REPLY).await.expect("the reply is stored")
}

#[tokio::test]
async fn delivered_then_read_leaves_the_reply_read_with_each_status_in_its_history() {
    let world = world_with_a_reply().await;
    deliver_status(&world, "delivered", json!({})).await;
    deliver_status(&world, "read", json!({})).await;

    let reply = reply(&world).await;
    assert_eq!(s(&reply, "status"), "read");
    assert_eq!(n(&reply, "status_rank"), Some(3));
    assert_eq!(map_keys(&reply, "status_at"), ["delivered", "read", "sent"]);
}

#[tokio::test]
async fn read_before_delivered_leaves_the_reply_read_and_still_records_delivered() {
    let world = world_with_a_reply().await;
    deliver_status(&world, "read", json!({})).await;
    deliver_status(&world, "delivered", json!({})).await;

    let reply = reply(&world).await;
    assert_eq!(s(&reply, "status"), "read");
    assert_eq!(n(&reply, "status_rank"), Some(3));
    assert_eq!(map_keys(&reply, "status_at"), ["delivered", "read", "sent"]);
}

#[tokio::test]
async fn a_failed_status_records_the_error_code_and_title() {
    let world = world_with_a_reply().await;
    deliver_status(
        &world,
        "failed",
        json!({ "errors": [{ "code": 131047, "title": "Re-engagement message" }] }),
    )
    .await;

    let reply = reply(&world).await;
    assert_eq!(s(&reply, "status"), "failed");
    assert_eq!(n(&reply, "status_rank"), Some(4));
    assert_eq!(n(&reply, "error_code"), Some(131047));
    assert_eq!(s(&reply, "error_title"), "Re-engagement message");
}

#[tokio::test]
async fn a_status_for_a_message_not_stored_yet_is_kept_and_does_not_fail_the_batch() {
    let world = spawn_world(Options::default()).await;
    let wamid = "wamid.NOTSTOREDYET";
    let envelope = envelopes_of(&meta_status(wamid, "delivered", now(), json!({}))).remove(0);

    let response = invoke(&world.processor, event(vec![record("early-1", &envelope)])).await;

    assert!(failures(&response).is_empty(), "{:?}", failures(&response));
    assert!(world.message(wamid).await.is_none());
    let early = world
        .store
        .raw_item((format!("EARLY#{wamid}"), "STATUS#delivered".into()))
        .await
        .unwrap()
        .expect("the early status is kept");
    assert_eq!(s(&early, "status"), "delivered");
}

#[tokio::test]
async fn the_same_status_delivered_twice_is_harmless() {
    let world = world_with_a_reply().await;
    let payload = meta_status(REPLY, "delivered", now(), json!({}));
    world.deliver_meta(&payload).await;
    world.pump().await;
    let first = reply(&world).await;

    let envelope = envelopes_of(&payload).remove(0);
    let response = invoke(
        &world.processor,
        event(vec![record("redelivery-1", &envelope)]),
    )
    .await;

    assert!(failures(&response).is_empty(), "{:?}", failures(&response));
    let second = reply(&world).await;
    assert_eq!(s(&second, "status"), "delivered");
    assert_eq!(n(&second, "status_rank"), Some(2));
    assert_eq!(second["status_at"], first["status_at"]);
}

#[tokio::test]
async fn a_kapso_delivered_event_updates_the_reply_status() {
    let world = world_with_a_reply().await;
    let t = now();
    let body = json!({
        "message": {
            "id": REPLY,
            "timestamp": t.to_string(),
            "type": "text",
            "text": { "body": "Your order ships today." },
            "kapso": {
                "direction": "outbound",
                "status": "delivered",
                "processing_status": "completed",
                "origin": "cloud_api",
                "has_media": false,
                "statuses": [
                    { "id": REPLY, "status": "sent", "timestamp": (t - 1).to_string(), "recipient_id": "16505551234" },
                    { "id": REPLY, "status": "delivered", "timestamp": t.to_string(), "recipient_id": "16505551234" }
                ]
            }
        },
        "conversation": {
            "id": "8b0e2f4a-1c3d-4e5f-9a7b-6c5d4e3f2a10",
            "phone_number": "+16505551234",
            "status": "active",
            "phone_number_id": PHONE_NUMBER_ID
        },
        "is_new_conversation": false,
        "phone_number_id": PHONE_NUMBER_ID
    });
    world
        .deliver_kapso("whatsapp.message.delivered", &body)
        .await;
    world.pump().await;

    let reply = reply(&world).await;
    assert_eq!(s(&reply, "status"), "delivered");
    assert_eq!(n(&reply, "status_rank"), Some(2));
    assert_eq!(map_keys(&reply, "status_at"), ["delivered", "sent"]);
}
