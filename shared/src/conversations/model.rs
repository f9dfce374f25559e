//! The CRM's entities as the processor sees them: integrations (tenants), contacts,
//! conversations, messages and their statuses, and per-workspace AI settings.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ai::Completion;
use crate::envelope::Source;
use crate::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};
use crate::onboarding::sealed::SealedToken;

/// How a workspace's number reaches the WhatsApp API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Kapso,
    Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationStatus {
    Active,
    Error,
    Disconnected,
}

/// A WhatsApp number connected to a workspace: the tenant behind a `phone_number_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub phone_number_id: PhoneNumberId,
    pub workspace_id: WorkspaceId,
    pub provider: Provider,
    pub status: IntegrationStatus,
    pub error: Option<String>,
    /// The number's own Meta access token, sealed (manual integrations); `None` sends with
    /// the app-wide credentials.
    pub access_token: Option<SealedToken>,
}

/// A workspace's AI settings. A workspace without any is not answered by AI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AiConfig {
    pub enabled: bool,
    pub system_prompt: String,
    pub grok_model: Option<String>,
    pub sealion_model: Option<String>,
    /// Share of contacts routed to Grok, 0–100.
    pub grok_weight: u8,
    /// How many earlier messages go into the AI's context.
    pub history_length: u32,
    pub temperature: f32,
    pub max_tokens: u32,
    /// A person answering from the WhatsApp Business app takes the conversation over: the bot
    /// pauses until the conversation is resumed or a new one starts.
    pub pause_on_human_reply: bool,
}

impl Default for AiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            system_prompt: "You are a helpful assistant for a business on WhatsApp. Answer briefly and politely, in the customer's language.".into(),
            grok_model: None,
            sealion_model: None,
            grok_weight: 50,
            history_length: 12,
            temperature: 0.4,
            max_tokens: 400,
            pause_on_human_reply: true,
        }
    }
}

/// A contact as read back by the upsert every message starts with, with the state of its
/// conversation with one of the workspace's numbers (its *thread*).
///
/// A customer who writes to two numbers of one workspace has two WhatsApp chats, each with its
/// own 24-hour window, so conversations are per number. The queue groups events by number and
/// customer too, so no two groups ever write the same thread.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactState {
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
    pub profile_name: Option<String>,
    pub opted_out: bool,
    pub conversation_id: Option<ConversationId>,
    /// When the current conversation started (set for conversations a business echo opened).
    pub started_at: Option<OffsetDateTime>,
    pub last_inbound_at: Option<OffsetDateTime>,
    /// The newest inbound message time a reply covers; only ever moves forward.
    pub answered_through: Option<OffsetDateTime>,
    /// The current conversation is handed to a person: no AI replies until it is resumed or a
    /// new conversation starts.
    pub bot_paused: bool,
}

/// Which conversation a message belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationChoice {
    pub id: ConversationId,
    pub is_new: bool,
    /// The thread's conversation id as read, so a racing writer is detected, not overwritten.
    pub previous: Option<ConversationId>,
    /// The conversation's newest inbound time once this message is in: a late, older message
    /// never moves it back (it anchors the 24-hour customer-service window). `None` for a
    /// conversation a business echo opened.
    pub last_inbound_at: Option<OffsetDateTime>,
}

impl ContactState {
    /// Continues the current conversation, or starts one when there is none or the last
    /// inbound message (or, for a conversation the business opened, its start) is older than
    /// `inactivity`.
    pub fn choose_conversation(
        &self,
        at: OffsetDateTime,
        inactivity: time::Duration,
    ) -> ConversationChoice {
        let active_since = self.last_inbound_at.or(self.started_at);
        match (&self.conversation_id, active_since) {
            (Some(id), Some(last)) if at - last <= inactivity => ConversationChoice {
                id: id.clone(),
                is_new: false,
                previous: Some(id.clone()),
                last_inbound_at: Some(self.last_inbound_at.map_or(at, |l| l.max(at))),
            },
            _ => ConversationChoice {
                id: ConversationId::new_at(at),
                is_new: true,
                previous: self.conversation_id.clone(),
                last_inbound_at: Some(at),
            },
        }
    }

    /// The conversation an outbound echo (a message the business sent from another client)
    /// belongs to: the current one while it is active, else a new one the business opened.
    pub fn choose_conversation_for_echo(
        &self,
        at: OffsetDateTime,
        inactivity: time::Duration,
    ) -> ConversationChoice {
        let mut choice = self.choose_conversation(at, inactivity);
        choice.last_inbound_at = if choice.is_new {
            None
        } else {
            self.last_inbound_at
        };
        choice
    }
}

/// Which thread of which contact: a customer and one of the workspace's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRef {
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
}

