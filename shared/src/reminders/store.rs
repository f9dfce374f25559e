//! Reminder ports, split like the processor's: what the send API needs (`ReminderStore`) and what
//! a scheduled run needs (`ReminderQueue`), so each function's IAM policy matches what it uses.

use std::future::Future;

use time::OffsetDateTime;

use crate::conversations::store::StoreResult;
use crate::dashboard::DashboardError;
use crate::dashboard::page::{Page, PageKey};
use crate::ids::{PhoneNumberId, WaId, WorkspaceId};
use crate::reminders::model::{Reminder, ReminderId, ReminderStatus};

/// Filters of a workspace's reminder list; every one optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReminderFilter {
    pub status: Option<ReminderStatus>,
    pub contact: Option<WaId>,
    /// Due at or after.
    pub due_from: Option<OffsetDateTime>,
    /// Due before.
    pub due_to: Option<OffsetDateTime>,
}

/// An `Idempotency-Key` and a hash of the request it came with: a retry with the same key
/// and another request is told apart from a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
}

/// What creating a reminder did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Reminder),
    /// The `Idempotency-Key` was used before: the reminder it created, and the hash of the
    /// request that created it.
    Existing {
        reminder: Reminder,
        request_hash: String,
    },
}

/// What cancelling a reminder did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    Cancelled(Box<Reminder>),
    NotFound,
    /// Only a pending reminder can be cancelled.
    NotPending(ReminderStatus),
}

/// The send API's reminder operations, always within one workspace.
pub trait ReminderStore: Send + Sync + 'static {
    /// Stores a new pending reminder; with an idempotency key, at most one reminder per key.
    fn create_reminder(
        &self,
        reminder: &Reminder,
        idempotency: Option<KeyedRequest<'_>>,
    ) -> impl Future<Output = StoreResult<Created>> + Send;
    fn reminder(
        &self,
        workspace_id: &WorkspaceId,
        id: &ReminderId,
    ) -> impl Future<Output = StoreResult<Option<Reminder>>> + Send;
    /// By due time, oldest first, from `after` (a position in this very list, or a 400 on
    /// `cursor`), as every dashboard list pages.
    fn list_reminders(
        &self,
        workspace_id: &WorkspaceId,
        filter: &ReminderFilter,
        limit: u32,
        after: Option<PageKey>,
    ) -> impl Future<Output = Result<Page<Reminder>, DashboardError>> + Send;
    fn cancel_reminder(
        &self,
        workspace_id: &WorkspaceId,
        id: &ReminderId,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Cancelled>> + Send;
    /// Whether `phone_number_id` is one of the workspace's numbers.
    fn owns_number(
        &self,
        workspace_id: &WorkspaceId,
        phone_number_id: &PhoneNumberId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// One page of the due index: reminders due up to a time, in one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePage {
    pub items: Vec<Reminder>,
    /// Where the next page starts; `None` when the shard is exhausted.
    pub next: Option<String>,
}

/// What the reminder knows about its customer on a number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recipient {
    pub opted_out: bool,
    /// When they last wrote to that number: the 24-hour window opens then.
    pub last_inbound_at: Option<OffsetDateTime>,
}

/// A scheduled run's operations. Every write after the claim is conditional on the run still
/// holding it (`status = sending` and its `run_id`).
pub trait ReminderQueue: Send + Sync + 'static {
    /// How many shards the due index has; every run reads all of them.
    fn shards(&self) -> u16;
    /// Reminders in the due index of `shard` due at or before `now` (pending ones, and claimed
    /// ones whose run may have died), oldest first, from `start`.
    fn due(
        &self,
        shard: u16,
        now: OffsetDateTime,
        start: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<DuePage>> + Send;
    /// `pending` → `sending` for `run_id` until `lease_until`, counting the attempt, if it is
    /// still pending and due. `None` when another run (or a cancel) got there first.
    fn claim(
        &self,
        reminder: &Reminder,
        run_id: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<Reminder>>> + Send;
    fn record_sent(
        &self,
        reminder: &Reminder,
        run_id: &str,
        result_id: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Back to `pending`, due again at `due_at`.
    fn retry_later(
        &self,
        reminder: &Reminder,
        run_id: &str,
        due_at: OffsetDateTime,
        error: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn fail(
        &self,
        reminder: &Reminder,
        run_id: &str,
        error: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The outcome of the send is unknown: leave it `sending`, out of the due index, with why,
    /// for a person to decide. `expired_before`: only if its lease ended before then (a
    /// crashed run's claim); otherwise only if `run_id` still holds it.
    fn flag_for_review(
        &self,
        reminder: &Reminder,
        run_id: &str,
        expired_before: Option<OffsetDateTime>,
        reason: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The contact's opt-out and window on a number; `None` when there is no such contact.
    fn recipient(
        &self,
        workspace_id: &WorkspaceId,
        wa_id: &WaId,
        phone_number_id: &PhoneNumberId,
    ) -> impl Future<Output = StoreResult<Option<Recipient>>> + Send;
}
