//! Store ports, split by capability so each function's IAM policy can match what it uses.
//! The DynamoDB adapter (`adapters::dynamo`) implements all of them; see docs/data-model.md.

use std::future::Future;

use time::OffsetDateTime;

use crate::crm::{
    AiConfig, ContactState, ConversationChoice, HistoryItem, Integration, IntentOutcome,
    NewMessage, ReplyDraft, ReplyIntent, StatusOutcome, StatusUpdate,
};
use crate::ids::{ConversationId, PhoneNumberId, WaId, WorkspaceId};

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

/// Contacts.
pub trait ContactStore: Send + Sync + 'static {
    /// Creates or refreshes a contact on an inbound message and returns it with the state of
    /// its current conversation, in one request.
    fn upsert_inbound_contact(
        &self,
        workspace_id: &WorkspaceId,
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
}

/// Messages, statuses and replies.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores an inbound message exactly once and advances its conversation in the same
    /// transaction. `Ok(false)` means it was already stored.
    fn store_inbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Stores an outbound message (an echo from another client) once, applying early statuses.
    fn store_outbound(
        &self,
        message: &NewMessage,
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
    /// Records the intent to send `draft` before sending it. Only `Acquired` may send.
    fn begin_reply(
        &self,
        intent: &ReplyIntent,
        draft: &ReplyDraft,
    ) -> impl Future<Output = StoreResult<IntentOutcome>> + Send;
    /// The send certainly did not happen: forget the intent so a redelivery may try again.
    fn release_reply(&self, intent: &ReplyIntent) -> impl Future<Output = StoreResult<()>> + Send;
    /// The send was refused for good: keep the intent, with the refusal.
    fn fail_reply(
        &self,
        intent: &ReplyIntent,
        code: Option<i64>,
        reason: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The send may or may not have happened: flag it for reconciliation by status webhook.
    fn flag_reply_unknown(
        &self,
        intent: &ReplyIntent,
        reason: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The API accepted the reply: mark the intent sent, store the outbound message and move
    /// the contact's `answered_through`, in one transaction.
    fn record_reply(
        &self,
        intent: &ReplyIntent,
        message: &NewMessage,
        answered_through: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// A status for an unknown wamid named this intent: if it was still unsettled, store the
    /// reply it sent under that wamid. `Ok(true)` when something was reconciled.
    fn reconcile_reply(
        &self,
        intent: &ReplyIntent,
        update: &StatusUpdate,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}
