//! One scheduled run: find the due reminders, claim each one, send it, record the outcome.
//!
//! Exactly once: a reminder is sent only by the run whose conditional claim moved it from
//! `pending` to `sending`, and every later write is conditional on that run still holding it.
//! A send that certainly did not happen goes back to `pending` (with backoff); a send whose
//! outcome is unknown (a timeout after the request left, a crashed run whose lease expired)
//! is flagged for review and never sent again by itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use time::OffsetDateTime;

use crate::conversations::model::Integration;
use crate::conversations::processor::channel;
use crate::conversations::store::{StoreError, TenantStore};
use crate::ids::PhoneNumberId;
use crate::reminders::email::{Email, EmailError, EmailSender};
use crate::reminders::model::{Reminder, ReminderChannel, ReminderStatus, TemplateSpec};
use crate::reminders::store::ReminderQueue;
use crate::secrets::{SecretSource, SecretsCache};
use crate::telemetry::{cause_chain, count_metric};
use crate::whatsapp::{Outgoing, WhatsAppClient, WhatsAppError};

/// How long after the customer's last message a free-form text may be sent.
pub const SERVICE_WINDOW: time::Duration = time::Duration::hours(24);

/// How a run paces itself.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Claims per reminder before a retryable failure becomes `failed`.
    pub max_attempts: u32,
    /// The delay after the first retryable failure; it doubles with each attempt, up to
    /// `backoff_max`.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Reminders read per shard per round.
    pub page_size: u32,
    /// No reminder is claimed once less than this is left before the deadline: enough for one
    /// send and its record.
    pub stop_claiming_before: Duration,
    /// Sends end this long before the deadline, so their outcome is always recorded.
    pub record_margin: Duration,
    /// How long a claim outlives the run's deadline. A claim older than that belongs to a run
    /// that died.
    pub lease_grace: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_first: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
            concurrency: 8,
            page_size: 50,
            stop_claiming_before: Duration::from_secs(12),
            record_margin: Duration::from_secs(2),
            lease_grace: Duration::from_secs(60),
        }
    }
}

impl RunSettings {
    /// The delay before attempt `attempts + 1`: `backoff_first · 2^(attempts-1)`, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.backoff_first
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub run_id: String,
    /// Reminders this run claimed.
    pub claimed: u32,
    pub sent: u32,
    /// Failed for good (refused, opted out, attempts used up).
    pub failed: u32,
    /// Put back for a later attempt, or left for the next run at the deadline.
    pub deferred: u32,
    /// Flagged for review: the outcome of a send is unknown.
    pub review: u32,
    /// Store or index reads and writes that failed; the rest waits for the next run.
    pub errors: u32,
}

/// The reminders use case: build once per process, `run` once per schedule tick.
pub struct ReminderRunner<S, X, E> {
    store: S,
    whatsapp: WhatsAppClient,
    email: E,
    secrets: SecretsCache<X>,
    settings: RunSettings,
}

/// How one send ended.
enum Attempt {
    Sent(String),
    /// Certainly not sent; worth trying again (not before the delay, if given).
    Retry(String, Option<Duration>),
    /// Refused for good, or never to be sent (opted out, outside the window).
    Refused(String),
    /// May have been sent.
    Unknown(String),
}

/// What handling one due reminder came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Sent,
    Failed,
    /// Claimed and put back for later.
    Retried,
    Review,
    /// Another run's claim that expired mid-send, flagged for review.
    Expired,
    /// Not this run's: claimed by another run, cancelled, or a stale index entry.
    Skipped,
    /// Deferred before the claim: the deadline is near.
    NotClaimed,
    Error,
}

