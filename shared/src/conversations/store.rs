//! Store ports, split by capability so each function's IAM policy can match what it uses.
//! The DynamoDB adapter (`adapters::dynamo`) implements all of them; see docs/data-model.md.

use std::future::Future;

use time::OffsetDateTime;

use crate::conversations::model::{
    AiConfig, ContactRef, ContactState, ConversationChoice, FailedEvent, HistoryItem, Integration,
    IntentOutcome, NewMessage, ReplyDraft, ReplyIntent, ReplyPart, Resumption, StatusOutcome,
    StatusUpdate, Stored, UnsettledReply,
};
use crate::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store could not be reached: {0}")]
    Unavailable(String),
    #[error("a concurrent writer changed the item first: {0}")]
    Conflict(String),
    #[error("a stored item is not in the expected shape: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Tenants and their settings.
pub trait TenantStore: Send + Sync + 'static {
    fn integration(
        &self,
        phone_number_id: &PhoneNumberId,
    ) -> impl Future<Output = StoreResult<Option<Integration>>> + Send;
    fn mark_integration_error(
        &self,
        phone_number_id: &PhoneNumberId,
        error: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The workspace's AI settings, or the defaults (AI off) when it has none.
    fn ai_config(
        &self,
        workspace_id: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<AiConfig>> + Send;
}

/// Contacts, and their conversation state with each number (see [`ContactState`]).
pub trait ContactStore: Send + Sync + 'static {
    /// Creates or refreshes a contact on a message and returns it with its thread with
    /// `phone_number_id`, in one request.
    fn upsert_contact(
        &self,
        workspace_id: &WorkspaceId,
        phone_number_id: &PhoneNumberId,
        wa_id: &WaId,
        profile_name: Option<&str>,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<ContactState>> + Send;
    fn set_opt_out(
        &self,
        workspace_id: &WorkspaceId,
        wa_id: &WaId,
        opted_out: bool,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Hands a conversation to a person (`paused`) or back to the bot. `Ok(false)` when it is no
    /// longer the thread's current conversation (a paused flag never leaks into a new one).
    fn set_bot_paused(
        &self,
        contact: &ContactRef,
        conversation_id: &ConversationId,
        paused: bool,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Messages and their statuses.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores an inbound message exactly once and advances its conversation in the same
    /// transaction; says whether it was new and whether a reply already covers it.
    fn store_inbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
    ) -> impl Future<Output = StoreResult<Stored>> + Send;
    /// Stores an outbound message sent from another client (an echo) exactly once, in its
    /// conversation (opening one if needed), and applies statuses that came before it.
    /// `hand_over` pauses the bot: a person answered.
    fn store_outbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
        hand_over: bool,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn apply_status(
        &self,
        update: &StatusUpdate,
    ) -> impl Future<Output = StoreResult<StatusOutcome>> + Send;
    /// The newest `limit` messages of a conversation, oldest first.
    fn history(
        &self,
        conversation_id: &ConversationId,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<HistoryItem>>> + Send;
    /// Keeps an event that can never be processed, with why, so nothing is lost even though
    /// the queue record is acknowledged.
    fn record_failed_event(
        &self,
        failed: &FailedEvent,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Reply intents: recorded before a send, settled after it (see README, "No double replies").
pub trait ReplyStore: Send + Sync + 'static {
    /// Records the intent to send `draft` before sending it, and marks every message in
    /// `covers` as answered by it, in one transaction. Only `Acquired` may send.
    fn begin_reply(
        &self,
        intent: &ReplyIntent,
        draft: &ReplyDraft,
        covers: &[Wamid],
    ) -> impl Future<Output = StoreResult<IntentOutcome>> + Send;
    /// The send certainly did not happen: forget the intent and its coverage, so a redelivery
    /// may try again.
    fn release_reply(
        &self,
        intent: &ReplyIntent,
        covers: &[Wamid],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The send was refused for good: keep the intent, with the refusal.
    fn fail_reply(
        &self,
        intent: &ReplyIntent,
        code: Option<i64>,
        reason: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The send may or may not have happened (`unknown`: never sent again), or some parts of a
    /// split reply went out and the next certainly did not (`interrupted`: see
    /// [`ReplyStore::resume_reply`]).
    fn flag_reply(
        &self,
        intent: &ReplyIntent,
        state: UnsettledReply,
        reason: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The API accepted one part of a reply: store it as an outbound message and count it on
    /// the intent; the last part also marks the intent sent and moves `answered_through` to the
    /// given time, if any (never backwards).
    fn record_reply(
        &self,
        intent: &ReplyIntent,
        message: &NewMessage,
        part: ReplyPart,
        answered_through: Option<OffsetDateTime>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Those of `wamids` no reply intent covers (read consistently).
    fn uncovered(&self, wamids: &[Wamid]) -> impl Future<Output = StoreResult<Vec<Wamid>>> + Send;

    /// Takes an interrupted reply back for sending, once: `Some` with what is left when this
    /// caller now owns it (the intent is `sending` again), `None` when it is not interrupted
    /// (sent, being sent, refused, unknown or gone).
    fn resume_reply(
        &self,
        intent: &ReplyIntent,
    ) -> impl Future<Output = StoreResult<Option<Resumption>>> + Send;

    /// A status for an unknown wamid named this intent: if it was still unsettled and the
    /// status is about the intent's own number and customer, store the reply it sent under
    /// that wamid. `Ok(true)` when something was reconciled.
    fn reconcile_reply(
        &self,
        intent: &ReplyIntent,
        update: &StatusUpdate,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Everything the message processor reads and writes.
pub trait ProcessorStore: TenantStore + ContactStore + MessageStore + ReplyStore {}

impl<T: TenantStore + ContactStore + MessageStore + ReplyStore> ProcessorStore for T {}
