//! Coverage is decided per message: a reply marks every message it answers when it begins, so
//! redeliveries are skipped exactly when a reply covers them.

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    CUSTOMER, Options, build_processor, completion, envelopes_of, event, failures, invoke,
    meta_texts, now, record, spawn_world,
};
use integration_tests::switching_store::SwitchingStore;
use serde_json::Value;
use serde_json::json;
use shared::conversations::processor::ProcessorSettings;
use std::time::Duration;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

#[tokio::test]
async fn a_message_sharing_its_second_with_an_answered_one_is_answered_on_redelivery_after_a_released_attempt()
 {
    let world = spawn_world(Options::default()).await;
    let t = now();
    let first = envelopes_of(&meta_texts(&[("wamid.SAME1", CUSTOMER, "Hi", t)])).remove(0);
    let second =
        envelopes_of(&meta_texts(&[("wamid.SAME2", CUSTOMER, "Open today?", t)])).remove(0);
    let answered = invoke(&world.processor, event(vec![record("s1", &first)])).await;
    assert!(failures(&answered).is_empty());

    // Kapso's rate limit on the second message's reply: certainly not sent, so released.
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
    let throttled = invoke(&world.processor, event(vec![record("s2", &second)])).await;
    assert_eq!(failures(&throttled), ["s2"]);
    assert!(
        !world
            .message("wamid.SAME2")
            .await
            .unwrap()
            .contains_key("reply_intent"),
        "a released reply leaves no coverage behind"
    );

    let redelivered = invoke(&world.processor, event(vec![record("s2-again", &second)])).await;

    assert!(failures(&redelivered).is_empty());
    assert_eq!(
        world.sent_texts().await.len(),
        3,
        "one reply each, plus the throttled attempt"
    );
    assert!(!s(&world.message("wamid.SAME2").await.unwrap(), "reply_intent").is_empty());
}

#[tokio::test]
async fn a_crash_between_send_and_record_never_leads_to_a_second_reply_whatever_the_redelivered_batches()
 {
    let world = spawn_world(Options::default()).await;
    let store = SwitchingStore::new(world.store.clone()).await;
    let processor = build_processor(
        &world.stack,
        store.clone(),
        &world.whatsapp.uri(),
        ProcessorSettings::default(),
        &world.stack.aws,
    );
    let t = now();
    let burst = envelopes_of(&meta_texts(&[
        ("wamid.CRASH1", CUSTOMER, "I ordered shoes", t - 1),
        ("wamid.CRASH2", CUSTOMER, "where are they?", t),
    ]));
    // The reply to the burst is sent, and then recording it fails (the crash, as the store sees it).
    store.poison("wamid.CRASH2");
    store.cure_inbound_only();
    let crashed = invoke(
        &processor,
        event(vec![record("c1", &burst[0]), record("c2", &burst[1])]),
    )
    .await;
    assert!(!failures(&crashed).is_empty());
    assert_eq!(world.sent_texts().await.len(), 1);

    // Redelivered one by one, in other batches: each message is covered already.
    store.cure_all();
    for (id, envelope) in [("c1-again", &burst[0]), ("c2-again", &burst[1])] {
        let response = invoke(&processor, event(vec![record(id, envelope)])).await;
        assert!(failures(&response).is_empty());
    }

    assert_eq!(world.sent_texts().await.len(), 1, "exactly one reply");
}

/// The model answers at once, except for a request whose newest message is `slow_text`.
struct SlowFor {
    slow_text: &'static str,
}

impl Respond for SlowFor {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let newest = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["content"].clone())
            .unwrap_or(Value::Null);
        let answer = ResponseTemplate::new(200).set_body_json(completion("Noted.", "grok-test"));
        if newest == self.slow_text {
            answer.set_delay(Duration::from_millis(1500))
        } else {
            answer
        }
    }
}

#[tokio::test]
async fn a_burst_whose_first_message_a_racing_reply_took_still_gets_a_reply_for_the_rest() {
    let world = spawn_world(Options {
        grok_key: true,
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(SlowFor {
            slow_text: "And do you deliver?",
        })
        .mount(&world.grok)
        .await;
    let t = now();
    let payload = meta_texts(&[
        ("wamid.BURST1", CUSTOMER, "Are you open?", t),
        ("wamid.BURST2", CUSTOMER, "And do you deliver?", t + 1),
    ]);
    let envelopes = envelopes_of(&payload);

    // A answers the burst of both, slowly; meanwhile B (a redelivery of the first message alone,
    // say after a visibility timeout) answers the first one and covers it first.
    let a = invoke(
        &world.processor,
        event(vec![
            record("a1", &envelopes[0]),
            record("a2", &envelopes[1]),
        ]),
    );
    let b = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        invoke(&world.processor, event(vec![record("b1", &envelopes[0])])).await
    };
    let (a, b) = tokio::join!(a, b);

    assert!(failures(&a).is_empty() && failures(&b).is_empty());
    let first = world.message("wamid.BURST1").await.unwrap();
    let conversation = s(&first, "conversation_id").to_owned();
    assert_eq!(
        s(
            &world.message("wamid.BURST1").await.unwrap(),
            "reply_intent"
        ),
        format!("{conversation}#wamid.BURST1"),
        "B's reply covers the first message"
    );
    assert_eq!(
        s(
            &world.message("wamid.BURST2").await.unwrap(),
            "reply_intent"
        ),
        format!("{conversation}#wamid.BURST2"),
        "A's reply covers the second, which B's did not"
    );
    assert_eq!(
        world.sent_texts().await.len(),
        2,
        "one reply each, none twice"
    );
}