impl<S, X, E> ReminderRunner<S, X, E>
where
    S: ReminderQueue + TenantStore,
    X: SecretSource,
    E: EmailSender,
{
    pub fn new(
        store: S,
        whatsapp: WhatsAppClient,
        email: E,
        secrets: SecretsCache<X>,
        settings: RunSettings,
    ) -> Self {
        Self {
            store,
            whatsapp,
            email,
            secrets,
            settings,
        }
    }

    /// Sends every reminder due now that fits before `deadline`, logs a summary and emits it as
    /// metrics. Reminders left over wait for the next run.
    #[tracing::instrument(skip_all, fields(run_id))]
    pub async fn run(&self, deadline: Instant) -> RunSummary {
        let started = OffsetDateTime::now_utc();
        let run_id = format!("run-{}", ulid::Ulid::new());
        tracing::Span::current().record("run_id", run_id.as_str());
        let mut summary = RunSummary {
            run_id: run_id.clone(),
            ..RunSummary::default()
        };
        let integrations = Mutex::new(HashMap::new());
        // One cursor per shard; a shard leaves the list when it is exhausted.
        let mut shards: Vec<(u16, Option<String>)> =
            (0..self.store.shards()).map(|s| (s, None)).collect();
        while !shards.is_empty() && !self.near_deadline(deadline) {
            let pages = futures_util::future::join_all(shards.iter().map(|(shard, start)| {
                self.store
                    .due(*shard, started, start.as_deref(), self.settings.page_size)
            }))
            .await;
            let mut due = Vec::new();
            let mut next_shards = Vec::new();
            for ((shard, _), page) in shards.iter().zip(pages) {
                match page {
                    Ok(page) => {
                        due.extend(page.items);
                        if let Some(next) = page.next {
                            next_shards.push((*shard, Some(next)));
                        }
                    }
                    Err(e) => {
                        summary.errors += 1;
                        tracing::error!(
                            shard,
                            error.cause_chain = cause_chain(&e),
                            "could not read the due index; the next run will"
                        );
                    }
                }
            }
            shards = next_shards;
            due.sort_by_key(|r| r.due_at);
            let outcomes: Vec<Handled> = futures_util::stream::iter(due)
                .map(|reminder| self.handle(reminder, &run_id, deadline, &integrations))
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
            for outcome in outcomes {
                summary.count(outcome);
            }
        }
        summary.report();
        summary
    }

    fn near_deadline(&self, deadline: Instant) -> bool {
        deadline.saturating_duration_since(Instant::now()) < self.settings.stop_claiming_before
    }

    async fn handle(
        &self,
        reminder: Reminder,
        run_id: &str,
        deadline: Instant,
        integrations: &Mutex<HashMap<PhoneNumberId, Option<Integration>>>,
    ) -> Handled {
        let now = OffsetDateTime::now_utc();
        match reminder.status {
            ReminderStatus::Sending if reminder.lease_until.is_none_or(|l| l < now) => {
                return self.review_expired(&reminder, run_id, now).await;
            }
            ReminderStatus::Pending if reminder.due_at <= now => {}
            // Another run's live claim, or an index entry older than the item.
            _ => return Handled::Skipped,
        }
        if self.near_deadline(deadline) {
            return Handled::NotClaimed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let lease_until = now + left + self.settings.lease_grace;
        let claimed = match self.store.claim(&reminder, run_id, now, lease_until).await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return Handled::Skipped,
            Err(e) => {
                tracing::error!(reminder_id = %reminder.id, error.cause_chain = cause_chain(&e), "could not claim the reminder");
                return Handled::Error;
            }
        };
        let send_deadline = deadline
            .checked_sub(self.settings.record_margin)
            .unwrap_or(deadline);
        let attempt = self.send(&claimed, send_deadline, integrations).await;
        let recorded = self.record(&claimed, run_id, attempt).await;
        recorded.unwrap_or_else(|e| {
            // The claim stays: when its lease ends, the next run flags it for review.
            tracing::error!(reminder_id = %claimed.id, error.cause_chain = cause_chain(&e), "could not record the outcome of the send");
            Handled::Error
        })
    }

    async fn review_expired(
        &self,
        reminder: &Reminder,
        run_id: &str,
        now: OffsetDateTime,
    ) -> Handled {
        let reason = "the run that claimed it ended before recording the outcome of the send; \
                      not sent again automatically";
        match self
            .store
            .flag_for_review(reminder, run_id, Some(now), reason)
            .await
        {
            Ok(true) => {
                tracing::warn!(reminder_id = %reminder.id, "a claim expired mid-send: flagged for review");
                Handled::Expired
            }
            Ok(false) => Handled::Skipped,
            Err(e) => {
                tracing::error!(reminder_id = %reminder.id, error.cause_chain = cause_chain(&e), "could not flag the expired claim");
                Handled::Error
            }
        }
    }

    async fn record(
        &self,
        reminder: &Reminder,
        run_id: &str,
        attempt: Attempt,
    ) -> Result<Handled, StoreError> {
        let now = OffsetDateTime::now_utc();
        let id = &reminder.id;
        Ok(match attempt {
            Attempt::Sent(result_id) => {
                self.store
                    .record_sent(reminder, run_id, &result_id, now)
                    .await?;
                tracing::info!(reminder_id = %id, channel = reminder.channel.kind(), "reminder sent");
                Handled::Sent
            }
            Attempt::Retry(reason, _) if reminder.attempts >= self.settings.max_attempts => {
                let reason = format!(
                    "gave up after {} attempts; last error: {reason}",
                    reminder.attempts
                );
                self.store.fail(reminder, run_id, &reason, now).await?;
                tracing::warn!(reminder_id = %id, reason, "reminder failed");
                Handled::Failed
            }
            Attempt::Retry(reason, after) => {
                let delay = self
                    .settings
                    .backoff(reminder.attempts)
                    .max(after.unwrap_or_default());
                let due_at = now + delay;
                self.store
                    .retry_later(reminder, run_id, due_at, &reason)
                    .await?;
                tracing::info!(reminder_id = %id, reason, ?delay, "reminder deferred after a retryable failure");
                Handled::Retried
            }
            Attempt::Refused(reason) => {
                self.store.fail(reminder, run_id, &reason, now).await?;
                tracing::warn!(reminder_id = %id, reason, "reminder failed");
                Handled::Failed
            }
            Attempt::Unknown(reason) => {
                self.store
                    .flag_for_review(reminder, run_id, None, &reason)
                    .await?;
                count_metric("ReminderOutcomeUnknown", 1);
                tracing::warn!(reminder_id = %id, reason, "the outcome of the send is unknown: flagged for review");
                Handled::Review
            }
        })
    }

    async fn send(
        &self,
        reminder: &Reminder,
        deadline: Instant,
        integrations: &Mutex<HashMap<PhoneNumberId, Option<Integration>>>,
    ) -> Attempt {
        let secrets = match self.secrets.get().await {
            Ok(secrets) => secrets,
            Err(e) => return Attempt::Retry(format!("secrets unavailable: {e}"), None),
        };
        let (pn, message) = match &reminder.channel {
            ReminderChannel::Email { to, subject, body } => {
                let Some(key) = secrets.resend_api_key.as_ref() else {
                    return Attempt::Refused(EmailError::NotConfigured.to_string());
                };
                let email = Email {
                    to: to.clone(),
                    subject: subject.clone(),
                    text: body.clone(),
                    idempotency_key: format!("reminder-{}", reminder.id),
                };
                return email_attempt(self.email.send(key, &email, deadline).await);
            }
            ReminderChannel::WhatsappTemplate {
                phone_number_id,
                template,
            } => (phone_number_id, Some(template_message(reminder, template))),
            ReminderChannel::WhatsappText {
                phone_number_id, ..
            } => (phone_number_id, None),
        };
        let integration = match self.integration(pn, integrations).await {
            Ok(Some(i)) if i.workspace_id == reminder.workspace_id => i,
            Ok(Some(_) | None) => {
                return Attempt::Refused(
                    "the sending number is not connected to the workspace".into(),
                );
            }
            Err(e) => return Attempt::Retry(format!("tenant lookup failed: {e}"), None),
        };
        let channel = match channel(&integration, &secrets) {
            Ok(channel) => channel,
            Err(e) => return Attempt::Refused(e.to_string()),
        };
        let recipient = match self
            .store
            .recipient(&reminder.workspace_id, &reminder.contact, pn)
            .await
        {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => return Attempt::Retry(format!("contact lookup failed: {e}"), None),
        };
        if recipient.opted_out {
            return Attempt::Refused(
                "opted_out: the contact opted out of WhatsApp messages".into(),
            );
        }
        let message = match (message, &reminder.channel) {
            (Some(message), _) => message,
            (None, ReminderChannel::WhatsappText { body, fallback, .. }) => {
                let window_open = recipient
                    .last_inbound_at
                    .is_some_and(|at| OffsetDateTime::now_utc() - at < SERVICE_WINDOW);
                match (window_open, fallback) {
                    (true, _) => Outgoing::text(reminder.contact.clone(), body.clone())
                        .with_callback_data(format!("reminder:{}", reminder.id)),
                    (false, Some(template)) => template_message(reminder, template),
                    (false, None) => {
                        return Attempt::Refused(
                            "outside the 24-hour customer service window, and no fallback \
                             template is configured"
                                .into(),
                        );
                    }
                }
            }
            (None, _) => return Attempt::Refused("nothing to send".into()),
        };
        match self.whatsapp.send(&channel, pn, &message, deadline).await {
            Ok(sent) => match sent.wamid {
                Some(wamid) => Attempt::Sent(String::from(wamid)),
                None => Attempt::Unknown("the API accepted the message without an id".into()),
            },
            Err(e) => whatsapp_attempt(&e),
        }
    }

    async fn integration(
        &self,
        pn: &PhoneNumberId,
        cache: &Mutex<HashMap<PhoneNumberId, Option<Integration>>>,
    ) -> Result<Option<Integration>, StoreError> {
        if let Some(found) = cache.lock().ok().and_then(|c| c.get(pn).cloned()) {
            return Ok(found);
        }
        let found = self.store.integration(pn).await?;
        if let Ok(mut c) = cache.lock() {
            c.insert(pn.clone(), found.clone());
        }
        Ok(found)
    }
}

