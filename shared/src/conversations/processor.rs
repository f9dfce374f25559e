//! The message processor use case: one SQS batch of envelopes in, a list of failed records out.
//!
//! Records of one message group (one conversation) are handled in order; groups run
//! concurrently. A record that failed for a reason that may pass (throttling, an outage, the
//! deadline) is reported as failed, and so is every later record of its group, so FIFO order
//! holds on redelivery. A record that can never succeed (a corrupt envelope or stored item) is
//! kept in the store with its cause, counted, and acknowledged, so it never holds up the
//! conversation behind it. Storage is exactly-once through DynamoDB conditions; replies are
//! guarded by intents recorded before the send (see README).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde_json::Value;
use time::OffsetDateTime;
use tracing::{Instrument, instrument};

use crate::ai::{AiResponder, ChatMessage, ChatRequest, LlmClient, ProviderConfig, Role};
use crate::conversations::model::{
    AiConfig, ContactState, ConversationChoice, Direction, FailedEvent, Integration,
    IntegrationStatus, IntentOutcome, MessageStatus, NewMessage, Provider, ReplyDraft, ReplyIntent,
    ReplyPart, Resumption, StatusOutcome, StatusUpdate, Stored, UnsettledReply,
};
use crate::conversations::optout::{Keyword, keyword};
use crate::conversations::store::{ProcessorStore, StoreError};
use crate::envelope::{Envelope, EventKind, Source};
use crate::ids::{PhoneNumberId, WaId, Wamid, WorkspaceId};
use crate::ingest::webhook::meta;
use crate::onboarding::sealed::EncryptionKey;
use crate::secrets::{AppSecrets, SecretSource, SecretsCache, SecretsError};
use crate::telemetry::{cause_chain, count_metric};
use crate::whatsapp::{
    Channel, MAX_TEXT_BODY, Outgoing, WhatsAppClient, WhatsAppError, split_text,
};

/// Model calls must answer this long before the Lambda deadline, leaving time to send the
/// reply, record it and return the batch response.
pub const LLM_RESERVE: Duration = Duration::from_secs(6);
/// Sends must end this long before the deadline, so their outcome can always be recorded (or the
/// intent released) and the batch response returned in time.
pub const SEND_RESERVE: Duration = Duration::from_secs(2);
/// How often a message is re-stored when a racing writer changed its thread first.
const CONFLICT_RETRIES: usize = 3;

/// Tunables of the processor, from the environment (see README).
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// Messages older than this get no AI reply: Meta retries deliveries for days.
    pub max_message_age: Duration,
    /// A new conversation starts after this long without an inbound message.
    pub conversation_inactivity: Duration,
    pub tenant_cache_ttl: Duration,
    pub unknown_tenant_cache_ttl: Duration,
    pub ai_config_cache_ttl: Duration,
    pub grok_base_url: String,
    pub sealion_base_url: Option<String>,
    pub opt_out_confirmation: String,
    pub opt_in_confirmation: String,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            max_message_age: Duration::from_secs(600),
            conversation_inactivity: Duration::from_secs(24 * 3600),
            tenant_cache_ttl: Duration::from_secs(60),
            unknown_tenant_cache_ttl: Duration::from_secs(10),
            ai_config_cache_ttl: Duration::from_secs(30),
            grok_base_url: "https://api.x.ai/v1".into(),
            sealion_base_url: None,
            opt_out_confirmation: "You have been unsubscribed and will not receive further messages. Reply START to subscribe again.".into(),
            opt_in_confirmation: "You are subscribed again. Reply STOP at any time to unsubscribe.".into(),
        }
    }
}

/// One SQS record, as the function hands it over.
#[derive(Debug, Clone)]
pub struct QueueRecord {
    pub message_id: String,
    pub group_id: Option<String>,
    pub body: String,
}

/// Why a record failed. [`ProcessError::is_permanent`] decides whether SQS redelivers it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("the record is not an envelope: {0}")]
    BadEnvelope(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secrets are unavailable")]
    Secrets(#[source] SecretsError),
    #[error("no AI provider answered: {0}")]
    Ai(String),
    #[error("the AI provider refused the request, and would refuse it again: {0}")]
    AiRefused(String),
    #[error("the WhatsApp API asked us to retry later: {0}")]
    SendLater(#[source] WhatsAppError),
    #[error("the Lambda deadline is too close to continue")]
    Deadline,
    #[error("the account event could not be handled right now: {0}")]
    AccountEvent(String),
}

impl ProcessError {
    /// Whether no redelivery could ever succeed: the envelope itself, or an item it needs, is
    /// not in a shape we can read, or the AI provider refused the request the workspace's
    /// settings make. Everything else (outages, throttling, conflicts, the deadline, a secret
    /// an operator must fix for every workspace) may pass, and is retried.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::BadEnvelope(_) | Self::Store(StoreError::Corrupt(_)) | Self::AiRefused(_)
        )
    }
}

/// What handling an account event came to: the number it connected, if any; `Err` (a reason)
/// when it could not be handled right now and should be retried.
pub type AccountOutcome<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<PhoneNumberId>, String>> + Send + 'a>,
>;

