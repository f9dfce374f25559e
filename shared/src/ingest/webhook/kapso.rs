//! Kapso v2 webhook payloads: message events, conversation events, batched deliveries and
//! project events. The "meta" kind forwards Meta's payload unchanged and is read by [`super::meta`].
//!
//! Shapes follow docs.kapso.ai (webhooks overview, event types, security); see
//! `tests/fixtures/SOURCES.md` for what was confirmed and what was inferred.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::WaId;

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
    /// Meta's BSUID of the sender, should Kapso pass it through in the Meta-style message.
    #[serde(default)]
    pub from_user_id: Option<String>,
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
    /// Meta's raw status carries the recipient's BSUID here.
    #[serde(default)]
    pub recipient_user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConversationHead {
    #[serde(default)]
    pub id: Option<String>,
    /// The customer's number in E.164, with a leading `+`. Null for a user who hides it.
    #[serde(default)]
    pub phone_number: Option<String>,
    /// The customer's BSUID, "when available" (Kapso's BSUID guide); the parent BSUID and the
    /// username Kapso also sends are not identities to key a conversation by.
    #[serde(default)]
    pub business_scoped_user_id: Option<String>,
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

    /// The customer, wherever this event carries them: the first valid phone number, else the
    /// first valid BSUID. The phone number wins so that customers known before BSUIDs existed
    /// keep their contact and conversation.
    pub fn customer(&self) -> Option<WaId> {
        let message = self.message.as_ref();
        let kapso = message.and_then(|m| m.kapso.as_ref());
        let conversation = self.conversation.as_ref();
        let statuses = kapso.map(|k| k.statuses.as_slice()).unwrap_or_default();
        let phones = [
            conversation.and_then(|c| c.phone_number.as_deref()),
            kapso.and_then(|k| k.phone_number.as_deref()),
            message.and_then(|m| m.from.as_deref()),
        ]
        .into_iter()
        .chain(statuses.iter().map(|s| s.recipient_id.as_deref()))
        .flatten()
        .map(|n| n.trim().trim_start_matches('+'));
        let bsuids = [
            conversation.and_then(|c| c.business_scoped_user_id.as_deref()),
            message.and_then(|m| m.from_user_id.as_deref()),
        ]
        .into_iter()
        .chain(statuses.iter().map(|s| s.recipient_user_id.as_deref()))
        .flatten()
        .map(str::trim);
        phones
            .filter_map(|p| WaId::parse(p).ok().filter(|id| !id.is_bsuid()))
            .chain(bsuids.filter_map(|b| WaId::parse(b).ok().filter(WaId::is_bsuid)))
            .next()
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

    pub fn origin(&self) -> Option<&str> {
        self.message.as_ref()?.kapso.as_ref()?.origin.as_deref()
    }

    /// A message the business typed in the WhatsApp Business app (coexistence), which Kapso
    /// reports like any other: it is an echo of an outbound message, never one of our sends.
    pub fn is_business_app_echo(&self) -> bool {
        self.origin() == Some("business_app") && self.direction() != Some("inbound")
    }
}
