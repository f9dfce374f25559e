//! Scheduled runs: every due reminder sent exactly once, failures retried, refused or flagged.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use shared::reminders::model::{ReminderChannel, ReminderStatus};
use shared::reminders::run::RunSettings;
use shared::reminders::store::{Cancelled, ReminderQueue, ReminderStore};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[test]
fn the_fast_settings_stop_claiming_with_room_for_a_send_attempt_and_its_record() {
    let settings = fast_run_settings();
    let needed = settings.record_margin
        + integration_tests::reminders::CONNECT_TIMEOUT
        + shared::whatsapp::MIN_ATTEMPT_TIME;
    assert!(
        settings.stop_claiming_before >= needed,
        "stop_claiming_before {:?} < {needed:?}: a claimed reminder could never be sent",
        settings.stop_claiming_before
    );
}

#[tokio::test]
async fn a_thousand_due_reminders_across_workspaces_are_each_sent_exactly_once_across_short_runs() {
    let _turn = HEAVY.lock().await;
    let world = spawn_world(4).await;
    world.answer_everything().await;
    let now = OffsetDateTime::now_utc();
    let reminders: Vec<_> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let (ws, pn) = &world.workspaces[i % 4];
            let channel = if i % 2 == 0 {
                template_channel(pn)
            } else {
                email_channel()
            };
            let due = now - time::Duration::seconds(i as i64);
            let world = &world;
            async move { world.reminder_at(ws, channel, due).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let runner = world.runner(RunSettings {
        concurrency: 8,
        page_size: 25,
        ..fast_run_settings()
    });
    let mut runs = 0;
    let mut sent = 0;
    let started = std::time::Instant::now();
    while sent < 1000 && started.elapsed() < Duration::from_secs(300) {
        let summary = run_for(&runner, 2.0).await;
        assert_eq!(
            summary.failed + summary.review + summary.errors,
            0,
            "{summary:?}"
        );
        sent += summary.sent;
        runs += 1;
    }
    assert_eq!(sent, 1000);
    assert!(
        runs > 1,
        "a run with a 2 s deadline should not send all 1,000"
    );
    eprintln!(
        "1,000 reminders sent in {runs} runs, {:?}",
        started.elapsed()
    );

    let whatsapp = world.whatsapp_sends().await;
    let emails = world.emails().await;
    for r in &reminders {
        let times = match r.channel {
            ReminderChannel::Email { .. } => emails
                .get(&format!("reminder-{}", r.id))
                .map_or(0, Vec::len),
            _ => whatsapp.get(r.id.as_str()).map_or(0, Vec::len),
        };
        assert_eq!(times, 1, "reminder {} sent {times} times", r.id);
    }
    assert_eq!(whatsapp.values().map(Vec::len).sum::<usize>(), 500);
    assert_eq!(emails.values().map(Vec::len).sum::<usize>(), 500);
    // One more run finds nothing: the due index is empty.
    let summary = run_for(&runner, 5.0).await;
    assert_eq!((summary.claimed, summary.sent), (0, 0));
}

#[tokio::test]
async fn two_concurrent_runs_over_the_same_due_set_send_each_reminder_once() {
    let _turn = HEAVY.lock().await;
    let world = spawn_world(2).await;
    // A slow API keeps both runs in flight over the same reminders.
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(integration_tests::processor::cloud_api())
        .mount(&world.whatsapp)
        .await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let (ws, pn) = &world.workspaces[i % 2];
        let r = world
            .reminder_at(ws, template_channel(pn), OffsetDateTime::now_utc())
            .await;
        ids.push(r.id);
    }
    let a = world.runner(fast_run_settings());
    let b = world.runner(fast_run_settings());
    let (sa, sb) = tokio::join!(run_for(&a, 20.0), run_for(&b, 20.0));
    assert_eq!(sa.sent + sb.sent, 60, "{sa:?} {sb:?}");
    assert_eq!(sa.claimed + sb.claimed, 60);
    let sends = world.whatsapp_sends().await;
    assert_eq!(sends.values().map(Vec::len).sum::<usize>(), 60);
    for id in &ids {
        assert_eq!(sends[id.as_str()].len(), 1, "{id}");
    }
}

