//! Batch failure semantics: a failed record holds back the rest of its group only, records
//! that cannot be processed are dropped or dead-lettered, and nothing loops forever.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    CUSTOMER, Options, World, build_processor, envelopes_of, event, failures, invoke, meta_text,
    meta_texts, now, record, spawn_world,
};
use integration_tests::switching_store::SwitchingStore;
use integration_tests::unique_name;
use local_stack::bridge::PumpReport;
use serde_json::json;
use shared::adapters::dynamo;
use shared::conversations::model::AiConfig;
use shared::conversations::processor::ProcessorSettings;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

const OTHER_CUSTOMER: &str = "16505559876";

/// Messages on `queue_url`, visible or in flight.
async fn messages_on(world: &World, queue_url: &str) -> usize {
    let attributes = world
        .stack
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|count| count.parse::<usize>().unwrap())
        .sum()
}

/// Every item's partition key in the world's table.
async fn partition_keys(world: &World) -> Vec<String> {
    aws_sdk_dynamodb::Client::new(&world.stack.aws)
        .scan()
        .table_name(world.store.table())
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .iter()
        .map(|item| item["pk"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn a_dynamodb_failure_mid_batch_fails_that_record_and_the_rest_of_its_group_but_not_other_groups_and_the_retry_loses_nothing()
 {
    // AI off: this is about storage, not replies.
    let world = spawn_world(Options {
        ai: AiConfig {
            enabled: false,
            ..AiConfig::default()
        },
        ..Options::default()
    })
    .await;
    let store = SwitchingStore::new(world.store.clone()).await;
    let processor = build_processor(
        &world.stack,
        store.clone(),
        &world.whatsapp.uri(),
        ProcessorSettings::default(),
        &world.stack.aws,
    );
    let t = now();
    let envelopes = envelopes_of(&meta_texts(&[
        ("wamid.A1", CUSTOMER, "I ordered a jacket", t - 3),
        ("wamid.A2", CUSTOMER, "in size M", t - 2),
        ("wamid.A3", CUSTOMER, "where is it?", t - 1),
        ("wamid.B1", OTHER_CUSTOMER, "Hello", t),
    ]));
    assert_eq!(envelopes.len(), 4);
    let (a1, a2, a3, b1) = (
        record("a1", &envelopes[0]),
        record("a2", &envelopes[1]),
        record("a3", &envelopes[2]),
        record("b1", &envelopes[3]),
    );
    assert_ne!(
        a1.attributes["MessageGroupId"],
        b1.attributes["MessageGroupId"]
    );
    store.poison("wamid.A2");

    let response = invoke(&processor, event(vec![a1, a2.clone(), b1, a3.clone()])).await;

    let mut failed = failures(&response);
    failed.sort();
    assert_eq!(failed, ["a2", "a3"]);
    assert!(world.message("wamid.A1").await.is_some());
    assert!(world.message("wamid.B1").await.is_some());
    assert!(world.message("wamid.A2").await.is_none());
    assert!(world.message("wamid.A3").await.is_none());

    store.cure_all();
    let retry = invoke(&processor, event(vec![a2, a3])).await;

    assert!(failures(&retry).is_empty(), "{:?}", failures(&retry));
    for wamid in ["wamid.A1", "wamid.A2", "wamid.A3", "wamid.B1"] {
        assert!(world.message(wamid).await.is_some(), "{wamid} stored");
    }
}

#[tokio::test]
async fn an_unknown_phone_number_id_is_dropped_without_an_error_loop() {
    let world = spawn_world(Options::default()).await;
    let mut payload = meta_text("wamid.NOBODY1", "Hello?");
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] =
        "999999999999999".into();
    world.deliver_meta(&payload).await;

    let report = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(
        report,
        PumpReport {
            received: 1,
            failed: 0,
            deleted: 1
        }
    );
    assert_eq!(messages_on(&world, world.stack.queue_url()).await, 0);
    let stored = partition_keys(&world).await;
    assert!(
        stored
            .iter()
            .all(|pk| pk.starts_with("WS#") || pk.starts_with("PN#")),
        "only the seeded workspace and integration: {stored:?}"
    );
}

#[tokio::test]
async fn a_record_that_keeps_failing_for_a_reason_that_may_pass_ends_in_the_dead_letter_queue_after_max_receive_count()
 {
    let world = spawn_world(Options::default()).await;
    // Kapso's own rate limit, every time: the reply is certainly not sent, so the record is
    // retried rather than acknowledged.
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "60")
                .set_body_json(json!({ "error": "Rate limit exceeded" })),
        )
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    let queue_url = world.stack.queue_url();
    let dead_letter_url = &world.stack.provisioned.queues["EventsDeadLetterQueue"].url;
    // Redeliver after one second instead of the template's three minutes.
    world
        .stack
        .sqs
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    world
        .deliver_meta(&meta_text("wamid.ALWAYS429", "Hello?"))
        .await;

    let bridge = world.bridge();
    let mut failed = 0;
    for _ in 0..8 {
        let report = bridge.pump_once(0).await.unwrap();
        assert_eq!(report.deleted, 0, "the bridge never deletes it: {report:?}");
        assert_eq!(
            report.failed, report.received,
            "every receipt fails: {report:?}"
        );
        failed += report.failed;
        if messages_on(&world, queue_url).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }

    assert_eq!(
        messages_on(&world, queue_url).await,
        0,
        "gone from the main queue"
    );
    assert_eq!(
        failed, 5,
        "failed once per receive, up to the template's maxReceiveCount"
    );
    let dead_letters = world
        .stack
        .sqs
        .receive_message()
        .queue_url(dead_letter_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead_letters.len(), 1);
    assert!(
        dead_letters[0]
            .body()
            .is_some_and(|b| b.contains("wamid.ALWAYS429"))
    );
    assert!(
        world.message("wamid.ALWAYS429").await.is_some(),
        "the message itself is stored"
    );
}

#[tokio::test]
async fn a_record_that_is_not_an_envelope_is_kept_as_a_failed_event_and_acknowledged_at_once() {
    let world = spawn_world(Options::default()).await;
    let queue_url = world.stack.queue_url();
    let sent = world
        .stack
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body("not an envelope")
        .message_group_id("poison")
        .message_deduplication_id(unique_name("poison"))
        .send()
        .await
        .unwrap();

    let report = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(
        report,
        PumpReport {
            received: 1,
            failed: 0,
            deleted: 1
        }
    );
    assert_eq!(messages_on(&world, queue_url).await, 0);
    let kept = world
        .store
        .raw_item(dynamo::failed_key(&format!(
            "sqs:{}",
            sent.message_id().unwrap()
        )))
        .await
        .unwrap()
        .expect("the failed record is kept");
    assert_eq!(s(&kept, "body"), "not an envelope");
    assert!(s(&kept, "reason").contains("not an envelope"), "{kept:?}");
}