/// Port: what becomes of an account-level event (a Kapso project webhook such as
/// `whatsapp.phone_number.created`). It is boxed so the processor need not be generic over it;
/// without one, account events are only logged.
pub trait AccountEvents: Send + Sync + 'static {
    fn handle<'a>(&'a self, envelope: &'a Envelope) -> AccountOutcome<'a>;
}

pub struct Processor<S, X> {
    store: S,
    account_events: Option<Arc<dyn AccountEvents>>,
    whatsapp: WhatsAppClient,
    llm: LlmClient,
    secrets: SecretsCache<X>,
    tenants: Cache<PhoneNumberId, Option<Integration>>,
    ai_configs: Cache<WorkspaceId, AiConfig>,
    settings: ProcessorSettings,
}

/// Inbound messages of one conversation seen in this batch that may get a reply.
struct Burst {
    integration: Integration,
    source: Source,
    /// Index of the record whose message triggers the reply (the newest eligible one).
    trigger_index: usize,
    trigger: Wamid,
    trigger_at: OffsetDateTime,
    /// The burst's messages, in order, with their texts for the AI's context. The reply covers
    /// every one of them.
    messages: Vec<(Wamid, String)>,
}

/// The state one group's handling carries from record to record.
#[derive(Default)]
struct GroupState {
    contact: Option<ContactState>,
    burst: Option<Burst>,
}

/// A reply about to be sent and what it answers.
struct ReplyJob<'a> {
    integration: &'a Integration,
    channel: &'a Channel,
    intent: ReplyIntent,
    draft: ReplyDraft,
    covers: Vec<Wamid>,
}

