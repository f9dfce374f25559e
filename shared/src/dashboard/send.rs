//! `POST /v1/messages`: a person sends a message to a contact from the dashboard.
//!
//! The message goes out through the one WhatsApp client and is stored exactly as the processor
//! stores its replies: a reply intent is recorded first, covering the customer's messages that
//! no reply answers yet, so the AI does not answer them too; the send's outcome then settles
//! the intent. An `Idempotency-Key` makes a retried request return the first answer and send
//! nothing, across containers: the claim is a conditional write in the table.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardError;
use crate::conversations::model::{
    ContactState, Direction, Integration, IntentOutcome, MessageStatus, NewMessage, Provider,
    ReplyDraft, ReplyIntent, ReplyPart, UnsettledReply,
};
use crate::conversations::processor::channel;
use crate::conversations::store::{MessageStore, ReplyStore, StoreError, StoreResult, TenantStore};
use crate::envelope::Source;
use crate::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};
use crate::secrets::{SecretSource, SecretsCache};
use crate::whatsapp::{
    ListRow, ListSection, MediaKind, MediaSource, Outgoing, OutgoingKind, ReplyButton,
    WhatsAppClient, WhatsAppError,
};

/// The customer-service window: only templates may go to a customer who has not written for
/// this long.
pub const CUSTOMER_SERVICE_WINDOW: time::Duration = time::Duration::hours(24);
/// How long a send may take, retries included, before the API answers.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How many of the conversation's newest messages are looked at for ones to cover.
const PENDING_LOOKBACK: u32 = 50;
/// The longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

// ----- request and response ---------------------------------------------------------------------

/// A message to send. Name the contact by `contactId` or by `phone`, not both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The contact's id (its WhatsApp id: phone digits, or a business-scoped user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// The contact's phone number in E.164 form, e.g. `+16505551234`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Which of the workspace's numbers sends. Required when the workspace has more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    pub message: MessageContent,
}

/// What to send; `type` says which kind. (Its variants do not refuse unknown fields: their
/// schemas are combined with `type` by `allOf`, which `additionalProperties: false` would
/// make unsatisfiable.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MessageContent {
    Text(TextContent),
    /// The only kind allowed outside the 24-hour window.
    Template(TemplateContent),
    Image(MediaContent),
    Video(MediaContent),
    Audio(MediaContent),
    Document(MediaContent),
    Sticker(MediaContent),
    Buttons(ButtonsContent),
    List(ListContent),
    Reaction(ReactionContent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TextContent {
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    /// Render a preview of the first URL.
    #[serde(default)]
    pub preview_url: bool,
    /// The wamid of the message this one quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateContent {
    /// An approved template's name.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// Meta's component objects (header, body and button parameters), passed through.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

/// Media by public HTTPS `link` or uploaded media `id` (one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Images, videos and documents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Documents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ButtonsContent {
    pub body: String,
    /// One to three quick-reply buttons.
    pub buttons: Vec<Button>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Button {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListContent {
    pub body: String,
    /// The label of the button that opens the list.
    pub button: String,
    pub sections: Vec<Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// May be empty only in a list of one section.
    #[serde(default)]
    pub title: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReactionContent {
    /// The wamid of the message reacted to.
    pub message_id: String,
    /// An emoji; empty removes an earlier reaction.
    pub emoji: String,
}

/// A message WhatsApp accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// WhatsApp's id of the message; its statuses arrive under it.
    pub wamid: String,
    pub conversation_id: String,
    pub contact_id: String,
    pub phone_number_id: String,
    /// `sent`; later statuses show on the message in its conversation.
    pub status: String,
    /// The customer's messages this one answers: the AI does not answer them too.
    pub covers: Vec<String>,
}

// ----- errors -----------------------------------------------------------------------------------

/// Why a send failed. The `send-api` function maps each variant to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Dashboard(#[from] DashboardError),
    #[error(
        "the contact last wrote more than 24 hours ago (or never): only a template message may be sent; use a template"
    )]
    OutsideWindow,
    #[error(
        "the contact opted out; only a template the workspace marks as transactional may be sent"
    )]
    OptedOut,
    #[error("{0}")]
    NumberUnavailable(String),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInFlight,
    #[error("the app's credentials are unavailable")]
    SecretsUnavailable,
    #[error("WhatsApp is throttling this number; retry later")]
    Throttled { retry_after: Option<Duration> },
    #[error(transparent)]
    Upstream(#[from] UpstreamFailure),
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> Self {
        Self::Dashboard(e.into())
    }
}