fn template_message(reminder: &Reminder, template: &TemplateSpec) -> Outgoing {
    Outgoing::template(
        reminder.contact.clone(),
        template.name.clone(),
        template.language.clone(),
        template.components.clone(),
    )
    .with_callback_data(format!("reminder:{}", reminder.id))
}

/// The one mapping of a WhatsApp failure to what the run does next.
fn whatsapp_attempt(e: &WhatsAppError) -> Attempt {
    if e.may_have_been_delivered() {
        Attempt::Unknown(e.to_string())
    } else if e.is_retryable() {
        Attempt::Retry(e.to_string(), e.retry_after())
    } else {
        Attempt::Refused(e.to_string())
    }
}

/// The one mapping of an email failure. Every email carries an idempotency key, so a send
/// that timed out or met a 5xx can be repeated: the provider sends one email per key.
fn email_attempt(result: Result<String, EmailError>) -> Attempt {
    match result {
        Ok(id) => Attempt::Sent(id),
        Err(e @ EmailError::Unconfirmed { .. }) => Attempt::Unknown(e.to_string()),
        Err(EmailError::Throttled {
            retry_after,
            message,
        }) => Attempt::Retry(format!("throttled: {message}"), retry_after),
        Err(e) if e.is_retryable() => Attempt::Retry(e.to_string(), None),
        Err(e) => Attempt::Refused(e.to_string()),
    }
}

