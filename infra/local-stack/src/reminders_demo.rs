//! `infra/demo reminders`: the stack's scheduler fires the `reminders` function every tick;
//! this variant schedules a reminder due now through the send API and shows the next run send it
//! once: status `sent`, its wamid, and the one request the WhatsApp stand-in received; then an
//! email reminder, sent through the Resend stand-in.

use std::time::Duration;

use anyhow::{Context, ensure};
use local_stack::scheduler;
use local_stack::token::TokenSpec;
use local_stack::watch::LambdaWatch;
use serde_json::{Value, json};
use shared::conversations::store::ContactStore;
use shared::ids::{PhoneNumberId, WaId, WorkspaceId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{CUSTOMER, PHONE_NUMBER_ID, WORKSPACE, detail, start_stack, step, wait_for};

/// Starts the scheduler's ticks against the functions `watch` serves; runs that claimed
/// something, and failures, are shown. The tick it fires on.
pub(crate) fn start_ticks(watch: &LambdaWatch) -> anyhow::Result<Duration> {
    let tick = scheduler::tick_from_env()?;
    tokio::spawn(scheduler::run(watch.base_url(), tick, |n, run| match run {
        Ok(summary) if summary["claimed"].as_u64().unwrap_or(0) > 0 => println!(
            "    [scheduler] tick {n} -> reminders: claimed {}, sent {}, failed {}, deferred {}, review {}",
            summary["claimed"],
            summary["sent"],
            summary["failed"],
            summary["deferred"],
            summary["review"]
        ),
        Ok(_) => {}
        Err(e) => println!("    [scheduler] tick {n} -> reminders: {e:#}"),
    }));
    step(&format!(
        "the scheduler fires the reminders function every {}s with a scheduled event \
         (REMINDERS_TICK_SECONDS)",
        tick.as_secs()
    ));
    Ok(tick)
}

/// Polls `GET /v1/reminders/{id}` until the reminder is `sent` or `failed`, or `timeout`
/// passes; any answer but a success (a 404, a 503) ends the wait with that error.
async fn wait_settled(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    wait_for(timeout, || async {
        let reminder: Value = http
            .get(format!("{base}/v1/reminders/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(matches!(reminder["status"].as_str(), Some("sent" | "failed")).then_some(reminder))
    })
    .await
}

/// The one `whatsapp_template` sends the stand-in received.
fn template_sends(stack: &crate::Stack) -> Vec<local_stack::standins::Recorded> {
    stack
        .whatsapp
        .requests()
        .into_iter()
        .filter(|r| r.body["type"] == "template")
        .collect()
}

pub(crate) async fn demo() -> anyhow::Result<()> {
    let stack = start_stack().await?;
    let tick = start_ticks(&stack.watch)?;
    let base = stack.watch.base_url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let workspace = WorkspaceId::parse(WORKSPACE)?;
    let number = PhoneNumberId::parse(PHONE_NUMBER_ID)?;
    let customer = WaId::parse(CUSTOMER)?;
    stack
        .store
        .upsert_contact(
            &workspace,
            &number,
            &customer,
            Some("Sheena Nelson"),
            OffsetDateTime::now_utc(),
        )
        .await?;
    detail(&format!("contact {CUSTOMER} of workspace {WORKSPACE}"));

    step("A reminder due now, through the send API (POST /v1/reminders, a minted token)");
    let token = TokenSpec::local(WORKSPACE).mint()?;
    let request = json!({
        "contactId": CUSTOMER,
        "dueAt": OffsetDateTime::now_utc().format(&Rfc3339)?,
        "sendNow": true,
        "channel": {
            "type": "whatsapp_template",
            "phoneNumberId": PHONE_NUMBER_ID,
            "template": {
                "name": "appointment_reminder",
                "language": "en_US",
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "Tuesday 10:00" }] }]
            }
        }
    });
    let key = format!(
        "demo-reminder-{}",
        OffsetDateTime::now_utc().unix_timestamp()
    );
    let create = || {
        http.post(format!("{base}/v1/reminders"))
            .bearer_auth(&token)
            .header("idempotency-key", &key)
            .json(&request)
            .send()
    };
    let response = create().await?;
    let status = response.status();
    let created: Value = response.json().await?;
    detail(&format!(
        "POST /v1/reminders -> {status} id={} status={} dueAt={}",
        created["id"], created["status"], created["dueAt"]
    ));
    ensure!(status == 201, "the reminder was not created: {created}");
    let id = created["id"].as_str().context("no reminder id")?.to_owned();

    step("The next scheduled run claims it, sends it and records it");
    let sent = wait_settled(&http, &base, &token, &id, Duration::from_secs(300))
        .await
        .context("no run sent the reminder")?;
    detail(&format!(
        "GET /v1/reminders/{id} -> status={} resultId={} sentAt={} attempts={}",
        sent["status"], sent["resultId"], sent["sentAt"], sent["attempts"]
    ));
    ensure!(sent["status"] == "sent", "the reminder failed: {sent}");

    step("The WhatsApp stand-in received it once");
    let sends = template_sends(&stack);
    for send in &sends {
        detail(&format!(
            "POST {} (auth: {}) -> {} {}",
            send.path,
            send.auth.unwrap_or("none"),
            send.wamid.as_deref().unwrap_or("-"),
            send.body
        ));
    }
    ensure!(
        sends.len() == 1,
        "expected one send, the stand-in saw {}",
        sends.len()
    );
    ensure!(
        sends[0].wamid.as_deref() == sent["resultId"].as_str(),
        "the stored wamid is not the one the stand-in answered with"
    );

    step("An email reminder goes to the Resend stand-in the same way (nothing leaves the machine)");
    let email = json!({
        "contactId": CUSTOMER,
        "dueAt": OffsetDateTime::now_utc().format(&Rfc3339)?,
        "sendNow": true,
        "channel": {
            "type": "email",
            "to": "sheena@example.com",
            "subject": "Your appointment on Tuesday",
            "body": "See you on Tuesday at 10:00."
        }
    });
    let response = http
        .post(format!("{base}/v1/reminders"))
        .bearer_auth(&token)
        .json(&email)
        .send()
        .await?;
    ensure!(
        response.status() == 201,
        "the email reminder was not created"
    );
    let email_id = response.json::<Value>().await?["id"]
        .as_str()
        .context("no reminder id")?
        .to_owned();
    let emailed = wait_settled(&http, &base, &token, &email_id, Duration::from_secs(120))
        .await
        .context("no run sent the email reminder")?;
    detail(&format!(
        "GET /v1/reminders/{email_id} -> status={} resultId={}",
        emailed["status"], emailed["resultId"]
    ));
    let emails = stack.resend.requests();
    for sent in &emails {
        detail(&format!(
            "POST {} (auth: {}) -> {} {}",
            sent.path,
            sent.auth.unwrap_or("none"),
            sent.wamid.as_deref().unwrap_or("-"),
            sent.body
        ));
    }
    ensure!(
        emailed["status"] == "sent" && emails.len() == 1,
        "the email reminder was not sent once through the stand-in: {emailed}"
    );

    step("Two more ticks, the same request again (Idempotency-Key), and a cancel");
    tokio::time::sleep(tick * 2 + Duration::from_secs(1)).await;
    let again = create().await?;
    let again_status = again.status();
    let replay: Value = again.json().await?;
    detail(&format!(
        "POST /v1/reminders (same key) -> {again_status} id={} status={}",
        replay["id"], replay["status"]
    ));
    ensure!(
        replay["id"] == created["id"],
        "the retry created another reminder"
    );
    let cancel = http
        .delete(format!("{base}/v1/reminders/{id}"))
        .bearer_auth(&token)
        .send()
        .await?;
    let cancel_status = cancel.status();
    detail(&format!(
        "DELETE /v1/reminders/{id} -> {cancel_status} {}",
        cancel.text().await?
    ));
    ensure!(cancel_status == 409, "a sent reminder was cancellable");
    let total = template_sends(&stack).len();
    detail(&format!("template sends at the stand-in: {total}"));
    ensure!(total == 1, "the reminder was sent {total} times");

    step("Reminders demo complete: scheduled through the API, sent once by the scheduled run");
    Ok(())
}