/// A send that reached WhatsApp and failed. Kept with the idempotency key, so a retry gets the
/// same answer without sending again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamFailure {
    /// WhatsApp refused the number's token; the integration is marked `error`.
    #[error("WhatsApp refused this number's access token; reconnect the number")]
    TokenInvalid,
    /// WhatsApp refused the message for good.
    #[error("WhatsApp refused the message{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Rejected { code: Option<i64>, message: String },
    /// WhatsApp could not be reached, or answered with a server error before acting.
    #[error("WhatsApp could not be reached; nothing was sent, retry later")]
    Unreachable,
    /// The send may or may not have gone out; it is never repeated, and its status webhook
    /// settles it.
    #[error("WhatsApp did not confirm the send: the message may have been sent; do not resend it")]
    OutcomeUnknown,
}

// ----- ports ------------------------------------------------------------------------------------

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key.
    New,
    /// Another request with this key has not finished.
    InFlight { request_hash: String },
    /// A request with this key finished with `result` (JSON).
    Done {
        request_hash: String,
        result: String,
    },
}

/// Port: idempotency keys, one item per workspace and key, with a TTL.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims the key for a request with this hash, unless a request already has it.
    fn claim_idempotency_key(
        &self,
        workspace_id: &WorkspaceId,
        key: &IdempotencyKey,
        request_hash: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Claim>> + Send;
    /// Keeps the final result (JSON) for retries.
    fn finish_idempotency_key(
        &self,
        workspace_id: &WorkspaceId,
        key: &IdempotencyKey,
        result: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Frees the key of a request that certainly sent nothing, so a retry runs again.
    fn release_idempotency_key(
        &self,
        workspace_id: &WorkspaceId,
        key: &IdempotencyKey,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Port: the reads a send needs beyond the processor's ports.
pub trait SendStore:
    TenantStore + MessageStore + ReplyStore + IdempotencyStore + Send + Sync + 'static
{
    /// The workspace's numbers.
    fn workspace_integrations(
        &self,
        workspace_id: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<Vec<Integration>>> + Send;
    /// A contact with its thread with `phone_number_id`, without creating or touching it.
    fn contact_thread(
        &self,
        workspace_id: &WorkspaceId,
        phone_number_id: &PhoneNumberId,
        wa_id: &WaId,
    ) -> impl Future<Output = StoreResult<Option<ContactState>>> + Send;
    /// The template names the workspace marks as transactional (sent even to opted-out contacts).
    fn transactional_templates(
        &self,
        workspace_id: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
}

/// An `Idempotency-Key` header value: 1 to 255 visible ASCII characters, no `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, DashboardError> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_IDEMPOTENCY_KEY
            && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !ok {
            return Err(DashboardError::invalid(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters without '#'"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the final result of a keyed request is kept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Kept {
    Sent { message: SentMessage },
    Failed { failure: UpstreamFailure },
}

// ----- the use case -----------------------------------------------------------------------------

/// What a send needs: the store, the WhatsApp client and the app's credentials.
pub struct Sender<'a, D, S> {
    pub store: &'a D,
    pub whatsapp: &'a WhatsAppClient,
    pub secrets: &'a SecretsCache<S>,
}

/// Sends `request` for the caller's workspace, once per idempotency key.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, kind = tracing::field::Empty))]
pub async fn send<D: SendStore, S: SecretSource>(
    sender: &Sender<'_, D, S>,
    workspace_id: &WorkspaceId,
    idempotency_key: Option<&IdempotencyKey>,
    request: SendMessageRequest,
) -> Result<SentMessage, SendError> {
    let Some(key) = idempotency_key else {
        return send_once(sender, workspace_id, &request).await;
    };
    let hash = request_hash(&request);
    let claim = sender
        .store
        .claim_idempotency_key(workspace_id, key, &hash, OffsetDateTime::now_utc())
        .await?;
    match claim {
        Claim::New => {}
        Claim::InFlight { request_hash } | Claim::Done { request_hash, .. }
            if request_hash != hash =>
        {
            return Err(SendError::IdempotencyKeyReused);
        }
        Claim::InFlight { .. } => return Err(SendError::IdempotencyInFlight),
        Claim::Done { result, .. } => {
            tracing::info!("idempotent retry: answering with the first result");
            return match serde_json::from_str::<Kept>(&result)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
            {
                Kept::Sent { message } => Ok(message),
                Kept::Failed { failure } => Err(failure.into()),
            };
        }
    }
    let result = send_once(sender, workspace_id, &request).await;
    let kept = match &result {
        Ok(message) => Some(Kept::Sent {
            message: message.clone(),
        }),
        // Reached WhatsApp and settled: a retry must get this answer, not a second send.
        Err(SendError::Upstream(failure)) if *failure != UpstreamFailure::Unreachable => {
            Some(Kept::Failed {
                failure: failure.clone(),
            })
        }
        Err(_) => None,
    };
    let settle = match kept {
        Some(kept) => {
            let json =
                serde_json::to_string(&kept).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sender
                .store
                .finish_idempotency_key(workspace_id, key, &json)
                .await
        }
        // Certainly nothing was sent: free the key, so the same request may be retried.
        None => {
            sender
                .store
                .release_idempotency_key(workspace_id, key)
                .await
        }
    };
    if let Err(e) = settle {
        // The key stays in flight (until its TTL): retries are refused, never sent twice.
        tracing::error!(error = %e, "could not settle the idempotency key");
    }
    result
}

/// A stable hash of a request, to tell a retry from another request under the same
/// `Idempotency-Key`: the request as parsed, so key order and whitespace do not matter.
pub fn request_hash<T: Serialize>(request: &T) -> String {
    // Through `Value`, whose maps are sorted: the same request always hashes the same.
    let canonical = serde_json::to_value(request)
        .map(|v| v.to_string())
        .unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

async fn send_once<D: SendStore, S: SecretSource>(
    sender: &Sender<'_, D, S>,
    ws: &WorkspaceId,
    request: &SendMessageRequest,
) -> Result<SentMessage, SendError> {
    let store = sender.store;
    let wa_id = recipient(request)?;
    let outgoing = to_outgoing(&request.message, wa_id.clone())?;
    tracing::Span::current().record("kind", outgoing.kind_name());
    let integration = sending_number(store, ws, request.phone_number_id.as_deref()).await?;
    let pn = integration.phone_number_id.clone();
    let contact = store
        .contact_thread(ws, &pn, &wa_id)
        .await?
        .ok_or(DashboardError::NotFound)?;
    let now = OffsetDateTime::now_utc();
    let template = match &request.message {
        MessageContent::Template(t) => Some(t.name.as_str()),
        _ => None,
    };
    if contact.opted_out {
        let allowed = match template {
            Some(name) => store
                .transactional_templates(ws)
                .await?
                .iter()
                .any(|t| t == name),
            None => false,
        };
        if !allowed {
            return Err(SendError::OptedOut);
        }
    }
    let window_open = contact
        .last_inbound_at
        .is_some_and(|last| now - last < CUSTOMER_SERVICE_WINDOW);
    if template.is_none() && !window_open {
        return Err(SendError::OutsideWindow);
    }
    let secrets = sender
        .secrets
        .get()
        .await
        .map_err(|_| SendError::SecretsUnavailable)?;
    let channel = channel(&integration, &secrets)
        .map_err(|e| SendError::NumberUnavailable(format!("{pn}: {e}")))?;
    let deadline = Instant::now() + SEND_TIMEOUT;
    let job = Job {
        integration: &integration,
        contact: &contact,
        outgoing,
        stored: stored_content(&request.message),
        at: now,
    };
    match current_conversation(&contact, now) {
        Some(conversation) => in_conversation(sender, &channel, job, conversation, deadline).await,
        None => opening_conversation(sender, &channel, job, deadline).await,
    }
}

/// One send, resolved.
struct Job<'a> {
    integration: &'a Integration,
    contact: &'a ContactState,
    outgoing: Outgoing,
    stored: Stored,
    at: OffsetDateTime,
}

/// The thread's conversation while it is active (the processor's inactivity rule, 24 hours).
fn current_conversation(contact: &ContactState, now: OffsetDateTime) -> Option<ConversationId> {
    let choice = contact.choose_conversation_for_echo(now, CUSTOMER_SERVICE_WINDOW);
    (!choice.is_new).then_some(choice.id)
}

/// Sends in the current conversation through a reply intent covering the customer's messages
/// that no reply answers yet.
async fn in_conversation<D: SendStore, S: SecretSource>(
    sender: &Sender<'_, D, S>,
    channel: &crate::whatsapp::Channel,
    job: Job<'_>,
    conversation_id: ConversationId,
    deadline: Instant,
) -> Result<SentMessage, SendError> {
    let store = sender.store;
    let contact = job.contact;
    // Coverage is per message, as the processor decides it: a customer message is pending
    // while no reply intent covers it, whatever its timestamp says (two messages of the same
    // second may be one answered, one not). The history read may lag a mark written a moment
    // ago; the intent's conditions catch that, and the loop below covers what is left.
    let pending: Vec<(Wamid, OffsetDateTime)> = store
        .history(&conversation_id, PENDING_LOOKBACK)
        .await?
        .into_iter()
        .filter(|m| m.direction == Direction::Inbound && !m.covered)
        .map(|m| (m.wamid, m.timestamp))
        .collect();
    let mut covers: Vec<Wamid> = pending.iter().map(|(w, _)| w.clone()).collect();
    let intent = ReplyIntent {
        conversation_id: conversation_id.clone(),
        trigger: dashboard_trigger(job.at)?,
    };
    // The newest of the customer messages the reply covers.
    let newest = |covers: &[Wamid]| {
        pending
            .iter()
            .filter(|(w, _)| covers.contains(w))
            .map(|(_, at)| *at)
            .max()
    };
    let mut draft = ReplyDraft {
        workspace_id: contact.workspace_id.clone(),
        phone_number_id: contact.phone_number_id.clone(),
        wa_id: contact.wa_id.clone(),
        conversation_id: conversation_id.clone(),
        text: job.stored.text.clone().unwrap_or_default(),
        ai: None,
        source: source_of(job.integration),
        created_at: job.at,
        answers_through: newest(&covers),
    };
    // A racing AI reply may cover some of them first: ours covers the rest, and is sent anyway.
    let mut attempts = 0;
    loop {
        match store.begin_reply(&intent, &draft, &covers).await? {
            IntentOutcome::Acquired => break,
            IntentOutcome::Covered if attempts < 3 => {
                attempts += 1;
                covers = store.uncovered(&covers).await?;
                draft.answers_through = newest(&covers);
                tracing::info!(
                    left = covers.len(),
                    "a reply already covers some messages; covering the rest"
                );
            }
            other => {
                return Err(StoreError::Conflict(format!(
                    "the dashboard reply intent could not be recorded: {other:?}"
                ))
                .into());
            }
        }
    }
    let outgoing = job.outgoing.clone().with_callback_data(intent.key());
    let result = sender
        .whatsapp
        .send(
            channel,
            &job.integration.phone_number_id,
            &outgoing,
            deadline,
        )
        .await;
    let wamid = match result {
        Ok(sent) => match sent.wamid {
            Some(wamid) => wamid,
            None => {
                let flagged = store
                    .flag_reply(
                        &intent,
                        UnsettledReply::Unknown,
                        "accepted without a message id",
                    )
                    .await;
                log_unsettled(flagged);
                return Err(UpstreamFailure::OutcomeUnknown.into());
            }
        },
        Err(error) => {
            let failure = failure_of(store, job.integration, &error).await;
            let settled = match &failure {
                SendError::Upstream(UpstreamFailure::OutcomeUnknown) => {
                    store
                        .flag_reply(&intent, UnsettledReply::Unknown, &error.to_string())
                        .await
                }
                SendError::Throttled { .. } | SendError::Upstream(UpstreamFailure::Unreachable) => {
                    store.release_reply(&intent, &covers).await
                }
                _ => {
                    store
                        .fail_reply(&intent, error.code(), &error.to_string())
                        .await
                }
            };
            // The answer is WhatsApp's outcome either way: a store error here must not turn it
            // into a 503 that frees the idempotency key for a second send.
            log_unsettled(settled);
            return Err(failure);
        }
    };
    let message = job.stored.message(&job, wamid.clone(), &conversation_id);
    // The message is sent: that is the answer. If it cannot be recorded now, the intent stays
    // `sending` and the message's status webhook, which names the intent, reconciles it.
    log_unsettled(
        store
            .record_reply(&intent, &message, ReplyPart::WHOLE, draft.answers_through)
            .await,
    );
    tracing::info!(wamid = %wamid, covers = covers.len(), "dashboard message sent");
    Ok(sent_message(&job, wamid, &conversation_id, &covers))
}

/// A template to a contact without an active conversation: it opens one, as a message the
/// business sent from another client does. No customer message is pending, so no intent.
async fn opening_conversation<D: SendStore, S: SecretSource>(
    sender: &Sender<'_, D, S>,
    channel: &crate::whatsapp::Channel,
    job: Job<'_>,
    deadline: Instant,
) -> Result<SentMessage, SendError> {
    let store = sender.store;
    let result = sender
        .whatsapp
        .send(
            channel,
            &job.integration.phone_number_id,
            &job.outgoing,
            deadline,
        )
        .await;
    let wamid = match result {
        Ok(sent) => sent.wamid.ok_or(UpstreamFailure::OutcomeUnknown)?,
        Err(error) => return Err(failure_of(store, job.integration, &error).await),
    };
    let choice = job
        .contact
        .choose_conversation_for_echo(job.at, CUSTOMER_SERVICE_WINDOW);
    let message = job.stored.message(&job, wamid.clone(), &choice.id);
    // Sent is sent: a failure to store it must not answer as if nothing went out.
    log_unsettled(
        store
            .store_outbound(&message, &choice, false)
            .await
            .map(drop),
    );
    tracing::info!(wamid = %wamid, "dashboard template sent, opening a conversation");
    Ok(sent_message(&job, wamid, &choice.id, &[]))
}

/// Logs a store write that should have settled a send that already happened (or certainly
/// did not): the caller's answer does not change.
fn log_unsettled(result: StoreResult<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "the send's outcome could not be recorded");
    }
}

/// What a send error means for the caller, after marking a refused token on the integration
/// (as the processor does).
async fn failure_of<D: SendStore>(
    store: &D,
    integration: &Integration,
    error: &WhatsAppError,
) -> SendError {
    tracing::warn!(error = %error, code = ?error.code(), "the WhatsApp API did not take the message");
    match error {
        e if e.may_have_been_delivered() => UpstreamFailure::OutcomeUnknown.into(),
        WhatsAppError::Throttled { retry_after, .. } => SendError::Throttled {
            retry_after: *retry_after,
        },
        e if e.is_retryable() => UpstreamFailure::Unreachable.into(),
        WhatsAppError::TokenInvalid { .. } => {
            if let Err(e) = store
                .mark_integration_error(&integration.phone_number_id, &error.to_string())
                .await
            {
                tracing::error!(error = %e, "could not mark the integration's token as refused");
            }
            UpstreamFailure::TokenInvalid.into()
        }
        WhatsAppError::OutsideWindow { .. } => SendError::OutsideWindow,
        e => UpstreamFailure::Rejected {
            code: e.code(),
            message: e.to_string(),
        }
        .into(),
    }
}

/// A dashboard message's intent trigger: no customer message triggers it, so it gets its own.
fn dashboard_trigger(at: OffsetDateTime) -> Result<Wamid, SendError> {
    Wamid::parse(format!("dashboard.{}", ConversationId::new_at(at).as_str()))
        .map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

fn source_of(integration: &Integration) -> Source {
    match integration.provider {
        Provider::Kapso => Source::Kapso,
        Provider::Meta => Source::Meta,
    }
}

fn sent_message(
    job: &Job<'_>,
    wamid: Wamid,
    conversation_id: &ConversationId,
    covers: &[Wamid],
) -> SentMessage {
    SentMessage {
        wamid: wamid.as_str().to_owned(),
        conversation_id: conversation_id.as_str().to_owned(),
        contact_id: job.contact.wa_id.as_str().to_owned(),
        phone_number_id: job.integration.phone_number_id.as_str().to_owned(),
        status: MessageStatus::Sent.as_str().to_owned(),
        covers: covers.iter().map(|w| w.as_str().to_owned()).collect(),
    }
}

// ----- parsing ----------------------------------------------------------------------------------

/// The contact the request names, by id or by E.164 phone number.
fn recipient(request: &SendMessageRequest) -> Result<WaId, DashboardError> {
    match (&request.contact_id, &request.phone) {
        (Some(_), Some(_)) => Err(DashboardError::invalid(
            "contactId",
            "give contactId or phone, not both",
        )),
        (None, None) => Err(DashboardError::invalid(
            "contactId",
            "a recipient is required: contactId or phone",
        )),
        (Some(id), None) => WaId::parse(id.as_str())
            .map_err(|e| DashboardError::invalid("contactId", e.to_string())),
        (None, Some(phone)) => parse_e164(phone),
    }
}

/// `+` and 8 to 15 digits, the first not 0.
fn parse_e164(phone: &str) -> Result<WaId, DashboardError> {
    let invalid = || {
        DashboardError::invalid(
            "phone",
            "must be an E.164 number: '+', then 8 to 15 digits, e.g. +16505551234",
        )
    };
    let digits = phone.strip_prefix('+').ok_or_else(invalid)?;
    let valid = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return Err(invalid());
    }
    WaId::parse(digits).map_err(|_| invalid())
}

/// The number that sends: the one named (which must be the workspace's), or the workspace's
/// only one.
async fn sending_number<D: SendStore>(
    store: &D,
    ws: &WorkspaceId,
    named: Option<&str>,
) -> Result<Integration, SendError> {
    if let Some(raw) = named {
        let pn = PhoneNumberId::parse(raw)
            .map_err(|e| DashboardError::invalid("phoneNumberId", e.to_string()))?;
        // Another workspace's number is not found, never told apart from an unknown one.
        return match store.integration(&pn).await? {
            Some(i) if i.workspace_id == *ws => Ok(i),
            _ => Err(DashboardError::NotFound.into()),
        };
    }
    let mut numbers = store.workspace_integrations(ws).await?;
    match numbers.len() {
        0 => Err(SendError::NumberUnavailable(
            "the workspace has no WhatsApp number connected".into(),
        )),
        1 => Ok(numbers.remove(0)),
        _ => Err(DashboardError::invalid(
            "phoneNumberId",
            "required: the workspace has several numbers",
        )
        .into()),
    }
}

fn optional_wamid(field: &str, raw: Option<&String>) -> Result<Option<Wamid>, DashboardError> {
    raw.map(|r| Wamid::parse(r.as_str()).map_err(|e| DashboardError::invalid(field, e.to_string())))
        .transpose()
}

/// The client's message for `to`, checked by the client's own rules ([`Outgoing::validate`]),
/// whose refusals are reported against the request field they are about.
pub fn to_outgoing(content: &MessageContent, to: WaId) -> Result<Outgoing, DashboardError> {
    let media = |kind: MediaKind, m: &MediaContent| -> Result<OutgoingKind, DashboardError> {
        let source = match (&m.link, &m.id) {
            (Some(link), None) => MediaSource::Link(link.clone()),
            (None, Some(id)) => MediaSource::Id(id.clone()),
            _ => {
                return Err(DashboardError::invalid(
                    "message.link",
                    "give the media's link or its id, one of the two",
                ));
            }
        };
        Ok(OutgoingKind::Media {
            kind,
            source,
            caption: m.caption.clone(),
            filename: m.filename.clone(),
        })
    };
    let kind = match content {
        MessageContent::Text(t) => OutgoingKind::Text {
            body: t.body.clone(),
            preview_url: t.preview_url,
            reply_to: optional_wamid("message.replyTo", t.reply_to.as_ref())?,
        },
        MessageContent::Template(t) => OutgoingKind::Template {
            name: t.name.clone(),
            language: t.language.clone(),
            components: t.components.clone(),
        },
        MessageContent::Image(m) => media(MediaKind::Image, m)?,
        MessageContent::Video(m) => media(MediaKind::Video, m)?,
        MessageContent::Audio(m) => media(MediaKind::Audio, m)?,
        MessageContent::Document(m) => media(MediaKind::Document, m)?,
        MessageContent::Sticker(m) => media(MediaKind::Sticker, m)?,
        MessageContent::Buttons(b) => OutgoingKind::Buttons {
            body: b.body.clone(),
            buttons: b
                .buttons
                .iter()
                .map(|b| ReplyButton {
                    id: b.id.clone(),
                    title: b.title.clone(),
                })
                .collect(),
            header: b.header.clone(),
            footer: b.footer.clone(),
        },
        MessageContent::List(l) => OutgoingKind::List {
            body: l.body.clone(),
            button: l.button.clone(),
            sections: l
                .sections
                .iter()
                .map(|s| ListSection {
                    title: s.title.clone(),
                    rows: s
                        .rows
                        .iter()
                        .map(|r| ListRow {
                            id: r.id.clone(),
                            title: r.title.clone(),
                            description: r.description.clone(),
                        })
                        .collect(),
                })
                .collect(),
            header: l.header.clone(),
            footer: l.footer.clone(),
        },
        MessageContent::Reaction(r) => OutgoingKind::Reaction {
            message_id: Wamid::parse(r.message_id.as_str())
                .map_err(|e| DashboardError::invalid("message.messageId", e.to_string()))?,
            emoji: r.emoji.clone(),
        },
    };
    let outgoing = Outgoing::new(to, kind);
    outgoing.validate().map_err(|e| {
        let message = match &e {
            WhatsAppError::InvalidParameter { message, .. } => message.clone(),
            other => other.to_string(),
        };
        DashboardError::invalid(field_of(&message), message)
    })?;
    Ok(outgoing)
}

/// The request field a refusal of [`Outgoing::validate`] is about, from the part of the
/// message it names (most specific first).
fn field_of(message: &str) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("template name", "message.name"),
        ("template language", "message.language"),
        ("media link or id", "message.link"),
        ("caption", "message.caption"),
        ("filename", "message.filename"),
        ("list button", "message.button"),
        ("button", "message.buttons"),
        ("section", "message.sections"),
        ("row", "message.sections"),
        ("header", "message.header"),
        ("footer", "message.footer"),
        ("body", "message.body"),
    ];
    FIELDS
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("message", |(_, field)| field)
}

/// What the conversation shows of a sent message.
struct Stored {
    kind: &'static str,
    text: Option<String>,
    media_id: Option<String>,
}

impl Stored {
    fn message(&self, job: &Job<'_>, wamid: Wamid, conversation_id: &ConversationId) -> NewMessage {
        NewMessage {
            wamid,
            direction: Direction::Outbound,
            workspace_id: job.contact.workspace_id.clone(),
            phone_number_id: job.integration.phone_number_id.clone(),
            wa_id: job.contact.wa_id.clone(),
            conversation_id: conversation_id.clone(),
            kind: self.kind.to_owned(),
            text: self.text.clone(),
            media_id: self.media_id.clone(),
            mime_type: None,
            timestamp: job.at,
            origin: Some("dashboard".into()),
            source: source_of(job.integration),
            status: Some(MessageStatus::Sent),
            ai: None,
            raw: serde_json::to_string(&crate::whatsapp::request_body(&job.outgoing)).ok(),
        }
    }
}

fn stored_content(content: &MessageContent) -> Stored {
    let media = |kind, m: &MediaContent| Stored {
        kind,
        text: m.caption.clone(),
        media_id: m.id.clone(),
    };
    match content {
        MessageContent::Text(t) => Stored {
            kind: "text",
            text: Some(t.body.clone()),
            media_id: None,
        },
        MessageContent::Template(t) => Stored {
            kind: "template",
            text: Some(format!("[template {}]", t.name)),
            media_id: None,
        },
        MessageContent::Image(m) => media("image", m),
        MessageContent::Video(m) => media("video", m),
        MessageContent::Audio(m) => media("audio", m),
        MessageContent::Document(m) => media("document", m),
        MessageContent::Sticker(m) => media("sticker", m),
        MessageContent::Buttons(b) => Stored {
            kind: "interactive",
            text: Some(b.body.clone()),
            media_id: None,
        },
        MessageContent::List(l) => Stored {
            kind: "interactive",
            text: Some(l.body.clone()),
            media_id: None,
        },
        MessageContent::Reaction(r) => Stored {
            kind: "reaction",
            text: Some(r.emoji.clone()),
            media_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(content: serde_json::Value) -> String {
        let content: MessageContent = serde_json::from_value(content).unwrap();
        match to_outgoing(&content, WaId::parse("16505551234").unwrap()) {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_clients_own_refusals_name_the_request_field() {
        use serde_json::json;
        assert_eq!(field(json!({"type": "text", "body": " "})), "message.body");
        assert_eq!(
            field(json!({"type": "text", "body": "x".repeat(4097)})),
            "message.body"
        );
        assert_eq!(
            field(json!({"type": "template", "name": "", "language": "en"})),
            "message.name"
        );
        assert_eq!(
            field(json!({"type": "audio", "id": "123", "caption": "no"})),
            "message.caption"
        );
        assert_eq!(
            field(json!({"type": "image", "link": "https://x/a.png", "id": "1"})),
            "message.link"
        );
        assert_eq!(
            field(json!({"type": "buttons", "body": "Pick", "buttons": []})),
            "message.buttons"
        );
        assert_eq!(
            field(
                json!({"type": "buttons", "body": "Pick", "buttons": [{"id": "a", "title": "x".repeat(21)}]})
            ),
            "message.buttons"
        );
        assert_eq!(
            field(
                json!({"type": "list", "body": "Pick", "button": "", "sections": [{"rows": [{"id": "r", "title": "R"}]}]})
            ),
            "message.button"
        );
        assert_eq!(
            field(json!({"type": "list", "body": "Pick", "button": "Open", "sections": []})),
            "message.sections"
        );
        assert_eq!(
            field(json!({"type": "reaction", "messageId": "", "emoji": "👍"})),
            "message.messageId"
        );
    }

    #[test]
    fn a_recipient_is_one_contact_id_or_one_e164_phone() {
        let request = |contact_id: Option<&str>, phone: Option<&str>| SendMessageRequest {
            contact_id: contact_id.map(Into::into),
            phone: phone.map(Into::into),
            phone_number_id: None,
            message: MessageContent::Text(TextContent {
                body: "hi".into(),
                preview_url: false,
                reply_to: None,
            }),
        };
        assert_eq!(
            recipient(&request(None, Some("+16505551234"))).unwrap(),
            WaId::parse("16505551234").unwrap()
        );
        assert_eq!(
            recipient(&request(Some("16505551234"), None)).unwrap(),
            WaId::parse("16505551234").unwrap()
        );
        for (id, phone, field) in [
            (None, Some("16505551234"), "phone"),
            (None, Some("+1650555"), "phone"),
            (None, Some("+0650555123"), "phone"),
            (None, Some("+1650 555 1234"), "phone"),
            (Some("16505551234"), Some("+16505551234"), "contactId"),
            (None, None, "contactId"),
            (Some("not an id"), None, "contactId"),
        ] {
            match recipient(&request(id, phone)) {
                Err(DashboardError::Validation { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{id:?} {phone:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_same_request_hashes_the_same_and_another_differently() {
        let a: SendMessageRequest = serde_json::from_value(serde_json::json!({
            "contactId": "16505551234",
            "message": {"type": "template", "name": "t", "language": "en", "components": [{"b": 1, "a": 2}]}
        }))
        .unwrap();
        let mut b = a.clone();
        assert_eq!(request_hash(&a), request_hash(&b));
        b.phone_number_id = Some("1".into());
        assert_ne!(request_hash(&a), request_hash(&b));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_without_the_key_separator() {
        assert!(IdempotencyKey::parse("order-42/retry_1").is_ok());
        for bad in ["", "a b", "a#b", "é", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
