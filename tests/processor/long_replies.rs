//! An AI answer longer than one WhatsApp text reaches the customer whole: split into several
//! texts, sent in order under one intent, each stored, and never sent again on redelivery.

use integration_tests::processor::dynamo_item::{n, s};
use integration_tests::processor::{
    CloudApi, Options, cloud_api, completion, envelopes_of, event, failures, invoke, meta_text,
    record, spawn_world,
};
use serde_json::{Value, json};
use shared::conversations::model::Direction;
use shared::conversations::store::MessageStore;
use std::sync::atomic::{AtomicUsize, Ordering};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const WHATSAPP_TEXT_LIMIT: usize = 4096;

/// About 7,300 characters (and more bytes: the accents and dashes take two or three each) in
/// three paragraphs, the second longer than one text on its own, so it must be cut at a
/// sentence.
fn long_answer() -> String {
    let paragraph = |topic: &str, sentences: usize| {
        (1..=sentences)
            .map(|i| format!("Point {i} about {topic} — the café's order nº {i} is noted."))
            .collect::<Vec<_>>()
            .join(" ")
    };
    [
        paragraph("delivery", 20),
        paragraph("returns", 90),
        paragraph("sizes", 15),
    ]
    .join("\n\n")
}

/// Asserts that `parts`, in order, are `text` cut at whitespace: nothing but the whitespace at
/// the cuts is missing, and nothing is added, repeated or reordered.
fn assert_is_split_of(parts: &[String], text: &str) {
    let mut rest = text.trim_start();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            rest.starts_with(part.as_str()),
            "part {} continues the answer where part {i} ended",
            i + 1
        );
        rest = &rest[part.len()..];
        if i + 1 < parts.len() {
            assert!(
                rest.starts_with(char::is_whitespace),
                "part {} ends at whitespace",
                i + 1
            );
        }
        rest = rest.trim_start();
    }
    assert!(rest.is_empty(), "nothing is left out: {rest:?}");
}

#[tokio::test]
async fn an_ai_answer_longer_than_one_whatsapp_text_is_sent_in_order_as_several_texts_under_one_intent_and_never_resent()
 {
    let world = spawn_world(Options {
        grok_key: true,
        ..Options::default()
    })
    .await;
    let answer = long_answer();
    assert!(answer.chars().count() > WHATSAPP_TEXT_LIMIT);
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&answer, "grok-test")))
        .mount(&world.grok)
        .await;
    let payload = meta_text("wamid.LONG1", "Tell me everything about my order");
    world.deliver_meta(&payload).await;

    world.pump().await;

    let sends = world.sent_texts().await;
    assert!(
        sends.len() >= 2,
        "split into several texts: {}",
        sends.len()
    );
    let parts: Vec<String> = sends
        .iter()
        .map(|b| b["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            part.chars().count() <= WHATSAPP_TEXT_LIMIT,
            "part {} has {} characters",
            i + 1,
            part.chars().count()
        );
        assert!(
            part.ends_with('.'),
            "part {} ends at a sentence or paragraph, not mid-sentence: …{:?}",
            i + 1,
            part.chars()
                .skip(part.chars().count().saturating_sub(40))
                .collect::<String>()
        );
    }
    assert_is_split_of(&parts, &answer);

    // One intent: every part carries its key, and it lists every part's wamid in order.
    let key = sends[0]["biz_opaque_callback_data"]
        .as_str()
        .expect("callback data")
        .to_owned();
    assert!(key.ends_with("#wamid.LONG1"), "{key}");
    assert!(
        sends
            .iter()
            .all(|b| b["biz_opaque_callback_data"] == key.as_str())
    );
    let wamids: Vec<String> = (1..=parts.len())
        .map(|i| format!("wamid.REPLY{i:04}"))
        .collect();
    let intent = world.intent(&key).await.expect("the intent");
    assert_eq!(s(&intent, "state"), "sent");
    assert_eq!(n(&intent, "parts_sent"), Some(parts.len() as i64));
    let listed: Vec<String> = intent["wamids"]
        .as_l()
        .unwrap()
        .iter()
        .map(|w| w.as_s().unwrap().clone())
        .collect();
    assert_eq!(listed, wamids);

    // Every part is stored as an outbound message of the conversation, with its own text.
    let conversation = world.conversation_id().await;
    let mut stored: Vec<(String, String)> = world
        .store
        .history(&conversation, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .map(|m| (m.wamid.as_str().to_owned(), m.text.unwrap_or_default()))
        .collect();
    stored.sort();
    let expected: Vec<(String, String)> = wamids.into_iter().zip(parts.clone()).collect();
    assert_eq!(stored, expected);

    // A redelivery of the question sends nothing more.
    let envelope = envelopes_of(&payload).remove(0);
    let again = invoke(
        &world.processor,
        event(vec![record("long-again", &envelope)]),
    )
    .await;

    assert!(failures(&again).is_empty());
    assert_eq!(world.sent_texts().await.len(), parts.len());
    assert_eq!(world.grok.received_requests().await.unwrap().len(), 1);
}