/// What storing an incoming message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The conversation the message is stored in: on a redelivery, the one its first writer
    /// chose (a racing writer may have chosen differently from this one).
    pub conversation_id: ConversationId,
    /// This is the first time the message was seen.
    pub first_time: bool,
    /// The reply (sent, or begun and not released) that already covers the message, if any.
    pub covered_by: Option<ReplyIntent>,
}

impl Stored {
    /// Whether a reply already covers the message.
    pub fn covered(&self) -> bool {
        self.covered_by.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A message to store. `raw` is the event JSON as delivered (kept for audit and reprocessing).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub wamid: Wamid,
    pub direction: Direction,
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
    pub conversation_id: ConversationId,
    pub kind: String,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub mime_type: Option<String>,
    pub timestamp: OffsetDateTime,
    pub origin: Option<String>,
    pub source: Source,
    pub status: Option<MessageStatus>,
    pub ai: Option<Completion>,
    pub raw: Option<String>,
}

/// Delivery statuses in the order they can happen. A status never moves a message backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// `failed` ranks highest: once a message failed, a late `sent` cannot revive it.
    pub fn rank(self) -> u8 {
        match self {
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed => 4,
        }
    }
}

/// A status event for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub wamid: Wamid,
    /// The business number the status is about, and the customer it went to (when named):
    /// a reconciliation checks both against the intent before storing anything.
    pub phone_number_id: PhoneNumberId,
    pub recipient: Option<WaId>,
    pub status: MessageStatus,
    pub at: OffsetDateTime,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub raw: String,
}

/// What applying a status did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutcome {
    /// The message moved to this status.
    Applied,
    /// The message is already at or past it; the history records it.
    Stale,
    /// No such message yet; the status is kept and applied when it appears.
    Early,
}

/// One earlier message, as the AI sees the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub wamid: Wamid,
    pub direction: Direction,
    pub text: Option<String>,
    pub kind: String,
    pub timestamp: OffsetDateTime,
    /// A reply intent covers the message (as last written; the index read may lag a moment).
    pub covered: bool,
}

/// The guard against double replies: one per conversation and triggering message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyIntent {
    pub conversation_id: ConversationId,
    pub trigger: Wamid,
}

impl ReplyIntent {
    /// The intent's key, also sent as `biz_opaque_callback_data` so a status can reconcile it.
    pub fn key(&self) -> String {
        format!(
            "{}#{}",
            self.conversation_id.as_str(),
            self.trigger.as_str()
        )
    }

    pub fn parse_key(key: &str) -> Option<Self> {
        let (conversation, trigger) = key.split_once('#')?;
        Some(Self {
            conversation_id: ConversationId::parse(conversation).ok()?,
            trigger: Wamid::parse(trigger).ok()?,
        })
    }
}

/// A reply about to be sent: everything its stored message needs except the wamid the API
/// will give it. The intent keeps a copy, so an unknown outcome can be reconciled later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyDraft {
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
    pub conversation_id: ConversationId,
    pub text: String,
    pub ai: Option<Completion>,
    pub source: Source,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the newest customer message the reply answers was sent: recording the reply (its
    /// last part, or its reconciliation) moves the thread's `answered_through` to it. `None`
    /// when it answers none (a dashboard message with nothing pending): nothing moves.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub answers_through: Option<OffsetDateTime>,
}

/// What is left of an interrupted split reply, taken back for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumption {
    pub draft: ReplyDraft,
    pub covers: Vec<Wamid>,
    /// How many parts went out before the interruption.
    pub parts_sent: u32,
}

impl ReplyDraft {
    /// The outbound message this draft (or one part of it, `text`) becomes once the API named it.
    pub fn message(&self, wamid: Wamid, text: &str) -> NewMessage {
        NewMessage {
            wamid,
            direction: Direction::Outbound,
            workspace_id: self.workspace_id.clone(),
            phone_number_id: self.phone_number_id.clone(),
            wa_id: self.wa_id.clone(),
            conversation_id: self.conversation_id.clone(),
            kind: "text".into(),
            text: Some(text.to_owned()),
            media_id: None,
            mime_type: None,
            timestamp: self.created_at,
            origin: Some("ai".into()),
            source: self.source,
            status: Some(MessageStatus::Sent),
            ai: self.ai.clone(),
            raw: None,
        }
    }
}

/// Which part of a reply a send was: replies longer than one WhatsApp text go out as several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyPart {
    /// 1-based.
    pub index: u32,
    pub of: u32,
}

impl ReplyPart {
    pub const WHOLE: Self = Self { index: 1, of: 1 };

    pub fn is_last(self) -> bool {
        self.index >= self.of
    }
}

