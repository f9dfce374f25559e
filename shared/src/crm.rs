//! The CRM's entities as the processor sees them: integrations (tenants), contacts,
//! conversations, messages and their statuses, and per-workspace AI settings.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ai::Completion;
use crate::envelope::Source;
use crate::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};

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
        }
    }
}

/// A contact as read back by the inbound upsert, with the state of its current conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactState {
    pub workspace_id: WorkspaceId,
    pub wa_id: WaId,
    pub profile_name: Option<String>,
    pub opted_out: bool,
    pub conversation_id: Option<ConversationId>,
    pub last_inbound_at: Option<OffsetDateTime>,
    /// The newest inbound message time a reply already covers.
    pub answered_through: Option<OffsetDateTime>,
    pub bot_paused: bool,
}

/// Which conversation an inbound message belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationChoice {
    pub id: ConversationId,
    pub is_new: bool,
    /// The contact's conversation id as read, so a racing writer is detected, not overwritten.
    pub previous: Option<ConversationId>,
    /// The conversation's newest inbound time once this message is in: a late, older message
    /// never moves it back (it anchors the 24-hour customer-service window).
    pub last_inbound_at: OffsetDateTime,
}

impl ContactState {
    /// Continues the current conversation, or starts one when there is none or the last
    /// inbound message is older than `inactivity`.
    pub fn choose_conversation(
        &self,
        at: OffsetDateTime,
        inactivity: time::Duration,
    ) -> ConversationChoice {
        match (&self.conversation_id, self.last_inbound_at) {
            (Some(id), Some(last)) if at - last <= inactivity => ConversationChoice {
                id: id.clone(),
                is_new: false,
                previous: Some(id.clone()),
                last_inbound_at: last.max(at),
            },
            _ => ConversationChoice {
                id: ConversationId::new_at(at),
                is_new: true,
                previous: self.conversation_id.clone(),
                last_inbound_at: at,
            },
        }
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
}

impl ReplyDraft {
    /// The outbound message this draft becomes once the API named it.
    pub fn into_message(self, wamid: Wamid, status: MessageStatus) -> NewMessage {
        NewMessage {
            wamid,
            direction: Direction::Outbound,
            workspace_id: self.workspace_id,
            phone_number_id: self.phone_number_id,
            wa_id: self.wa_id,
            conversation_id: self.conversation_id,
            kind: "text".into(),
            text: Some(self.text),
            media_id: None,
            mime_type: None,
            timestamp: self.created_at,
            origin: Some("ai".into()),
            source: self.source,
            status: Some(status),
            ai: self.ai,
            raw: None,
        }
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(conversation: Option<&str>, last_inbound: Option<OffsetDateTime>) -> ContactState {
        ContactState {
            workspace_id: WorkspaceId::parse("ws").unwrap(),
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
        assert_eq!(choice.last_inbound_at, now);
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