impl RunSummary {
    fn count(&mut self, outcome: Handled) {
        let claimed = !matches!(
            outcome,
            Handled::Skipped | Handled::NotClaimed | Handled::Expired
        );
        if claimed && outcome != Handled::Error {
            self.claimed += 1;
        }
        match outcome {
            Handled::Sent => self.sent += 1,
            Handled::Failed => self.failed += 1,
            Handled::Retried => self.deferred += 1,
            Handled::NotClaimed => self.deferred += 1,
            Handled::Review | Handled::Expired => self.review += 1,
            Handled::Error => self.errors += 1,
            Handled::Skipped => {}
        }
    }

    /// One summary log line, and the same numbers as metrics.
    fn report(&self) {
        tracing::info!(
            run_id = self.run_id,
            claimed = self.claimed,
            sent = self.sent,
            failed = self.failed,
            deferred = self.deferred,
            review = self.review,
            errors = self.errors,
            "reminders run finished"
        );
        for (name, value) in [
            ("RemindersClaimed", self.claimed),
            ("RemindersSent", self.sent),
            ("RemindersFailed", self.failed),
            ("RemindersDeferred", self.deferred),
            ("RemindersReview", self.review),
        ] {
            count_metric(name, u64::from(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_delay_up_to_the_cap() {
        let s = RunSettings::default();
        assert_eq!(s.backoff(1), Duration::from_secs(60));
        assert_eq!(s.backoff(2), Duration::from_secs(120));
        assert_eq!(s.backoff(3), Duration::from_secs(240));
        assert_eq!(s.backoff(40), Duration::from_secs(3600));
    }

    #[test]
    fn a_whatsapp_timeout_is_flagged_never_retried() {
        let e = WhatsAppError::Transient {
            status: None,
            message: "timed out".into(),
        };
        assert!(matches!(whatsapp_attempt(&e), Attempt::Unknown(_)));
        let e = WhatsAppError::OutsideWindow {
            code: 131047,
            message: "Re-engagement message".into(),
        };
        assert!(matches!(whatsapp_attempt(&e), Attempt::Refused(r) if r.contains("131047")));
    }

    #[test]
    fn an_email_timeout_is_retried_under_its_idempotency_key() {
        let e = EmailError::Transient {
            status: Some(502),
            message: "bad gateway".into(),
        };
        assert!(matches!(email_attempt(Err(e)), Attempt::Retry(_, None)));
        let e = EmailError::Unconfirmed {
            status: 200,
            message: "no id".into(),
        };
        assert!(matches!(email_attempt(Err(e)), Attempt::Unknown(_)));
    }
}
