//! The local stand-in for EventBridge Scheduler: it fires the `reminders` function on a short
//! tick (`REMINDERS_TICK_SECONDS`, default 5) with the scheduled-event payload the template's
//! schedule sends (`template.yaml`, `RemindersFunction.Events.Tick.Input`), through `cargo lambda
//! watch`'s invoke endpoint, as Lambda's own Invoke API would. One run at a time: a tick that
//! comes while a run is still going waits for it (like a schedule whose run outlasts the rate,
//! overlapping runs would be safe too: claims send each reminder once).

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The tick when `REMINDERS_TICK_SECONDS` is not set.
pub const DEFAULT_TICK: Duration = Duration::from_secs(5);
/// The function's name under `cargo lambda watch` (its binary).
pub const FUNCTION: &str = "reminders";
const ACCOUNT: &str = "000000000000";
const SCHEDULE_ARN: &str = "arn:aws:scheduler:us-east-1:000000000000:schedule/default/whatsapp-local-RemindersFunctionTick";

/// The tick from `REMINDERS_TICK_SECONDS` (whole seconds, at least 1).
pub fn tick_from_env() -> anyhow::Result<Duration> {
    tick_from(std::env::var("REMINDERS_TICK_SECONDS").ok().as_deref())
}

fn tick_from(raw: Option<&str>) -> anyhow::Result<Duration> {
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_TICK),
        Some(v) => {
            let seconds: u64 = v.parse().with_context(|| {
                format!("REMINDERS_TICK_SECONDS must be whole seconds, not {v:?}")
            })?;
            ensure!(seconds >= 1, "REMINDERS_TICK_SECONDS must be at least 1");
            Ok(Duration::from_secs(seconds))
        }
    }
}

/// The event of the `execution`-th tick, scheduled at `at`: what the function receives from
/// the deployed schedule (an EventBridge scheduled event, source `aws.scheduler`).
pub fn scheduled_event(execution: u64, at: OffsetDateTime) -> Value {
    let time = at
        .replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default();
    json!({
        "version": "0",
        "id": format!("local-{:08x}-{:012x}", execution, at.unix_timestamp()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": ACCOUNT,
        "time": time,
        "region": crate::LOCAL_REGION,
        "resources": [SCHEDULE_ARN],
        "detail": {}
    })
}

/// Fires the reminders function served at `watch_base_url` every `tick`, forever (abort the
/// task to stop it); `report` gets each run's summary, or why the invocation failed.
pub async fn run(
    watch_base_url: String,
    tick: Duration,
    report: impl Fn(u64, anyhow::Result<Value>) + Send + 'static,
) {
    let url = format!("{watch_base_url}/2015-03-31/functions/{FUNCTION}/invocations");
    let client = reqwest::Client::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut execution = 0u64;
    loop {
        interval.tick().await;
        execution += 1;
        let event = scheduled_event(execution, OffsetDateTime::now_utc());
        report(execution, invoke(&client, &url, &event).await);
    }
}

async fn invoke(client: &reqwest::Client, url: &str, event: &Value) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .json(event)
        // The first invocation may wait for `cargo lambda watch` to start the function.
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .context("invoking the reminders function")?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(status.is_success(), "invoke returned {status}: {body}");
    let summary: Value =
        serde_json::from_str(&body).with_context(|| format!("not a run summary: {body}"))?;
    ensure!(
        summary.get("errorType").is_none(),
        "the run failed: {summary}"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::eventbridge::EventBridgeEvent;

    #[test]
    fn the_tick_is_five_seconds_unless_configured_and_never_zero() {
        assert_eq!(tick_from(None).unwrap(), Duration::from_secs(5));
        assert_eq!(tick_from(Some("")).unwrap(), Duration::from_secs(5));
        assert_eq!(tick_from(Some("2")).unwrap(), Duration::from_secs(2));
        assert!(tick_from(Some("0")).is_err());
        assert!(tick_from(Some("1.5")).is_err());
    }

    #[test]
    fn the_tick_event_is_a_scheduled_event_as_the_deployed_schedule_sends_it() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let event = scheduled_event(7, at);
        let parsed: EventBridgeEvent<Value> = serde_json::from_value(event.clone()).unwrap();
        assert_eq!(parsed.detail_type, "Scheduled Event");
        assert_eq!(parsed.source, "aws.scheduler");
        assert_eq!(
            parsed.resources.as_deref(),
            Some(&[SCHEDULE_ARN.to_owned()][..])
        );
        assert_eq!(event["time"], "2026-11-18T11:06:40Z");
        assert_eq!(parsed.detail, json!({}));
        // Each execution has its own id, as Scheduler's `<aws.scheduler.execution-id>`.
        assert_ne!(scheduled_event(8, at)["id"], event["id"]);
        // The same keys as the template's `Input`, plus the account and region EventBridge adds.
        let template = crate::paths::template();
        let input = std::fs::read_to_string(template).unwrap();
        for key in [
            "\"version\"",
            "\"detail-type\"",
            "\"source\":\"aws.scheduler\"",
            "\"resources\"",
            "\"detail\":{}",
        ] {
            assert!(
                input.contains(key),
                "the template's schedule input has {key}"
            );
        }
    }
}
