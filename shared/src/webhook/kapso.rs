//! Kapso v2 webhook payloads: message events, conversation events, batched deliveries and
//! project events. The "meta" kind forwards Meta's payload unchanged and is read by [`super::meta`].
//!
//! Shapes follow docs.kapso.ai (webhooks overview, event types, security); see
//! `tests/fixtures/SOURCES.md` for what was confirmed and what was inferred.

use serde::Deserialize;
use serde_json::value::RawValue;

pub const EVENT_HEADER: &str = "x-webhook-event";
pub const IDEMPOTENCY_HEADER: &str = "x-idempotency-key";

/// The top-level keys that tell the shapes apart: a raw Meta payload (`object`, `entry`),
/// a batch (`type`, `batch`, `data`), a wrapped event (`event`, `data`), or a bare event.
#[derive(Debug, Deserialize)]
pub struct TopLevel<'a> {
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default, borrow)]
    pub entry: Option<&'a RawValue>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// One Kapso event body, read only as far as routing needs.
#[derive(Debug, Default, Deserialize)]
pub struct EventHead {
    #[serde(default)]
    pub phone_number_id: Option<String>,
    #[serde(default)]
    pub message: Option<MessageHead>,
    #[serde(default)]
    pub conversation: Option<ConversationHead>,
}

#[derive(Debug, Deserialize)]
pub struct MessageHead {
    pub id: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub kapso: Option<KapsoBlock>,
}

/// Kapso's own block inside a message.
#[derive(Debug, Default, Deserialize)]
pub struct KapsoBlock {
    /// `inbound` or `outbound`.
    #[serde(default)]
    pub direction: Option<String>,
    /// `cloud_api`, `business_app` (an echo from the WhatsApp Business app) or `history_sync`.
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    #[serde(default)]
    pub statuses: Vec<StatusRecipient>,
}

#[derive(Debug, Deserialize)]
pub struct StatusRecipient {
    #[serde(default)]
    pub recipient_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConversationHead {
    #[serde(default)]
    pub id: Option<String>,
    /// The customer's number in E.164, with a leading `+`.
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    #[serde(default)]
    pub kapso: Option<ConversationKapso>,
}

#[derive(Debug, Deserialize)]
pub struct ConversationKapso {
    #[serde(default)]
    pub contact_name: Option<String>,
}

impl EventHead {
    /// The tenant, wherever this event carries it.
    pub fn phone_number_id(&self) -> Option<&str> {
        self.phone_number_id
            .as_deref()
            .or_else(|| self.conversation.as_ref()?.phone_number_id.as_deref())
            .or_else(|| {
                self.message
                    .as_ref()?
                    .kapso
                    .as_ref()?
                    .phone_number_id
                    .as_deref()
            })
    }

    /// The customer's wa_id, wherever this event carries it.
    pub fn wa_id(&self) -> Option<String> {
        let message = self.message.as_ref();
        let kapso = message.and_then(|m| m.kapso.as_ref());
        self.conversation
            .as_ref()
            .and_then(|c| c.phone_number.as_deref())
            .or_else(|| kapso?.phone_number.as_deref())
            .or_else(|| message?.from.as_deref())
            .or_else(|| {
                kapso?
                    .statuses
                    .iter()
                    .find_map(|s| s.recipient_id.as_deref())
            })
            .map(|n| n.trim().trim_start_matches('+').to_owned())
    }

    pub fn contact_name(&self) -> Option<&str> {
        self.conversation
            .as_ref()?
            .kapso
            .as_ref()?
            .contact_name
            .as_deref()
    }

    pub fn direction(&self) -> Option<&str> {
        self.message.as_ref()?.kapso.as_ref()?.direction.as_deref()
    }
}
