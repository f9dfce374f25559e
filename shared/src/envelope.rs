//! The internal envelope: one per webhook event, the unit that travels through the FIFO queue.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::{ConversationKey, EventId, PhoneNumberId, WaId};

/// Who delivered the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Meta,
    Kapso,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Meta => "meta",
            Source::Kapso => "kapso",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about; decides how the processor handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A message a customer sent to the business.
    InboundMessage,
    /// A message the business sent (an echo, e.g. from the WhatsApp Business app or another client).
    OutboundMessage,
    /// A delivery status (sent, delivered, read, failed) of a message the business sent.
    Status,
    /// A conversation lifecycle event (Kapso `whatsapp.conversation.*`).
    Conversation,
    /// An account or project level event (e.g. Kapso `whatsapp.phone_number.created`).
    Account,
    /// An error Meta reports for the whole change rather than for one message.
    Error,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::InboundMessage => "inbound_message",
            EventKind::OutboundMessage => "outbound_message",
            EventKind::Status => "status",
            EventKind::Conversation => "conversation",
            EventKind::Account => "account",
            EventKind::Error => "error",
        }
    }
}

/// SQS bills in 64 KiB chunks; envelopes are kept within one.
pub const ENVELOPE_TARGET_BYTES: usize = 64 * 1024;
/// The largest message SQS accepts everywhere; an envelope above it cannot be enqueued at all.
pub const ENVELOPE_MAX_BYTES: usize = 256 * 1024;
/// SQS's limit on a `MessageGroupId`.
pub const MAX_GROUP_ID_BYTES: usize = 128;

/// One webhook event, normalised. `raw` is the event's own JSON as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope schema version, so consumers can tell old envelopes from new.
    pub v: u8,
    pub event_id: EventId,
    pub kind: EventKind,
    /// The event's own type: the message type (`text`, `image`, …), the status (`read`, …)
    /// or the Kapso event name (`whatsapp.conversation.created`).
    pub event_type: String,
    pub source: Source,
    /// The tenant key.
    pub phone_number_id: PhoneNumberId,
    /// Present whenever the event concerns one customer.
    pub conversation: Option<ConversationKey>,
    /// The customer's profile name, where the delivery carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    pub raw: Box<RawValue>,
}

/// Where an envelope's fields come from, before it is sealed.
pub struct EnvelopeParts {
    pub event_id: EventId,
    pub kind: EventKind,
    pub event_type: String,
    pub source: Source,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: Option<WaId>,
    pub profile_name: Option<String>,
    pub received_at: OffsetDateTime,
    pub occurred_at: Option<OffsetDateTime>,
    pub raw: Box<RawValue>,
}

pub const ENVELOPE_VERSION: u8 = 1;

impl Envelope {
    pub fn new(parts: EnvelopeParts) -> Self {
        let conversation = parts
            .wa_id
            .map(|wa_id| ConversationKey::new(parts.phone_number_id.clone(), wa_id));
        Self {
            v: ENVELOPE_VERSION,
            event_id: parts.event_id,
            kind: parts.kind,
            event_type: parts.event_type,
            source: parts.source,
            phone_number_id: parts.phone_number_id,
            conversation,
            profile_name: parts.profile_name,
            received_at: parts.received_at,
            occurred_at: parts.occurred_at,
            raw: parts.raw,
        }
    }

    /// The FIFO message group: the conversation, or the tenant for events about no one customer.
    /// A key longer than SQS allows (a number id with a long BSUID can be) is replaced by its
    /// hash, which is as stable per conversation and fits.
    pub fn group_id(&self) -> String {
        let key = match &self.conversation {
            Some(key) => key.to_key(),
            None => self.phone_number_id.as_str().to_owned(),
        };
        if key.len() <= MAX_GROUP_ID_BYTES {
            return key;
        }
        format!("h:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// The FIFO de-duplication id: a hash of the event id, so any event id fits SQS's 128 characters.
    pub fn dedup_id(&self) -> String {
        hex::encode(Sha256::digest(self.event_id.as_str().as_bytes()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    pub fn from_json(raw: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw)
    }
}

/// A stable id for an event that has no natural one: its kind plus a hash of its JSON,
/// so a byte-identical redelivery gets the same id.
pub fn content_event_id(prefix: &str, raw: &RawValue) -> EventId {
    let digest = hex::encode(Sha256::digest(raw.get().as_bytes()));
    EventId::parse(format!("{prefix}:{}", &digest[..32])).expect("hex ids are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(wa_id: Option<&str>) -> Envelope {
        Envelope::new(EnvelopeParts {
            event_id: EventId::parse("msg:wamid.X").unwrap(),
            kind: EventKind::InboundMessage,
            event_type: "text".into(),
            source: Source::Meta,
            phone_number_id: PhoneNumberId::parse("106540352242922").unwrap(),
            wa_id: wa_id.map(|w| WaId::parse(w).unwrap()),
            profile_name: None,
            received_at: OffsetDateTime::UNIX_EPOCH,
            occurred_at: None,
            raw: RawValue::from_string("{\"a\":1}".into()).unwrap(),
        })
    }

    #[test]
    fn the_message_group_is_the_conversation_when_there_is_a_customer() {
        assert_eq!(
            envelope(Some("16505551234")).group_id(),
            "106540352242922:16505551234"
        );
        assert_eq!(envelope(None).group_id(), "106540352242922");
    }

    #[test]
    fn a_bsuid_customer_gets_a_conversation_group_like_a_phone_number() {
        assert_eq!(
            envelope(Some("US.13491208655302741918")).group_id(),
            "106540352242922:US.13491208655302741918"
        );
    }

    #[test]
    fn a_group_key_longer_than_sqs_allows_is_hashed_stably() {
        let long = format!("US.ENT.{}", "7".repeat(128));
        let group = envelope(Some(&long)).group_id();
        assert!(group.len() <= MAX_GROUP_ID_BYTES, "{group}");
        assert_eq!(group, envelope(Some(&long)).group_id());
        assert_ne!(
            group,
            envelope(Some(&format!("US.ENT.{}", "8".repeat(128)))).group_id()
        );
    }

    #[test]
    fn dedup_ids_are_stable_and_fit_sqs() {
        let a = envelope(None).dedup_id();
        assert_eq!(a, envelope(Some("1")).dedup_id());
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn envelopes_round_trip_through_json_with_the_raw_event_intact() {
        let e = envelope(Some("16505551234"));
        let back = Envelope::from_json(&e.to_json()).unwrap();
        assert_eq!(back.raw.get(), "{\"a\":1}");
        assert_eq!(back.conversation, e.conversation);
        assert_eq!(back.event_id, e.event_id);
    }

    #[test]
    fn content_ids_change_with_content() {
        let a = RawValue::from_string("{\"a\":1}".into()).unwrap();
        let b = RawValue::from_string("{\"a\":2}".into()).unwrap();
        assert_eq!(content_event_id("x", &a), content_event_id("x", &a));
        assert_ne!(content_event_id("x", &a), content_event_id("x", &b));
    }
}
