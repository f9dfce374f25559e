//! A send that hangs past the invocation's deadline is cut short in time to record its outcome
//! and return the batch response, and the reply is never sent twice.

use std::time::{Duration, Instant};

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    Options, completion, envelopes_of, event, failures, invoke, invoke_with_time_left, meta_text,
    record, spawn_world,
};
use serde_json::json;
use shared::conversations::processor::LLM_RESERVE;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_send_that_hangs_past_the_deadline_is_flagged_unknown_before_the_deadline_and_not_resent()
{
    let world = spawn_world(Options {
        // The function's default: longer than the time this invocation has left, so only the
        // deadline can cut the send short.
        whatsapp_timeout: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    // The text send is accepted by the socket and then hangs well past the deadline.
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let envelope = envelopes_of(&meta_text("wamid.HANG1", "Is my order ready?")).remove(0);
    let time_left = Duration::from_secs(7);
    let deadline = Instant::now() + time_left;

    let response = invoke_with_time_left(
        &world.processor,
        event(vec![record("hang", &envelope)]),
        time_left,
    )
    .await;

    assert!(
        Instant::now() < deadline,
        "the handler returned before the invocation's deadline"
    );
    assert!(
        failures(&response).is_empty(),
        "the request left: the reply may have been sent, so the record is not retried"
    );
    assert_eq!(world.sent_texts().await.len(), 1);
    let key = format!("{}#wamid.HANG1", world.conversation_id().await.as_str());
    let intent = world.intent(&key).await.expect("the intent is kept");
    assert_eq!(
        s(&intent, "state"),
        "unknown",
        "flagged for reconciliation by the status webhook"
    );
    assert_eq!(
        s(&world.message("wamid.HANG1").await.unwrap(), "reply_intent"),
        key,
        "the message stays covered by that reply"
    );

    // SQS redelivers the record anyway (say the batch response was lost): nothing is resent.
    let redelivered = invoke(
        &world.processor,
        event(vec![record("hang-again", &envelope)]),
    )
    .await;

    assert!(failures(&redelivered).is_empty());
    assert_eq!(world.sent_texts().await.len(), 1, "no second reply");
}

#[tokio::test]
async fn a_model_that_hangs_is_cut_off_six_seconds_before_the_deadline_and_the_record_is_left_for_redelivery()
 {
    let world = spawn_world(Options {
        grok_key: true,
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("Too late.", "grok-test"))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&world.grok)
        .await;
    let envelope = envelopes_of(&meta_text("wamid.SLOWAI1", "Are you there?")).remove(0);
    let time_left = Duration::from_secs(9);
    let started = Instant::now();

    let response = invoke_with_time_left(
        &world.processor,
        event(vec![record("slow-ai", &envelope)]),
        time_left,
    )
    .await;

    let took = started.elapsed();
    let calls = world.grok.received_requests().await.unwrap_or_default();
    assert_eq!(calls.len(), 1, "the model was asked once, and waited for");
    let cut_off_at = time_left - LLM_RESERVE;
    assert!(
        took >= cut_off_at - Duration::from_secs(1) && took < cut_off_at + Duration::from_secs(1),
        "the model call was given up at the deadline − {LLM_RESERVE:?}: returned after {took:?}"
    );
    assert_eq!(
        failures(&response),
        vec!["slow-ai".to_owned()],
        "no reply was made, so the record is redelivered"
    );
    assert!(world.message("wamid.SLOWAI1").await.is_some(), "stored");
    assert!(world.sent_texts().await.is_empty(), "nothing sent");
}
