//! Kapso's own rate limit on a Kapso-connected number: a 429 without a Meta error code means the
//! request was not acted on. A `Retry-After` beyond the deadline releases the reply and fails
//! the record; its redelivery sends the one reply, through Kapso's proxy.

use integration_tests::PHONE_NUMBER_ID;
use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    Options, envelopes_of, event, failures, invoke, meta_text, record, spawn_world,
};
use serde_json::{Value, json};
use shared::conversations::model::Provider;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn kapsos_429_on_a_kapso_number_is_redelivered_and_ends_in_exactly_one_reply_through_the_kapso_proxy()
 {
    let world = spawn_world(Options {
        provider: Provider::Kapso,
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "60")
                .set_body_json(json!({ "error": "Rate limit exceeded" })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let envelope =
        envelopes_of(&meta_text("wamid.KAPSO429", "Any table for two tonight?")).remove(0);

    let first = invoke(&world.processor, event(vec![record("k429", &envelope)])).await;

    assert_eq!(
        failures(&first),
        ["k429"],
        "Retry-After is past the deadline: left for SQS"
    );
    assert!(
        world.intent("wamid.KAPSO429").await.is_none(),
        "released, not flagged unknown"
    );

    let second = invoke(&world.processor, event(vec![record("k429", &envelope)])).await;

    assert!(failures(&second).is_empty(), "{:?}", failures(&second));
    let texts: Vec<(String, Value)> = world
        .whatsapp
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.url.path().to_owned(),
                serde_json::from_slice::<Value>(&r.body).unwrap(),
            )
        })
        .filter(|(_, body)| body["type"] == "text")
        .collect();
    assert_eq!(texts.len(), 2, "the throttled attempt and the one reply");
    for (path, _) in &texts {
        assert_eq!(
            *path,
            format!("/meta/whatsapp/v24.0/{PHONE_NUMBER_ID}/messages")
        );
    }
    let intent = world.intent("wamid.KAPSO429").await.expect("the intent");
    assert_eq!(s(&intent, "state"), "sent");
    assert_eq!(s(&intent, "wamid"), "wamid.REPLY0001");
    let reply = world.message("wamid.REPLY0001").await.expect("stored once");
    assert_eq!(s(&reply, "direction"), "outbound");
}
