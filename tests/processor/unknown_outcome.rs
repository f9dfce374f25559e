//! A reply whose send may or may not have landed is never sent again, and its status webhook
//! reconciles it through `biz_opaque_callback_data`.

use integration_tests::processor::dynamo_item::{n, s};
use integration_tests::processor::{
    Options, envelopes_of, event, failures, invoke, meta_status, meta_text, now, record,
    spawn_world,
};
use serde_json::json;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_reply_whose_send_fails_ambiguously_is_flagged_and_never_sent_again() {
    let world = spawn_world(Options::default()).await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let payload = meta_text("wamid.AMBIG1", "Is my order ready?");
    world.deliver_meta(&payload).await;
    world.pump().await;
    assert_eq!(
        world.sent_texts().await.len(),
        1,
        "a 503 on a send is not retried"
    );

    let intent = world
        .intent("wamid.AMBIG1")
        .await
        .expect("the intent is kept");
    assert_eq!(s(&intent, "state"), "unknown");

    // A redelivery finds the intent and does not send again.
    let envelope = envelopes_of(&payload).remove(0);
    let response = invoke(&world.processor, event(vec![record("again", &envelope)])).await;
    assert!(failures(&response).is_empty());
    assert_eq!(world.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn the_status_of_a_reply_with_an_unknown_outcome_reconciles_it() {
    let world = spawn_world(Options::default()).await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    world
        .deliver_meta(&meta_text("wamid.AMBIG2", "Hello?"))
        .await;
    world.pump().await;
    let key = format!("{}#wamid.AMBIG2", world.conversation_id().await.as_str());

    // The message did land after all: Meta reports it, echoing our callback data.
    let status = meta_status(
        "wamid.LANDED1",
        "delivered",
        now(),
        json!({ "biz_opaque_callback_data": key }),
    );
    world.deliver_meta(&status).await;
    world.pump().await;

    let reply = world
        .message("wamid.LANDED1")
        .await
        .expect("the reply is stored under its wamid");
    assert_eq!(s(&reply, "direction"), "outbound");
    assert_eq!(s(&reply, "status"), "delivered");
    assert_eq!(n(&reply, "status_rank"), Some(2));
    assert!(
        !s(&reply, "text").is_empty(),
        "the reply's text comes from the intent's draft"
    );
    let intent = world.intent(&key).await.expect("the intent is kept");
    assert_eq!(s(&intent, "state"), "sent");
    assert_eq!(s(&intent, "wamid"), "wamid.LANDED1");
    assert_eq!(
        world.sent_texts().await.len(),
        1,
        "nothing was resent to reconcile"
    );
}