#[tokio::test]
async fn a_throttled_send_goes_back_to_pending_with_backoff_and_is_sent_by_a_later_run() {
    let world = spawn_world(1).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "error": { "code": 130429, "message": "Rate limit hit" }
        })))
        .up_to_n_times(1)
        .mount(&world.whatsapp)
        .await;
    world.answer_everything().await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    let runner = world.runner(RunSettings {
        backoff_first: Duration::from_secs(1),
        ..fast_run_settings()
    });

    let first = run_for(&runner, 5.0).await;
    assert_eq!((first.claimed, first.sent, first.deferred), (1, 0, 1));
    let after_first = world.get(&r.id).await;
    assert_eq!(after_first.status, ReminderStatus::Pending);
    assert_eq!(after_first.attempts, 1);
    assert!(
        after_first.due_at > r.due_at,
        "due_at moves on by the backoff"
    );
    assert!(after_first.last_error.unwrap().contains("130429"));

    // Not due yet: a run straight away leaves it alone.
    let early = run_for(&runner, 5.0).await;
    assert_eq!(early.claimed, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = run_for(&runner, 5.0).await;
    assert_eq!(second.sent, 1);
    let sent = world.get(&r.id).await;
    assert_eq!(sent.status, ReminderStatus::Sent);
    assert_eq!(sent.attempts, 2);
    assert!(sent.result_id.unwrap().starts_with("wamid."));
    assert_eq!(world.whatsapp.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_non_retryable_error_fails_the_reminder_at_once_with_the_reason() {
    let world = spawn_world(1).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "code": 132001, "message": "Template name does not exist in the translation" }
        })))
        .mount(&world.whatsapp)
        .await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    let summary = run_for(&world.runner(fast_run_settings()), 5.0).await;
    assert_eq!((summary.claimed, summary.failed), (1, 1));
    let failed = world.get(&r.id).await;
    assert_eq!(failed.status, ReminderStatus::Failed);
    assert_eq!(failed.attempts, 1);
    assert!(failed.last_error.unwrap().contains("132001"));
    // Failed reminders leave the due index: the next run sends nothing more.
    run_for(&world.runner(fast_run_settings()), 5.0).await;
    assert_eq!(world.whatsapp.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_reminder_that_keeps_failing_retryably_fails_when_its_attempts_run_out() {
    let world = spawn_world(1).await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "statusCode": 503, "name": "internal_server_error", "message": "down"
        })))
        .mount(&world.resend)
        .await;
    let r = world.due_reminder(email_channel()).await;
    let runner = world.runner(RunSettings {
        max_attempts: 3,
        ..fast_run_settings()
    });
    for _ in 0..3 {
        run_for(&runner, 5.0).await;
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    let failed = world.get(&r.id).await;
    assert_eq!(failed.status, ReminderStatus::Failed);
    assert_eq!(failed.attempts, 3);
    assert!(
        failed
            .last_error
            .unwrap()
            .contains("gave up after 3 attempts")
    );
    run_for(&runner, 5.0).await;
    let emails = world.emails().await;
    let tries = &emails[&format!("reminder-{}", r.id)];
    assert_eq!(
        tries.len(),
        3,
        "every attempt carried the same idempotency key"
    );
}

#[tokio::test]
async fn a_reminder_cancelled_before_the_run_is_not_sent_and_a_sent_one_cannot_be_cancelled() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    let cancelled = world.due_reminder(template_channel(world.pn())).await;
    let kept = world.due_reminder(template_channel(world.pn())).await;
    let now = OffsetDateTime::now_utc();
    let outcome = world
        .store
        .cancel_reminder(world.ws(), &cancelled.id, now)
        .await
        .unwrap();
    assert!(matches!(outcome, Cancelled::Cancelled(r) if r.status == ReminderStatus::Cancelled));

    let summary = run_for(&world.runner(fast_run_settings()), 5.0).await;
    assert_eq!(summary.sent, 1);
    let sends = world.whatsapp_sends().await;
    assert!(!sends.contains_key(cancelled.id.as_str()));
    assert_eq!(sends[kept.id.as_str()].len(), 1);
    let again = world
        .store
        .cancel_reminder(world.ws(), &kept.id, now)
        .await
        .unwrap();
    assert_eq!(again, Cancelled::NotPending(ReminderStatus::Sent));
}

fn text_channel(world: &World, fallback: bool) -> ReminderChannel {
    ReminderChannel::WhatsappText {
        phone_number_id: world.pn().clone(),
        body: "Your table is ready".into(),
        fallback: fallback.then(|| template("table_ready")),
    }
}

#[tokio::test]
async fn a_text_reminder_inside_the_window_is_sent_as_text() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    world
        .contact(
            false,
            Some(OffsetDateTime::now_utc() - time::Duration::hours(2)),
        )
        .await;
    let r = world.due_reminder(text_channel(&world, true)).await;
    run_for(&world.runner(fast_run_settings()), 5.0).await;
    let sends = world.whatsapp_sends().await;
    assert_eq!(sends[r.id.as_str()][0]["type"], "text");
    assert_eq!(
        sends[r.id.as_str()][0]["text"]["body"],
        "Your table is ready"
    );
}

