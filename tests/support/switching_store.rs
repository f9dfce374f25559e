//! A store that fails for chosen messages: it delegates to the live DynamoDB store, except that
//! storing a poisoned wamid goes to a DynamoDB client pointed at a dead port, so the failure is
//! the SDK's own dispatch error and not a stub.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use shared::adapters::dynamo::DynamoStore;
use shared::conversations::model::{
    AiConfig, ContactRef, ContactState, ConversationChoice, FailedEvent, HistoryItem, Integration,
    IntentOutcome, NewMessage, ReplyDraft, ReplyIntent, ReplyPart, Resumption, StatusOutcome,
    StatusUpdate, Stored, UnsettledReply,
};
use shared::conversations::store::{
    ContactStore, MessageStore, ReplyStore, StoreResult, TenantStore,
};
use shared::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};
use time::OffsetDateTime;

/// Nothing listens here: every request fails to connect.
pub const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";

#[derive(Clone)]
pub struct SwitchingStore {
    live: DynamoStore,
    dead: DynamoStore,
    poisoned: Arc<Mutex<HashSet<String>>>,
    inbound_cured: Arc<std::sync::atomic::AtomicBool>,
}

impl SwitchingStore {
    /// Wraps `live`; the dead twin uses the same table name on [`DEAD_ENDPOINT`].
    pub async fn new(live: DynamoStore) -> Self {
        let dead_aws = local_stack::aws_config_for(DEAD_ENDPOINT).await;
        let dead = DynamoStore::new(&dead_aws, live.table());
        Self {
            live,
            dead,
            poisoned: Arc::default(),
            inbound_cured: Arc::default(),
        }
    }

    /// From now on, storing this inbound message fails, and so does recording a reply that it
    /// triggered.
    pub fn poison(&self, wamid: &str) {
        self.poisoned
            .lock()
            .expect("poison set lock")
            .insert(wamid.to_owned());
    }

    /// Poisoned messages store normally again, but replies they triggered still cannot be
    /// recorded.
    pub fn cure_inbound_only(&self) {
        self.inbound_cured
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every message stores normally again.
    pub fn cure_all(&self) {
        self.poisoned.lock().expect("poison set lock").clear();
        self.inbound_cured
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn for_inbound(&self, message: &NewMessage) -> &DynamoStore {
        let poisoned = self
            .poisoned
            .lock()
            .expect("poison set lock")
            .contains(message.wamid.as_str())
            && !self.inbound_cured.load(std::sync::atomic::Ordering::SeqCst);
        if poisoned { &self.dead } else { &self.live }
    }
}

impl TenantStore for SwitchingStore {
    async fn integration(&self, pn: &PhoneNumberId) -> StoreResult<Option<Integration>> {
        self.live.integration(pn).await
    }

    async fn mark_integration_error(&self, pn: &PhoneNumberId, error: &str) -> StoreResult<()> {
        self.live.mark_integration_error(pn, error).await
    }

    async fn ai_config(&self, ws: &WorkspaceId) -> StoreResult<AiConfig> {
        self.live.ai_config(ws).await
    }
}

impl ContactStore for SwitchingStore {
    async fn upsert_contact(
        &self,
        ws: &WorkspaceId,
        pn: &PhoneNumberId,
        wa_id: &WaId,
        profile_name: Option<&str>,
        at: OffsetDateTime,
    ) -> StoreResult<ContactState> {
        self.live
            .upsert_contact(ws, pn, wa_id, profile_name, at)
            .await
    }

    async fn set_opt_out(
        &self,
        ws: &WorkspaceId,
        wa_id: &WaId,
        opted_out: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        self.live.set_opt_out(ws, wa_id, opted_out, at).await
    }

    async fn set_bot_paused(
        &self,
        contact: &ContactRef,
        conversation_id: &ConversationId,
        paused: bool,
    ) -> StoreResult<bool> {
        self.live
            .set_bot_paused(contact, conversation_id, paused)
            .await
    }
}

impl MessageStore for SwitchingStore {
    async fn store_inbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
    ) -> StoreResult<Stored> {
        self.for_inbound(message)
            .store_inbound(message, conversation)
            .await
    }

    async fn store_outbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
        hand_over: bool,
    ) -> StoreResult<bool> {
        self.live
            .store_outbound(message, conversation, hand_over)
            .await
    }

    async fn apply_status(&self, update: &StatusUpdate) -> StoreResult<StatusOutcome> {
        self.live.apply_status(update).await
    }

    async fn history(
        &self,
        conversation_id: &ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<HistoryItem>> {
        self.live.history(conversation_id, limit).await
    }

    async fn record_failed_event(&self, failed: &FailedEvent) -> StoreResult<()> {
        self.live.record_failed_event(failed).await
    }
}

impl ReplyStore for SwitchingStore {
    async fn begin_reply(
        &self,
        intent: &ReplyIntent,
        draft: &ReplyDraft,
        covers: &[Wamid],
    ) -> StoreResult<IntentOutcome> {
        self.live.begin_reply(intent, draft, covers).await
    }

    async fn release_reply(&self, intent: &ReplyIntent, covers: &[Wamid]) -> StoreResult<()> {
        self.live.release_reply(intent, covers).await
    }

    async fn fail_reply(
        &self,
        intent: &ReplyIntent,
        code: Option<i64>,
        reason: &str,
    ) -> StoreResult<()> {
        self.live.fail_reply(intent, code, reason).await
    }

    async fn flag_reply(
        &self,
        intent: &ReplyIntent,
        state: UnsettledReply,
        reason: &str,
    ) -> StoreResult<()> {
        self.live.flag_reply(intent, state, reason).await
    }

    /// A poisoned trigger's reply is sent but cannot be recorded: the crash between the send
    /// and the record, as the store sees it.
    async fn record_reply(
        &self,
        intent: &ReplyIntent,
        message: &NewMessage,
        part: ReplyPart,
        answered_through: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let poisoned = self
            .poisoned
            .lock()
            .expect("poison set lock")
            .contains(intent.trigger.as_str());
        let store = if poisoned { &self.dead } else { &self.live };
        store
            .record_reply(intent, message, part, answered_through)
            .await
    }

    async fn uncovered(&self, wamids: &[Wamid]) -> StoreResult<Vec<Wamid>> {
        self.live.uncovered(wamids).await
    }

    async fn resume_reply(&self, intent: &ReplyIntent) -> StoreResult<Option<Resumption>> {
        self.live.resume_reply(intent).await
    }

    async fn reconcile_reply(
        &self,
        intent: &ReplyIntent,
        update: &StatusUpdate,
    ) -> StoreResult<bool> {
        self.live.reconcile_reply(intent, update).await
    }
}