impl<S, X> Processor<S, X>
where
    S: ProcessorStore,
    X: SecretSource,
{
    pub fn new(
        store: S,
        whatsapp: WhatsAppClient,
        llm: LlmClient,
        secrets: SecretsCache<X>,
        settings: ProcessorSettings,
    ) -> Self {
        Self {
            store,
            account_events: None,
            whatsapp,
            llm,
            secrets,
            tenants: Cache::builder()
                .max_capacity(10_000)
                .expire_after(TenantExpiry {
                    known: settings.tenant_cache_ttl,
                    unknown: settings.unknown_tenant_cache_ttl,
                })
                .build(),
            ai_configs: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(settings.ai_config_cache_ttl)
                .build(),
            settings,
        }
    }

    /// Hands account events (Kapso project webhooks) to `handler`, e.g. onboarding's, which
    /// connects the number of a `whatsapp.phone_number.created`.
    pub fn with_account_events(mut self, handler: Arc<dyn AccountEvents>) -> Self {
        self.account_events = Some(handler);
        self
    }

    /// Handles a batch and returns the message ids of the records that failed.
    #[instrument(skip_all, fields(records = records.len()))]
    pub async fn process_batch(
        self: &Arc<Self>,
        records: Vec<QueueRecord>,
        deadline: Instant,
    ) -> Vec<String> {
        let mut groups: Vec<(Option<String>, Vec<QueueRecord>)> = Vec::new();
        for record in records {
            match groups
                .iter_mut()
                .find(|(g, _)| g.is_some() && *g == record.group_id)
            {
                Some((_, members)) => members.push(record),
                None => groups.push((record.group_id.clone(), vec![record])),
            }
        }
        let runs = groups.into_iter().map(|(_, members)| {
            let this = Arc::clone(self);
            async move { this.process_group(&members, deadline).await }
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn process_group(&self, records: &[QueueRecord], deadline: Instant) -> Vec<String> {
        let mut state = GroupState::default();
        let mut failed_from = None;
        for (index, record) in records.iter().enumerate() {
            let span = tracing::info_span!("record", message_id = %record.message_id, event_id = tracing::field::Empty);
            let result = self
                .handle(index, record, &mut state, deadline)
                .instrument(span.clone())
                .await;
            if let Err(e) = result {
                let settled = self.settle(record, &e).instrument(span.clone()).await;
                if !settled {
                    failed_from = Some(index);
                    break;
                }
            }
        }
        // The group's contact, as its last record left it, is the burst's contact.
        if let (Some(burst), Some(contact)) = (state.burst.take(), state.contact.take()) {
            let trigger = burst.trigger_index;
            if let Err(e) = self.reply(burst, contact, deadline).await
                && !self.settle(&records[trigger], &e).await
            {
                failed_from = Some(failed_from.map_or(trigger, |f: usize| f.min(trigger)));
            }
        }
        failed_from
            .map(|from| {
                records[from..]
                    .iter()
                    .map(|r| r.message_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decides what a failed record becomes. A permanent failure is kept in the store with its
    /// cause and acknowledged (`true`): redelivering it could not help, and it would hold up the
    /// conversation behind it. Anything else, or a permanent failure that cannot be kept, is
    /// left for SQS to redeliver (`false`).
    async fn settle(&self, record: &QueueRecord, error: &ProcessError) -> bool {
        let cause = cause_chain(error);
        if !error.is_permanent() {
            tracing::error!(error.cause_chain = %cause, "record failed; it and the rest of its group will be retried");
            return false;
        }
        let id = Envelope::from_json(&record.body)
            .map(|e| e.event_id.to_string())
            .unwrap_or_else(|_| format!("sqs:{}", record.message_id));
        let failed = FailedEvent {
            id,
            reason: cause.clone(),
            body: record.body.clone(),
            at: OffsetDateTime::now_utc(),
        };
        match self.store.record_failed_event(&failed).await {
            Ok(()) => {
                tracing::error!(error.cause_chain = %cause, failed_event = %failed.id, "record can never succeed; kept as a failed event and acknowledged");
                count_metric("PermanentFailure", 1);
                true
            }
            Err(e) => {
                tracing::error!(error.cause_chain = %cause, store_error = %e, "record can never succeed but could not be kept; it will be retried");
                false
            }
        }
    }

    async fn handle(
        &self,
        index: usize,
        record: &QueueRecord,
        state: &mut GroupState,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        if Instant::now() + SEND_RESERVE >= deadline {
            return Err(ProcessError::Deadline);
        }
        let envelope = Envelope::from_json(&record.body)
            .map_err(|e| ProcessError::BadEnvelope(e.to_string()))?;
        tracing::Span::current().record("event_id", tracing::field::display(&envelope.event_id));
        // An account event may be about a number no workspace has yet: it is not routed by
        // the number's integration.
        if envelope.kind == EventKind::Account {
            return self.account_event(&envelope).await;
        }
        // A disconnected number's events are dropped like an unknown number's; its history stays.
        let connected = self.integration(&envelope.phone_number_id).await?;
        let Some(integration) = connected.filter(|i| i.status != IntegrationStatus::Disconnected)
        else {
            tracing::warn!(phone_number_id = %envelope.phone_number_id, "no workspace has this number connected; event dropped");
            count_metric("UnknownPhoneNumber", 1);
            return Ok(());
        };
        match envelope.kind {
            EventKind::InboundMessage => {
                self.inbound(index, &envelope, integration, state, deadline)
                    .await
            }
            EventKind::Status => self.status(&envelope).await,
            EventKind::OutboundMessage => self.outbound_echo(&envelope, &integration).await,
            EventKind::Conversation | EventKind::Account | EventKind::Error => {
                tracing::info!(kind = envelope.kind.as_str(), event_type = %envelope.event_type, "event recorded in logs only");
                Ok(())
            }
        }
    }

    async fn account_event(&self, envelope: &Envelope) -> Result<(), ProcessError> {
        let Some(handler) = &self.account_events else {
            tracing::info!(event_type = %envelope.event_type, "account event recorded in logs only");
            return Ok(());
        };
        if let Some(number) = handler
            .handle(envelope)
            .await
            .map_err(ProcessError::AccountEvent)?
        {
            // The number may have been looked up (and cached as unknown) before it was
            // connected; its next message must find it.
            self.tenants.invalidate(&number).await;
        }
        Ok(())
    }

    async fn integration(&self, pn: &PhoneNumberId) -> Result<Option<Integration>, StoreError> {
        self.tenants
            .try_get_with(pn.clone(), self.store.integration(pn))
            .await
            .map_err(|e: Arc<StoreError>| (*e).clone())
    }

    async fn ai_config(&self, ws: &WorkspaceId) -> Result<AiConfig, StoreError> {
        self.ai_configs
            .try_get_with(ws.clone(), self.store.ai_config(ws))
            .await
            .map_err(|e: Arc<StoreError>| (*e).clone())
    }

    fn inactivity(&self) -> time::Duration {
        time::Duration::try_from(self.settings.conversation_inactivity)
            .unwrap_or(time::Duration::DAY)
    }

    /// The contact and its thread with the envelope's number: the one the group's previous
    /// record left, or a fresh upsert.
    async fn contact(
        &self,
        cached: Option<ContactState>,
        integration: &Integration,
        wa_id: &WaId,
        profile_name: Option<&str>,
    ) -> Result<ContactState, StoreError> {
        match cached {
            Some(c) if c.wa_id == *wa_id && c.phone_number_id == integration.phone_number_id => {
                Ok(c)
            }
            _ => {
                self.store
                    .upsert_contact(
                        &integration.workspace_id,
                        &integration.phone_number_id,
                        wa_id,
                        profile_name,
                        OffsetDateTime::now_utc(),
                    )
                    .await
            }
        }
    }

    async fn inbound(
        &self,
        index: usize,
        envelope: &Envelope,
        integration: Integration,
        state: &mut GroupState,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let Some(conversation) = &envelope.conversation else {
            // Ingest gives every message a customer (phone number or BSUID); an envelope
            // without one is not something we can ever store.
            return Err(ProcessError::BadEnvelope(
                "inbound message without a customer".into(),
            ));
        };
        let wa_id = conversation.wa_id.clone();
        let (message_json, origin) = message_of(envelope);
        let message: meta::InboundMessage = serde_json::from_value(message_json)
            .map_err(|e| ProcessError::BadEnvelope(format!("message: {e}")))?;
        let wamid = Wamid::parse(message.id.as_str())
            .map_err(|e| ProcessError::BadEnvelope(e.to_string()))?;
        let at = envelope.occurred_at.unwrap_or(envelope.received_at);
        let ws = integration.workspace_id.clone();
        let (media_id, mime_type) = media_of(&message);
        let text = message.text().map(str::to_owned);

        // A racing writer (another number's group, or a concurrent batch) may move the thread
        // between the read and the write: read again and retry, rather than fail the record.
        let mut cached = state.contact.take();
        let mut attempt = 0;
        let (stored, mut contact, choice) = loop {
            let contact = self
                .contact(
                    cached.take(),
                    &integration,
                    &wa_id,
                    envelope.profile_name.as_deref(),
                )
                .await?;
            let choice = contact.choose_conversation(at, self.inactivity());
            let new = NewMessage {
                wamid: wamid.clone(),
                direction: Direction::Inbound,
                workspace_id: ws.clone(),
                phone_number_id: envelope.phone_number_id.clone(),
                wa_id: wa_id.clone(),
                conversation_id: choice.id.clone(),
                kind: message.kind.clone(),
                text: text.clone(),
                media_id: media_id.clone(),
                mime_type: mime_type.clone(),
                timestamp: at,
                origin: origin.clone(),
                source: envelope.source,
                status: None,
                ai: None,
                raw: Some(envelope.raw.get().to_owned()),
            };
            match self.store.store_inbound(&new, &choice).await {
                Ok(stored) => break (stored, contact, choice),
                Err(StoreError::Conflict(why)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::info!(
                        attempt,
                        why,
                        "thread changed while storing; reading it again"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        };
        if !stored.first_time {
            tracing::info!(wamid = %wamid, covered = stored.covered(), "message already stored (redelivery)");
        }
        follow(&mut contact, &choice);
        // A racing writer may have stored the message first, in the conversation it chose.
        contact.conversation_id = Some(stored.conversation_id.clone());
        // A redelivery of a message whose split reply was interrupted sends the rest of it.
        if !stored.first_time
            && let Some(intent) = &stored.covered_by
        {
            self.resume(intent, &integration, deadline).await?;
        }

        // Opt-out and opt-in keywords are answered with a fixed confirmation, never by AI.
        if let Some(word) = text.as_deref().and_then(keyword) {
            let result = self
                .opt_keyword(
                    word,
                    &integration,
                    envelope,
                    &mut contact,
                    &wamid,
                    &stored,
                    at,
                    deadline,
                )
                .await;
            state.burst = None;
            state.contact = Some(contact);
            return result;
        }

        let skip = self
            .skip_reason(
                &contact,
                &integration,
                &message.kind,
                at,
                origin.as_deref(),
                &stored,
            )
            .await;
        state.contact = Some(contact);
        match skip? {
            Some(reason) => {
                tracing::info!(wamid = %wamid, reason, "no AI reply");
            }
            None => {
                let burst = state.burst.get_or_insert_with(|| Burst {
                    integration: integration.clone(),
                    source: envelope.source,
                    trigger_index: index,
                    trigger: wamid.clone(),
                    trigger_at: at,
                    messages: Vec::new(),
                });
                burst.trigger_index = index;
                burst.trigger = wamid.clone();
                burst.trigger_at = burst.trigger_at.max(at);
                burst
                    .messages
                    .push((wamid, text.unwrap_or_else(|| format!("[{}]", message.kind))));
            }
        }
        Ok(())
    }

    /// Applies an opt-out or opt-in keyword and confirms it once.
    #[allow(clippy::too_many_arguments)]
    async fn opt_keyword(
        &self,
        word: Keyword,
        integration: &Integration,
        envelope: &Envelope,
        contact: &mut ContactState,
        wamid: &Wamid,
        stored: &Stored,
        at: OffsetDateTime,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let opted_out = word == Keyword::OptOut;
        let changed = contact.opted_out != opted_out;
        if changed {
            self.store
                .set_opt_out(
                    &integration.workspace_id,
                    &contact.wa_id,
                    opted_out,
                    OffsetDateTime::now_utc(),
                )
                .await?;
            contact.opted_out = opted_out;
        }
        // Confirm once: when this message changed the state, or on a redelivery (whose first
        // try may have failed to confirm; the intent and its coverage stop a second
        // confirmation). A replay of an old keyword changes the state silently.
        let confirm = (changed || !stored.first_time) && !stored.covered() && !self.too_old(at);
        if !confirm {
            tracing::info!(wamid = %wamid, opted_out, changed, "opt keyword applied without confirmation");
            return Ok(());
        }
        let confirmation = if opted_out {
            &self.settings.opt_out_confirmation
        } else {
            &self.settings.opt_in_confirmation
        };
        let secrets = self.secrets.get().await.map_err(ProcessError::Secrets)?;
        // The keyword itself is applied above, whatever the number can send.
        let channel = match channel(integration, &secrets) {
            Ok(channel) => channel,
            Err(e) => {
                tracing::warn!(wamid = %wamid, opted_out, reason = %e, "opt keyword applied without confirmation");
                return Ok(());
            }
        };
        let draft = ReplyDraft {
            workspace_id: integration.workspace_id.clone(),
            phone_number_id: envelope.phone_number_id.clone(),
            wa_id: contact.wa_id.clone(),
            conversation_id: stored.conversation_id.clone(),
            text: confirmation.clone(),
            ai: None,
            source: envelope.source,
            created_at: OffsetDateTime::now_utc(),
            answers_through: Some(at),
        };
        let intent = ReplyIntent {
            conversation_id: stored.conversation_id.clone(),
            trigger: wamid.clone(),
        };
        self.send_reply(
            ReplyJob {
                integration,
                channel: &channel,
                intent,
                draft,
                covers: vec![wamid.clone()],
            },
            deadline,
        )
        .await
    }

    /// Meta retries deliveries for days: a message this old gets no automatic answer.
    fn too_old(&self, at: OffsetDateTime) -> bool {
        let max_age = time::Duration::try_from(self.settings.max_message_age)
            .unwrap_or(time::Duration::MINUTE * 10);
        OffsetDateTime::now_utc() - at > max_age
    }

    /// Why a message gets no AI reply, if it does not.
    async fn skip_reason(
        &self,
        contact: &ContactState,
        integration: &Integration,
        kind: &str,
        at: OffsetDateTime,
        origin: Option<&str>,
        stored: &Stored,
    ) -> Result<Option<&'static str>, ProcessError> {
        if !answerable(kind) {
            return Ok(Some("this kind of message is stored, not answered"));
        }
        if self.too_old(at) {
            return Ok(Some("message is too old"));
        }
        if matches!(origin, Some("business_app" | "history_sync")) {
            return Ok(Some("message did not come from the customer live"));
        }
        // Coverage is recorded per message when a reply begins (and removed if the send
        // certainly did not happen), so a redelivery is skipped exactly when a reply covers it.
        if stored.covered() {
            return Ok(Some("a reply already covers this message"));
        }
        if contact.bot_paused {
            return Ok(Some("conversation is handed to a person"));
        }
        if contact.opted_out {
            return Ok(Some("contact opted out"));
        }
        // A number whose token WhatsApp refused (190) is not used until it is reconnected; its
        // messages are still stored. (A disconnected number's events are dropped earlier.)
        if integration.status != IntegrationStatus::Active {
            return Ok(Some("the number's connection is not active"));
        }
        if !self.ai_config(&integration.workspace_id).await?.enabled {
            return Ok(Some("AI is disabled for the workspace"));
        }
        Ok(None)
    }

    async fn status(&self, envelope: &Envelope) -> Result<(), ProcessError> {
        let Some((update, callback)) = status_of(envelope)? else {
            tracing::info!(event_type = %envelope.event_type, "status not tracked");
            return Ok(());
        };
        let outcome = self.store.apply_status(&update).await?;
        tracing::info!(wamid = %update.wamid, status = update.status.as_str(), ?outcome, "status");
        if outcome == StatusOutcome::Early
            && let Some(intent) = callback.as_deref().and_then(ReplyIntent::parse_key)
            && self.store.reconcile_reply(&intent, &update).await?
        {
            tracing::warn!(wamid = %update.wamid, "a reply whose outcome was unknown is reconciled by its status");
        }
        Ok(())
    }

    /// A message the business sent from another client (the WhatsApp Business app, another
    /// tool): stored in its conversation, opening one if needed, and never answered. A person
    /// answering from the Business app takes the conversation over from the bot.
    async fn outbound_echo(
        &self,
        envelope: &Envelope,
        integration: &Integration,
    ) -> Result<(), ProcessError> {
        let Some(conversation) = &envelope.conversation else {
            return Err(ProcessError::BadEnvelope(
                "outbound echo without a customer".into(),
            ));
        };
        let (message_json, origin) = message_of(envelope);
        let message: meta::InboundMessage = serde_json::from_value(message_json)
            .map_err(|e| ProcessError::BadEnvelope(format!("message: {e}")))?;
        let wamid = Wamid::parse(message.id.as_str())
            .map_err(|e| ProcessError::BadEnvelope(e.to_string()))?;
        let at = envelope.occurred_at.unwrap_or(envelope.received_at);
        let hand_over = origin.as_deref() == Some("business_app")
            && self
                .ai_config(&integration.workspace_id)
                .await?
                .pause_on_human_reply;
        let (media_id, mime_type) = media_of(&message);
        let mut attempt = 0;
        loop {
            let contact = self
                .contact(None, integration, &conversation.wa_id, None)
                .await?;
            let choice = contact.choose_conversation_for_echo(at, self.inactivity());
            let new = NewMessage {
                wamid: wamid.clone(),
                direction: Direction::Outbound,
                workspace_id: integration.workspace_id.clone(),
                phone_number_id: envelope.phone_number_id.clone(),
                wa_id: conversation.wa_id.clone(),
                conversation_id: choice.id.clone(),
                kind: message.kind.clone(),
                text: message.text().map(str::to_owned),
                media_id: media_id.clone(),
                mime_type: mime_type.clone(),
                timestamp: at,
                origin: origin.clone(),
                source: envelope.source,
                status: Some(MessageStatus::Sent),
                ai: None,
                raw: Some(envelope.raw.get().to_owned()),
            };
            match self.store.store_outbound(&new, &choice, hand_over).await {
                Ok(stored) => {
                    tracing::info!(wamid = %wamid, stored, hand_over, "outbound echo");
                    return Ok(());
                }
                Err(StoreError::Conflict(why)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::info!(
                        attempt,
                        why,
                        "thread changed while storing; reading it again"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Answers a burst with one AI reply.
    #[instrument(skip_all, fields(trigger = %burst.trigger, messages = burst.messages.len()))]
    async fn reply(
        &self,
        burst: Burst,
        contact: ContactState,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let Burst {
            integration,
            source,
            trigger,
            trigger_at,
            messages,
            ..
        } = burst;
        let Some(conversation_id) = contact.conversation_id.clone() else {
            return Ok(());
        };
        let config = self.ai_config(&integration.workspace_id).await?;
        let secrets = self.secrets.get().await.map_err(ProcessError::Secrets)?;
        let Ok(channel) = channel(&integration, &secrets) else {
            return Ok(());
        };
        let send_by = deadline.checked_sub(SEND_RESERVE).unwrap_or(deadline);

        // Read receipt and typing indicator first, so the customer sees we are on it.
        let read = Outgoing::mark_read(trigger.clone(), true);
        if let Err(e) = self
            .whatsapp
            .send(&channel, &integration.phone_number_id, &read, send_by)
            .await
        {
            tracing::warn!(error = %e, "could not mark the message read");
        }

        let history = self
            .store
            .history(&conversation_id, config.history_length)
            .await?;
        let mut chat = vec![ChatMessage {
            role: Role::System,
            content: config.system_prompt.clone(),
        }];
        for item in &history {
            if messages.iter().any(|(w, _)| *w == item.wamid) {
                continue;
            }
            let content = item
                .text
                .clone()
                .unwrap_or_else(|| format!("[{}]", item.kind));
            let role = match item.direction {
                Direction::Inbound => Role::User,
                Direction::Outbound => Role::Assistant,
            };
            chat.push(ChatMessage { role, content });
        }
        for (_, text) in &messages {
            chat.push(ChatMessage {
                role: Role::User,
                content: text.clone(),
            });
        }
        let request = ChatRequest {
            messages: chat,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
        };
        let responder = AiResponder::with_client(
            self.llm.clone(),
            self.grok(&config, &secrets),
            self.sealion(&config),
        );
        let contact_key = format!(
            "{}:{}",
            integration.workspace_id.as_str(),
            contact.wa_id.as_str()
        );
        let answer_by = deadline.checked_sub(LLM_RESERVE).unwrap_or(deadline);
        let completion = responder
            .reply(&contact_key, config.grok_weight, &request, answer_by)
            .await
            .map_err(|e| {
                if e.is_permanent() {
                    ProcessError::AiRefused(e.to_string())
                } else {
                    ProcessError::Ai(e.to_string())
                }
            })?;
        tracing::info!(provider = completion.provider.as_str(), model = %completion.model, latency_ms = completion.latency_ms, "AI reply ready");

        let draft = ReplyDraft {
            workspace_id: integration.workspace_id.clone(),
            phone_number_id: integration.phone_number_id.clone(),
            wa_id: contact.wa_id.clone(),
            conversation_id: conversation_id.clone(),
            text: completion.text.clone(),
            ai: Some(completion),
            source,
            created_at: OffsetDateTime::now_utc(),
            answers_through: Some(trigger_at),
        };
        let intent = ReplyIntent {
            conversation_id,
            trigger,
        };
        self.send_reply(
            ReplyJob {
                integration: &integration,
                channel: &channel,
                intent,
                draft,
                covers: messages.into_iter().map(|(w, _)| w).collect(),
            },
            deadline,
        )
        .await
    }

    /// Grok, when the app secret holds its key.
    fn grok(&self, config: &AiConfig, secrets: &AppSecrets) -> Option<ProviderConfig> {
        let key = secrets.grok_api_key.clone()?;
        Some(ProviderConfig::grok(
            self.settings.grok_base_url.clone(),
            config.grok_model.clone(),
            key,
        ))
    }

    /// SEA-LION, when a base URL is configured.
    fn sealion(&self, config: &AiConfig) -> Option<ProviderConfig> {
        let base = self.settings.sealion_base_url.clone()?;
        Some(ProviderConfig::sealion(base, config.sealion_model.clone()))
    }

    /// Sends a reply at most once: the intent (with the messages it covers) is recorded first,
    /// and only its owner sends. A reply longer than one WhatsApp text goes out as several
    /// parts, in order, under the same intent. Every outcome is recorded before returning.
    async fn send_reply(
        &self,
        mut job: ReplyJob<'_>,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let mut attempts = 0;
        loop {
            match self
                .store
                .begin_reply(&job.intent, &job.draft, &job.covers)
                .await?
            {
                IntentOutcome::Acquired => break,
                IntentOutcome::AlreadySent => {
                    tracing::info!("reply already sent for this message");
                    return Ok(());
                }
                IntentOutcome::Covered => {
                    // A racing reply covers some of the messages. If it covers the trigger, it
                    // answered the newest of them; otherwise this reply answers what it left.
                    let left = self.store.uncovered(&job.covers).await?;
                    if attempts == CONFLICT_RETRIES || !left.contains(&job.intent.trigger) {
                        tracing::info!("another reply already covers these messages");
                        return Ok(());
                    }
                    attempts += 1;
                    tracing::info!(
                        left = left.len(),
                        "another reply covers some of these messages; answering the rest"
                    );
                    job.covers = left;
                }
                IntentOutcome::OutcomeUnknown => {
                    tracing::warn!(
                        "an earlier send of this reply has an unknown outcome; not sending again"
                    );
                    count_metric("ReplyOutcomeUnknown", 1);
                    return Ok(());
                }
            }
        }
        self.send_parts(&job, 0, deadline).await
    }

    /// Sends the rest of a split reply whose next part could not go out (throttled, or the API
    /// unreachable), if `intent` is such a reply: only one invocation takes it back.
    async fn resume(
        &self,
        intent: &ReplyIntent,
        integration: &Integration,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let secrets = self.secrets.get().await.map_err(ProcessError::Secrets)?;
        let Ok(channel) = channel(integration, &secrets) else {
            return Ok(());
        };
        let Some(Resumption {
            draft,
            covers,
            parts_sent,
        }) = self.store.resume_reply(intent).await?
        else {
            return Ok(());
        };
        tracing::info!(intent = %intent.key(), parts_sent, "resuming an interrupted split reply");
        let job = ReplyJob {
            integration,
            channel: &channel,
            intent: intent.clone(),
            draft,
            covers,
        };
        self.send_parts(&job, parts_sent, deadline).await
    }

    /// Sends the parts of the job's reply after the first `parts_sent`, in order, recording each.
    /// Every outcome is recorded before returning.
    async fn send_parts(
        &self,
        job: &ReplyJob<'_>,
        parts_sent: u32,
        deadline: Instant,
    ) -> Result<(), ProcessError> {
        let ReplyJob {
            integration,
            channel,
            intent,
            draft,
            covers,
        } = job;
        let send_by = deadline.checked_sub(SEND_RESERVE).unwrap_or(deadline);
        let mut parts = split_text(&draft.text, MAX_TEXT_BODY);
        if parts.is_empty() {
            parts.push(draft.text.clone());
        }
        let of = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let skip = usize::try_from(parts_sent).unwrap_or(usize::MAX);
        for (index, text) in (1..).zip(&parts).skip(skip) {
            let part = ReplyPart { index, of };
            let mut message = Outgoing::text(draft.wa_id.clone(), text.clone());
            message.biz_opaque_callback_data = Some(intent.key());
            let error = match self
                .whatsapp
                .send(channel, &integration.phone_number_id, &message, send_by)
                .await
            {
                Ok(sent) => {
                    let Some(wamid) = sent.wamid else {
                        return self
                            .unknown(intent, "the API accepted the reply without a message id")
                            .await;
                    };
                    self.store
                        .record_reply(
                            intent,
                            &draft.message(wamid.clone(), text),
                            part,
                            draft.answers_through,
                        )
                        .await?;
                    tracing::info!(wamid = %wamid, part = index, of, "reply sent");
                    continue;
                }
                Err(error) => error,
            };
            if error.may_have_been_delivered() {
                tracing::error!(error = %error, part = index, "reply outcome unknown; flagged for reconciliation");
                return self.unknown(intent, &error.to_string()).await;
            }
            if error.is_retryable() {
                if index == 1 {
                    // Certainly not sent, and nothing of it was: let SQS redeliver and try again.
                    self.store.release_reply(intent, covers).await?;
                } else {
                    // The earlier parts went out and this one certainly did not: the
                    // redelivery sends the rest (see `resume`).
                    tracing::warn!(error = %error, part = index, of, "a later part of a split reply must wait; the rest goes out on redelivery");
                    count_metric("ReplyInterrupted", 1);
                    self.store
                        .flag_reply(intent, UnsettledReply::Interrupted, &error.to_string())
                        .await?;
                }
                return Err(ProcessError::SendLater(error));
            }
            if let WhatsAppError::TokenInvalid { .. } = error {
                self.store
                    .mark_integration_error(&integration.phone_number_id, &error.to_string())
                    .await?;
                self.tenants.invalidate(&integration.phone_number_id).await;
            }
            tracing::error!(error = %error, code = ?error.code(), part = index, "reply refused by the WhatsApp API");
            count_metric("ReplyRefused", 1);
            self.store
                .fail_reply(intent, error.code(), &error.to_string())
                .await?;
            return Ok(());
        }
        Ok(())
    }

    /// Flags a reply whose outcome is unknown: it is never sent again, and its status webhook
    /// (or a person) settles it.
    async fn unknown(&self, intent: &ReplyIntent, reason: &str) -> Result<(), ProcessError> {
        count_metric("ReplyOutcomeUnknown", 1);
        self.store
            .flag_reply(intent, UnsettledReply::Unknown, reason)
            .await?;
        Ok(())
    }
}

/// Keeps the in-memory contact in step with the message just stored in `choice`.
fn follow(contact: &mut ContactState, choice: &ConversationChoice) {
    if choice.is_new {
        // As the store wrote the thread: an inbound message opens its conversation.
        contact.bot_paused = false;
        contact.started_at = choice.last_inbound_at;
        contact.answered_through = None;
    }
    contact.conversation_id = Some(choice.id.clone());
    contact.last_inbound_at = choice.last_inbound_at.or(contact.last_inbound_at);
}

/// Whether a message of this type may get an AI reply. Reactions (added or removed), system
/// notices (e.g. `user_changed_number`) and messages the API cannot show us (`unsupported`)
/// are stored for the record but not answered: the model would only see a placeholder.
fn answerable(kind: &str) -> bool {
    matches!(
        kind,
        "text"
            | "image"
            | "audio"
            | "video"
            | "document"
            | "sticker"
            | "location"
            | "contacts"
            | "interactive"
            | "button"
            | "order"
    )
}

/// Why a number cannot send.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Unsendable {
    /// Disconnected, or in `error` (WhatsApp refused its token): not used until reconnected.
    #[error("the number cannot send: {0}")]
    Inactive(String),
    #[error("no API credentials are configured for the number")]
    NoCredentials,
}

/// How an integration sends; the one place every send (AI replies, opt-keyword confirmations,
/// the dashboard's messages, reminders) gets its credentials. A number that is not active
/// sends nothing. A Kapso number goes through Kapso with the platform key; a Meta number with
/// a token of its own (a manual integration) sends with that token, opened here and handed
/// straight to the client, and never with the app's; a Meta number without one (the seeded
/// local and demo numbers) uses the app-wide `meta_access_token`. Missing or unopenable
/// credentials are logged and counted.
pub(crate) fn channel(
    integration: &Integration,
    secrets: &AppSecrets,
) -> Result<Channel, Unsendable> {
    if integration.status != IntegrationStatus::Active {
        return Err(Unsendable::Inactive(
            integration
                .error
                .clone()
                .unwrap_or_else(|| "it is not connected".into()),
        ));
    }
    let channel = match (integration.provider, &integration.access_token) {
        (Provider::Kapso, _) => secrets
            .kapso_api_key
            .clone()
            .map(|api_key| Channel::Kapso { api_key }),
        (Provider::Meta, Some(sealed)) => EncryptionKey::from_secrets(secrets)
            .and_then(|key| key.open(&integration.phone_number_id, sealed))
            .inspect_err(
                |e| tracing::error!(error = %e, "the number's own access token cannot be opened"),
            )
            .ok()
            .map(|access_token| Channel::Meta { access_token }),
        (Provider::Meta, None) => secrets
            .meta_access_token
            .clone()
            .map(|access_token| Channel::Meta { access_token }),
    };
    channel.ok_or_else(|| {
        tracing::error!(provider = ?integration.provider, "no API credentials for the number; cannot send");
        count_metric("MissingSendCredentials", 1);
        Unsendable::NoCredentials
    })
}

/// Known tenants are cached longer than unknown numbers, so a newly connected number is
/// picked up quickly while a flood of unknown ones does not hammer the table.
struct TenantExpiry {
    known: Duration,
    unknown: Duration,
}

impl moka::Expiry<PhoneNumberId, Option<Integration>> for TenantExpiry {
    fn expire_after_create(
        &self,
        _key: &PhoneNumberId,
        value: &Option<Integration>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.known
        } else {
            self.unknown
        })
    }
}

/// The message object inside an envelope (Meta's raw message, or Kapso's `message`), and its
/// Kapso origin where there is one.
fn message_of(envelope: &Envelope) -> (Value, Option<String>) {
    let raw: Value = serde_json::from_str(envelope.raw.get()).unwrap_or(Value::Null);
    match (envelope.source, raw.get("message")) {
        (Source::Kapso, Some(message)) => {
            let origin = message
                .pointer("/kapso/origin")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (message.clone(), origin)
        }
        _ => (raw, None),
    }
}

fn media_of(message: &meta::InboundMessage) -> (Option<String>, Option<String>) {
    use meta::Content;
    match message.content() {
        Content::Image(m)
        | Content::Audio(m)
        | Content::Video(m)
        | Content::Document(m)
        | Content::Sticker(m) => (Some(m.id.clone()), m.mime_type.clone()),
        _ => (None, None),
    }
}

/// The status update an envelope carries, with its `biz_opaque_callback_data`.
fn status_of(envelope: &Envelope) -> Result<Option<(StatusUpdate, Option<String>)>, ProcessError> {
    let Some(status) = MessageStatus::parse(&envelope.event_type) else {
        return Ok(None);
    };
    let raw: Value = serde_json::from_str(envelope.raw.get())
        .map_err(|e| ProcessError::BadEnvelope(e.to_string()))?;
    // Meta sends the status object itself; Kapso sends the message with its statuses inside.
    let (wamid, status_json) = match raw.get("message") {
        Some(message) => {
            let id = message
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let entry = message
                .pointer("/kapso/statuses")
                .and_then(Value::as_array)
                .and_then(|s| {
                    s.iter()
                        .rev()
                        .find(|s| s.get("status").and_then(Value::as_str) == Some(status.as_str()))
                })
                .cloned()
                .unwrap_or(Value::Null);
            (id, entry)
        }
        None => (
            raw.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            raw.clone(),
        ),
    };
    let wamid =
        Wamid::parse(wamid).map_err(|e| ProcessError::BadEnvelope(format!("status wamid: {e}")))?;
    let parsed: Option<meta::Status> = serde_json::from_value(status_json.clone()).ok();
    let error = parsed.as_ref().and_then(|s| s.errors.first().cloned());
    let at = parsed
        .as_ref()
        .and_then(|s| s.timestamp.parse::<i64>().ok())
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .or(envelope.occurred_at)
        .unwrap_or(envelope.received_at);
    Ok(Some((
        StatusUpdate {
            wamid,
            phone_number_id: envelope.phone_number_id.clone(),
            recipient: envelope.conversation.as_ref().map(|c| c.wa_id.clone()),
            status,
            at,
            error_code: error.as_ref().map(|e| e.code),
            error_title: error.and_then(|e| e.title.or(e.message)),
            raw: status_json.to_string(),
        },
        parsed.and_then(|s| s.biz_opaque_callback_data),
    )))
}
