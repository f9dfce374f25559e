//! The reminders function as Lambda runs it: a scheduled event in, one run, its summary out.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;
use shared::reminders::model::ReminderStatus;

use crate::helpers::*;

async fn invoke(
    world: &World,
    time_left: Duration,
) -> Result<shared::reminders::run::RunSummary, String> {
    let payload: EventBridgeEvent<Value> = serde_json::from_slice(&integration_tests::fixture(
        "eventbridge/scheduled-event.json",
    ))
    .expect("a scheduled event parses");
    let mut context = lambda_runtime::Context::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context.deadline = now + u64::try_from(time_left.as_millis()).unwrap();
    let event = lambda_runtime::LambdaEvent::new(payload, context);
    reminders::handle(Arc::new(world.runner(fast_run_settings())), event)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_scheduled_event_sends_the_due_reminders_and_returns_the_summary() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    let summary = invoke(&world, Duration::from_secs(10)).await.unwrap();
    assert_eq!((summary.claimed, summary.sent), (1, 1));
    assert_eq!(world.get(&r.id).await.status, ReminderStatus::Sent);
}

#[tokio::test]
async fn an_invocation_with_too_little_time_claims_nothing_and_leaves_it_for_the_next() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    // Less than the time a send needs (`stop_claiming_before`).
    let summary = invoke(&world, Duration::from_millis(200)).await.unwrap();
    assert_eq!(summary.claimed, 0);
    assert_eq!(world.get(&r.id).await.status, ReminderStatus::Pending);
    assert!(world.whatsapp.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_template_runs_the_function_on_a_retried_schedule_with_a_valid_configuration() {
    let template = integration_tests::template();
    let properties = template.properties("RemindersFunction").unwrap();
    let tick = &properties["Events"]["Tick"];
    assert_eq!(tick["Type"].as_str(), Some("ScheduleV2"));
    assert!(tick["Properties"]["RetryPolicy"]["MaximumRetryAttempts"].as_u64() > Some(0));
    assert_eq!(
        tick["Properties"]["DeadLetterConfig"]["Type"].as_str(),
        Some("SQS")
    );
    // Scheduler fills in its context attributes before it invokes the function.
    let input = tick["Properties"]["Input"]
        .as_str()
        .unwrap()
        .replace(
            "<aws.scheduler.execution-id>",
            "d1f7b4e2-5a6c-4f0e-9c3b-7a2d8e6f1b90",
        )
        .replace("<aws.scheduler.scheduled-time>", "2026-11-23T10:00:00Z")
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/tick",
        );
    let input: Value = serde_json::from_str(&input).unwrap();
    serde_json::from_value::<EventBridgeEvent<Value>>(input)
        .expect("the input is a scheduled event");

    let stack = integration_tests::spawn_stack().await;
    let env = template
        .function_env("RemindersFunction", &stack.provisioned)
        .unwrap();
    let pairs = env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let config = shared::reminders::config::RemindersConfig::from_env(
        &shared::config::Env::from_pairs(pairs),
    )
    .expect("a valid reminders configuration");
    assert_eq!(config.resend_base_url, "https://api.resend.com");
    assert!(config.settings.stop_claiming_before > config.whatsapp.request_timeout);
    // A claimed reminder always has time for an attempt: the client refuses one with less than
    // its connect timeout plus the least attempt time left.
    assert!(
        config.settings.stop_claiming_before
            >= config.settings.record_margin
                + config.whatsapp.connect_timeout
                + shared::whatsapp::MIN_ATTEMPT_TIME
    );
}
