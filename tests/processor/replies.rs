//! AI replies: one per burst, read receipt first, the router's provider and its metadata recorded.

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{CUSTOMER, Options, completion, meta_texts, now, spawn_world};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_reply_is_sent_after_a_read_receipt_and_stored_with_its_ai_metadata() {
    let world = spawn_world(Options::default()).await;
    world
        .deliver_meta(&integration_tests::processor::meta_text(
            "wamid.ASK1",
            "Are you open today?",
        ))
        .await;
    world.pump().await;

    let receipts = world.read_receipts().await;
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["message_id"], "wamid.ASK1");
    assert_eq!(receipts[0]["typing_indicator"]["type"], "text");

    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0]["to"], CUSTOMER);
    assert!(
        texts[0]["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .ends_with("#wamid.ASK1")
    );

    let reply = world
        .message("wamid.REPLY0001")
        .await
        .expect("reply stored");
    assert_eq!(s(&reply, "direction"), "outbound");
    assert_eq!(s(&reply, "status"), "sent");
    assert_eq!(
        s(&reply, "text"),
        texts[0]["text"]["body"].as_str().unwrap()
    );
    let ai = reply["ai"].as_m().unwrap();
    assert_eq!(
        ai["provider"].as_s().unwrap(),
        "offline",
        "no provider configured: offline responder"
    );
}

#[tokio::test]
async fn a_burst_of_three_messages_in_one_batch_gets_one_reply_that_sees_all_three() {
    let world = spawn_world(Options {
        sealion: true,
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("All three noted.", "sealion-test")),
        )
        .mount(&world.sealion)
        .await;
    let t = now();
    world
        .deliver_meta(&meta_texts(&[
            ("wamid.BURST1", CUSTOMER, "Hi", t - 2),
            ("wamid.BURST2", CUSTOMER, "I ordered a jacket", t - 1),
            ("wamid.BURST3", CUSTOMER, "Where is it?", t),
        ]))
        .await;
    world.pump().await;

    assert_eq!(world.sent_texts().await.len(), 1);
    let requests = world.sealion.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let user: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(user, ["Hi", "I ordered a jacket", "Where is it?"]);
    let reply = world.message("wamid.REPLY0001").await.unwrap();
    assert_eq!(s(&reply, "text"), "All three noted.");
    assert_eq!(
        reply["ai"].as_m().unwrap()["provider"].as_s().unwrap(),
        "sealion"
    );
    assert_eq!(
        reply["ai"].as_m().unwrap()["total_tokens"].as_n().unwrap(),
        "30"
    );
}

#[tokio::test]
async fn earlier_turns_of_the_conversation_are_the_ai_context() {
    let world = spawn_world(Options {
        sealion: true,
        ..Options::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Sure.", "sealion-test")))
        .mount(&world.sealion)
        .await;
    world
        .deliver_meta(&integration_tests::processor::meta_text(
            "wamid.TURN1",
            "My name is Sheena",
        ))
        .await;
    world.pump().await;
    world
        .deliver_meta(&integration_tests::processor::meta_text(
            "wamid.TURN2",
            "What is my name?",
        ))
        .await;
    world.pump().await;

    let requests = world.sealion.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    let turns: Vec<(String, String)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(turns[0].0, "system");
    assert_eq!(
        &turns[1..],
        &[
            ("user".to_owned(), "My name is Sheena".to_owned()),
            ("assistant".to_owned(), "Sure.".to_owned()),
            ("user".to_owned(), "What is my name?".to_owned()),
        ]
    );
}

#[tokio::test]
async fn grok_failing_with_a_server_error_fails_over_to_sealion() {
    let world = spawn_world(Options {
        grok_key: true,
        sealion: true,
        ..Options::default()
    })
    .await;
    // Weight 100: every contact is routed to Grok first.
    let mut ai = Options::default().ai;
    ai.grok_weight = 100;
    world
        .set_ai(&ai, shared::conversations::model::Provider::Meta)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&world.grok)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("From SEA-LION.", "sealion-test")),
        )
        .mount(&world.sealion)
        .await;
    world
        .deliver_meta(&integration_tests::processor::meta_text(
            "wamid.FAILOVER1",
            "hello",
        ))
        .await;
    world.pump().await;

    assert_eq!(world.grok.received_requests().await.unwrap().len(), 1);
    let reply = world
        .message("wamid.REPLY0001")
        .await
        .expect("a reply despite Grok failing");
    let ai = reply["ai"].as_m().unwrap();
    assert_eq!(ai["provider"].as_s().unwrap(), "sealion");
    assert_eq!(ai["failover_from"].as_s().unwrap(), "grok");
}

#[tokio::test]
async fn grok_timing_out_fails_over_to_sealion() {
    let world = spawn_world(Options {
        grok_key: true,
        sealion: true,
        ..Options::default()
    })
    .await;
    let mut ai = Options::default().ai;
    ai.grok_weight = 100;
    world
        .set_ai(&ai, shared::conversations::model::Provider::Meta)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late", "grok-3"))
                .set_delay(std::time::Duration::from_secs(60)),
        )
        .mount(&world.grok)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("From SEA-LION.", "sealion-test")),
        )
        .mount(&world.sealion)
        .await;
    world
        .deliver_meta(&integration_tests::processor::meta_text(
            "wamid.SLOWGROK",
            "hello",
        ))
        .await;
    world.pump().await;

    let reply = world
        .message("wamid.REPLY0001")
        .await
        .expect("a reply despite Grok timing out");
    assert_eq!(
        reply["ai"].as_m().unwrap()["provider"].as_s().unwrap(),
        "sealion"
    );
    assert_eq!(world.sent_texts().await.len(), 1);
}

#[tokio::test]
async fn a_second_message_in_the_same_second_as_an_answered_one_still_gets_its_own_reply() {
    let world = spawn_world(Options::default()).await;
    let t = now();
    world
        .deliver_meta(&meta_texts(&[("wamid.SAMESEC1", CUSTOMER, "First", t)]))
        .await;
    world.pump().await;
    world
        .deliver_meta(&meta_texts(&[("wamid.SAMESEC2", CUSTOMER, "Second", t)]))
        .await;
    world.pump().await;
    assert_eq!(
        world.sent_texts().await.len(),
        2,
        "Meta timestamps are whole seconds"
    );
}

#[tokio::test]
async fn a_redelivered_message_that_a_reply_already_covered_gets_no_second_reply() {
    let world = spawn_world(Options::default()).await;
    let t = now();
    let burst = meta_texts(&[
        ("wamid.COVER1", CUSTOMER, "One", t - 1),
        ("wamid.COVER2", CUSTOMER, "Two", t),
    ]);
    world.deliver_meta(&burst).await;
    world.pump().await;
    assert_eq!(world.sent_texts().await.len(), 1);
    // The burst's first message comes again later (not the trigger, so no intent guards it).
    let first = integration_tests::processor::envelopes_of(&burst).remove(0);
    let response = integration_tests::processor::invoke(
        &world.processor,
        integration_tests::processor::event(vec![integration_tests::processor::record(
            "again", &first,
        )]),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(world.sent_texts().await.len(), 1);
}