#[tokio::test]
async fn a_text_reminder_outside_the_window_falls_back_to_its_template() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    world
        .contact(
            false,
            Some(OffsetDateTime::now_utc() - time::Duration::hours(25)),
        )
        .await;
    let r = world.due_reminder(text_channel(&world, true)).await;
    run_for(&world.runner(fast_run_settings()), 5.0).await;
    let sends = world.whatsapp_sends().await;
    let body = &sends[r.id.as_str()][0];
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "table_ready");
    assert_eq!(world.get(&r.id).await.status, ReminderStatus::Sent);
}

#[tokio::test]
async fn a_text_reminder_outside_the_window_without_a_template_fails_clearly_unsent() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    world.contact(false, None).await;
    let r = world.due_reminder(text_channel(&world, false)).await;
    run_for(&world.runner(fast_run_settings()), 5.0).await;
    let failed = world.get(&r.id).await;
    assert_eq!(failed.status, ReminderStatus::Failed);
    assert!(failed.last_error.unwrap().contains("24-hour"));
    assert!(world.whatsapp.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_reminder_to_an_opted_out_contact_is_not_sent_and_says_why() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    world.contact(true, None).await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    let summary = run_for(&world.runner(fast_run_settings()), 5.0).await;
    assert_eq!(summary.failed, 1);
    let skipped = world.get(&r.id).await;
    assert_eq!(skipped.status, ReminderStatus::Failed);
    assert!(skipped.last_error.unwrap().starts_with("opted_out"));
    assert!(world.whatsapp.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_due_time_given_in_another_timezone_fires_at_its_utc_instant() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    // Two seconds from now, written in UTC+07:00.
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let local = at
        .replace_nanosecond(0)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap());
    let parsed = OffsetDateTime::parse(&local.format(&Rfc3339).unwrap(), &Rfc3339).unwrap();
    let r = world
        .reminder_at(world.ws(), template_channel(world.pn()), parsed)
        .await;
    assert_eq!(r.due_at.offset(), time::UtcOffset::UTC);
    assert_eq!(r.due_at, at.replace_nanosecond(0).unwrap());

    let runner = world.runner(fast_run_settings());
    assert_eq!(run_for(&runner, 5.0).await.sent, 0, "not due yet");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(run_for(&runner, 5.0).await.sent, 1);
    assert_eq!(world.get(&r.id).await.status, ReminderStatus::Sent);
}

#[tokio::test]
async fn a_claim_whose_run_died_mid_send_is_flagged_for_review_never_resent() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    // A run claims it and dies before recording anything.
    let now = OffsetDateTime::now_utc();
    let claimed = world
        .store
        .claim(&r, "run-dead", now, now + time::Duration::seconds(2))
        .await
        .unwrap();
    assert!(claimed.is_some());
    let runner = world.runner(fast_run_settings());
    let live = run_for(&runner, 5.0).await;
    assert_eq!(
        (live.claimed, live.review),
        (0, 0),
        "the lease is still live"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = run_for(&runner, 5.0).await;
    assert_eq!((after.claimed, after.sent, after.review), (0, 0, 1));
    let flagged = world.get(&r.id).await;
    assert_eq!(flagged.status, ReminderStatus::Sending);
    assert!(flagged.review.unwrap().contains("not sent again"));
    assert!(world.whatsapp.received_requests().await.unwrap().is_empty());
    // Out of the due index: later runs do not look at it again.
    assert_eq!(run_for(&runner, 5.0).await.review, 0);
}

#[tokio::test]
async fn a_whatsapp_send_that_times_out_is_flagged_for_review_not_retried() {
    let world = spawn_world(1).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&world.whatsapp)
        .await;
    let r = world.due_reminder(template_channel(world.pn())).await;
    let summary = run_for(&world.runner(fast_run_settings()), 6.0).await;
    assert_eq!((summary.claimed, summary.review), (1, 1));
    let flagged = world.get(&r.id).await;
    assert_eq!(flagged.status, ReminderStatus::Sending);
    assert!(flagged.review.is_some());
    run_for(&world.runner(fast_run_settings()), 5.0).await;
    assert_eq!(world.whatsapp.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_email_reminder_goes_through_resend_with_the_key_and_an_idempotency_key() {
    let world = spawn_world(1).await;
    world.answer_everything().await;
    let r = world.due_reminder(email_channel()).await;
    assert_eq!(
        run_for(&world.runner(fast_run_settings()), 5.0).await.sent,
        1
    );
    let emails = world.emails().await;
    let request = &emails[&format!("reminder-{}", r.id)][0];
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        "Bearer re_test_key"
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["to"], json!(["ana@example.com"]));
    assert_eq!(body["subject"], "Your appointment");
    let sent = world.get(&r.id).await;
    assert!(sent.result_id.unwrap().starts_with("email-"));
    let ids: HashSet<_> = emails.keys().collect();
    assert_eq!(ids.len(), 1);
}