/// A reply that is neither sent nor certainly unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsettledReply {
    /// The API may have acted on the send: its status webhook will tell.
    Unknown,
    /// Some parts of a split reply were sent, and the next one certainly was not (throttled,
    /// or the API unreachable): the rest goes out when the record is redelivered.
    Interrupted,
}

impl UnsettledReply {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A queue record that can never be processed, kept for inspection and replay.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    /// The envelope's event id when it could be read, else the SQS message id.
    pub id: String,
    pub reason: String,
    pub body: String,
    pub at: OffsetDateTime,
}

/// What recording a reply intent found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentOutcome {
    /// This invocation owns the reply and may send it.
    Acquired,
    /// A reply for this trigger was already sent.
    AlreadySent,
    /// A send was started and its outcome is unknown: do not send again.
    OutcomeUnknown,
    /// Another reply already covers one of the messages (a racing invocation got there first).
    Covered,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(conversation: Option<&str>, last_inbound: Option<OffsetDateTime>) -> ContactState {
        ContactState {
            workspace_id: WorkspaceId::parse("ws").unwrap(),
            phone_number_id: PhoneNumberId::parse("106540352242922").unwrap(),
            started_at: None,
            wa_id: WaId::parse("16505551234").unwrap(),
            profile_name: None,
            opted_out: false,
            conversation_id: conversation.map(|c| ConversationId::parse(c).unwrap()),
            last_inbound_at: last_inbound,
            answered_through: None,
            bot_paused: false,
        }
    }

    #[test]
    fn a_message_within_the_inactivity_window_continues_the_conversation() {
        let now = OffsetDateTime::now_utc();
        let choice = state(Some("C1"), Some(now - time::Duration::minutes(5)))
            .choose_conversation(now, time::Duration::hours(24));
        assert_eq!(choice.id.as_str(), "C1");
        assert!(!choice.is_new);
    }

    #[test]
    fn a_late_older_message_never_moves_the_last_inbound_time_back() {
        let now = OffsetDateTime::now_utc();
        let choice = state(Some("C1"), Some(now))
            .choose_conversation(now - time::Duration::minutes(3), time::Duration::hours(24));
        assert_eq!(choice.last_inbound_at, Some(now));
        assert!(!choice.is_new);
    }

    #[test]
    fn a_message_after_the_inactivity_window_starts_a_new_conversation() {
        let now = OffsetDateTime::now_utc();
        let choice = state(Some("C1"), Some(now - time::Duration::hours(25)))
            .choose_conversation(now, time::Duration::hours(24));
        assert!(choice.is_new);
        assert_ne!(choice.id.as_str(), "C1");
        assert_eq!(choice.previous.unwrap().as_str(), "C1");
    }

    #[test]
    fn a_first_message_starts_a_conversation() {
        let now = OffsetDateTime::now_utc();
        let choice = state(None, None).choose_conversation(now, time::Duration::hours(24));
        assert!(choice.is_new);
        assert!(choice.previous.is_none());
    }

    #[test]
    fn an_echo_opens_a_conversation_that_a_customer_reply_continues() {
        let now = OffsetDateTime::now_utc();
        let echo = state(None, None).choose_conversation_for_echo(now, time::Duration::hours(24));
        assert!(echo.is_new);
        assert_eq!(echo.last_inbound_at, None);

        let mut after_echo = state(Some(echo.id.as_str()), None);
        after_echo.started_at = Some(now);
        let reply = after_echo
            .choose_conversation(now + time::Duration::minutes(5), time::Duration::hours(24));
        assert!(!reply.is_new);
        assert_eq!(reply.id, echo.id);
    }

    #[test]
    fn an_echo_in_an_active_conversation_keeps_its_last_inbound_time() {
        let now = OffsetDateTime::now_utc();
        let last = now - time::Duration::minutes(5);
        let echo = state(Some("C1"), Some(last))
            .choose_conversation_for_echo(now, time::Duration::hours(24));
        assert!(!echo.is_new);
        assert_eq!(echo.last_inbound_at, Some(last));
    }

    #[test]
    fn statuses_rank_sent_delivered_read_failed() {
        use MessageStatus::*;
        assert!(Sent.rank() < Delivered.rank());
        assert!(Delivered.rank() < Read.rank());
        assert!(Read.rank() < Failed.rank());
        assert_eq!(MessageStatus::parse("deleted"), None);
    }

    #[test]
    fn reply_intent_keys_round_trip() {
        let intent = ReplyIntent {
            conversation_id: ConversationId::parse("01JD").unwrap(),
            trigger: Wamid::parse("wamid.ABC==").unwrap(),
        };
        assert_eq!(ReplyIntent::parse_key(&intent.key()), Some(intent));
    }
}