/// The WhatsApp fake, except that the second text it is sent is refused with Kapso's rate limit
/// and a `Retry-After` far beyond the invocation's deadline.
struct SecondTextThrottled {
    api: CloudApi,
    texts: AtomicUsize,
}

impl Respond for SecondTextThrottled {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if body["type"] == "text" && self.texts.fetch_add(1, Ordering::SeqCst) == 1 {
            return ResponseTemplate::new(429)
                .insert_header("retry-after", "60")
                .set_body_json(json!({ "error": "Rate limit exceeded" }));
        }
        self.api.respond(request)
    }
}

#[tokio::test]
async fn a_later_part_throttled_past_the_deadline_is_sent_with_the_rest_on_redelivery_after_the_parts_already_sent_and_never_twice()
 {
    let world = spawn_world(Options {
        grok_key: true,
        ..Options::default()
    })
    .await;
    let answer = long_answer();
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&answer, "grok-test")))
        .mount(&world.grok)
        .await;
    Mock::given(method("POST"))
        .respond_with(SecondTextThrottled {
            api: cloud_api(),
            texts: AtomicUsize::new(0),
        })
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let envelope = envelopes_of(&meta_text("wamid.LONG2", "Tell me everything")).remove(0);

    let first = invoke(&world.processor, event(vec![record("long-1", &envelope)])).await;

    assert_eq!(
        failures(&first),
        vec!["long-1".to_owned()],
        "the record fails, so SQS redelivers it"
    );
    let tried = world.sent_texts().await;
    assert_eq!(tried.len(), 2, "part 1 sent, part 2 throttled");
    let key = tried[0]["biz_opaque_callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    let interrupted = world.intent(&key).await.expect("the intent");
    assert_eq!(s(&interrupted, "state"), "interrupted");
    assert_eq!(n(&interrupted, "parts_sent"), Some(1));

    // The redelivery sends the rest of the same answer, from part 2, without asking the model
    // again.
    let second = invoke(&world.processor, event(vec![record("long-2", &envelope)])).await;

    assert!(failures(&second).is_empty(), "{:?}", failures(&second));
    let sends: Vec<String> = world
        .sent_texts()
        .await
        .iter()
        .map(|b| b["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    let mut parts = sends.clone();
    parts.remove(1); // the throttled request
    assert_eq!(
        sends[1], sends[2],
        "part 2 is sent again after its throttled try"
    );
    assert_is_split_of(&parts, &answer);
    assert_eq!(world.grok.received_requests().await.unwrap().len(), 1);
    let settled = world.intent(&key).await.expect("the intent");
    assert_eq!(s(&settled, "state"), "sent");
    assert_eq!(n(&settled, "parts_sent"), Some(parts.len() as i64));
    let conversation = world.conversation_id().await;
    let stored = world
        .store
        .history(&conversation, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .count();
    assert_eq!(stored, parts.len(), "each part stored once");

    // A further redelivery sends nothing.
    let third = invoke(&world.processor, event(vec![record("long-3", &envelope)])).await;

    assert!(failures(&third).is_empty());
    assert_eq!(world.sent_texts().await.len(), sends.len());
}
