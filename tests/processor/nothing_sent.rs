//! When a send certainly did not happen (the connection could not even be opened), the reply's
//! intent is released and the record failed, so SQS redelivers it and it is answered then, once.
//! When the API answered 2xx but its body cannot be read, the reply may have gone out: it is
//! flagged unknown and never sent again.

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    Options, build_processor, envelopes_of, event, failures, invoke, meta_text, record, spawn_world,
};
use integration_tests::switching_store::DEAD_ENDPOINT;
use serde_json::json;
use shared::conversations::processor::ProcessorSettings;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_send_whose_connection_cannot_be_opened_releases_the_intent_fails_the_record_and_its_redelivery_sends_one_reply()
 {
    let world = spawn_world(Options::default()).await;
    // The first delivery meets a WhatsApp API nobody listens on.
    let unreachable = build_processor(
        &world.stack,
        world.store.clone(),
        DEAD_ENDPOINT,
        ProcessorSettings::default(),
        &world.stack.aws,
    );
    let envelope = envelopes_of(&meta_text("wamid.NOCONNECT1", "Is the shop open?")).remove(0);

    let first = invoke(&unreachable, event(vec![record("nc-1", &envelope)])).await;

    assert_eq!(failures(&first), ["nc-1"], "the record is left for SQS");
    assert!(
        world.intent("wamid.NOCONNECT1").await.is_none(),
        "the intent is released, not flagged"
    );
    let message = world.message("wamid.NOCONNECT1").await.expect("stored");
    assert!(
        !message.contains_key("reply_intent"),
        "no coverage is left behind"
    );
    assert!(world.whatsapp.received_requests().await.unwrap().is_empty());

    // SQS redelivers it; the API is reachable again.
    let second = invoke(&world.processor, event(vec![record("nc-1", &envelope)])).await;

    assert!(failures(&second).is_empty(), "{:?}", failures(&second));
    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1, "exactly one reply: {texts:?}");
    assert!(
        texts[0]["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .ends_with("#wamid.NOCONNECT1")
    );
    let intent = world.intent("wamid.NOCONNECT1").await.unwrap();
    assert_eq!(s(&intent, "state"), "sent");
    assert_eq!(s(&intent, "wamid"), "wamid.REPLY0001");
}

#[tokio::test]
async fn a_2xx_answer_whose_body_is_not_json_flags_the_reply_unknown_and_a_redelivery_sends_nothing()
 {
    let world = spawn_world(Options::default()).await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string("<html><body>OK</body></html>"),
        )
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let envelope = envelopes_of(&meta_text("wamid.BADBODY1", "Do you ship abroad?")).remove(0);

    let first = invoke(&world.processor, event(vec![record("bb-1", &envelope)])).await;

    assert!(
        failures(&first).is_empty(),
        "an unknown outcome is settled, not retried: {:?}",
        failures(&first)
    );
    assert_eq!(world.sent_texts().await.len(), 1);
    let flagged = world
        .intent("wamid.BADBODY1")
        .await
        .expect("the intent is kept");
    assert_eq!(s(&flagged, "state"), "unknown", "{flagged:?}");

    let again = invoke(
        &world.processor,
        event(vec![record("bb-1-again", &envelope)]),
    )
    .await;

    assert!(failures(&again).is_empty());
    assert_eq!(world.sent_texts().await.len(), 1, "never sent again");
    assert_eq!(
        s(&world.intent("wamid.BADBODY1").await.unwrap(), "state"),
        "unknown"
    );
}
