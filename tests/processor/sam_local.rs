//! The `events/` SQS fixture for `sam local invoke MessageProcessorFunction` is a real event
//! the function handles.

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{Options, failures, invoke, spawn_world};
use local_stack::paths;

#[tokio::test]
async fn the_sam_local_sqs_event_fixture_is_stored_by_the_handler() {
    let world = spawn_world(Options::default()).await;
    let raw =
        std::fs::read_to_string(paths::root().join("events/sqs-envelope-batch.json")).unwrap();
    let event = serde_json::from_str(&raw).expect("an SqsEvent");
    let response = invoke(&world.processor, event).await;
    assert!(failures(&response).is_empty());
    let message = world.message("wamid.SAMLOCAL0001").await.expect("stored");
    assert_eq!(s(&message, "text"), "Hello from sam local");
}
