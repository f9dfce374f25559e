//! A record that can never succeed is counted: the `PermanentFailure` metric is emitted as one
//! CloudWatch embedded-metric (EMF) line on stdout when the record is acknowledged.
//!
//! The processor runs in a child process, the test binary itself, so its stdout can be read as
//! CloudWatch would receive it (the test harness captures a test's own stdout).

use std::process::{Command, Stdio};

use integration_tests::moto_endpoint;
use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    Options, envelopes_of, event, failures, invoke, meta_text, record, spawn_world,
};
use serde_json::Value;
use shared::adapters::dynamo;

const CHILD: &str =
    "permanent_failure_metric::a_record_under_a_corrupt_ai_config_in_a_child_process";

/// Run by the test below in a child process: a workspace's AI config is corrupt, so its
/// customer's message can never be answered.
#[tokio::test]
#[ignore = "run in a child process by the PermanentFailure metric test"]
async fn a_record_under_a_corrupt_ai_config_in_a_child_process() {
    let world = spawn_world(Options::default()).await;
    world.corrupt_ai_config(&world.workspace).await;
    let envelope = envelopes_of(&meta_text("wamid.METRIC1", "Hello?")).remove(0);

    let response = invoke(&world.processor, event(vec![record("m-1", &envelope)])).await;

    assert!(failures(&response).is_empty(), "acknowledged");
    let kept = world
        .store
        .raw_item(dynamo::failed_key(envelope.event_id.as_ref()))
        .await
        .unwrap()
        .expect("kept as a failed event");
    assert!(s(&kept, "body").contains("wamid.METRIC1"));
}

#[test]
fn an_acknowledged_permanent_failure_emits_one_permanent_failure_metric_line() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MOTO_ENDPOINT", moto_endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child's scenario holds: {stdout}"
    );
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");

    let metrics: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.find('{').map(|start| &l[start..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|line| line.pointer("/_aws/CloudWatchMetrics").is_some())
        .collect();
    let permanent: Vec<&Value> = metrics
        .iter()
        .filter(|m| m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "PermanentFailure")
        .collect();
    assert_eq!(permanent.len(), 1, "one line: {metrics:?}");
    let line = permanent[0];
    assert_eq!(line["PermanentFailure"], 1);
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "WhatsAppBackend"
    );
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
        "Count"
    );
    assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 0);
}
