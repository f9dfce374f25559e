//! Normalisation: one signed delivery, from Meta or Kapso, becomes one [`Envelope`] per event.

pub mod kapso;
pub mod meta;

use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::envelope::{Envelope, EnvelopeParts, EventKind, Source, content_event_id};
use crate::ids::{EventId, PhoneNumberId, WaId};

/// What is known about a delivery besides its body.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryContext<'a> {
    /// Who signed it.
    pub source: Source,
    /// Kapso's `X-Webhook-Event` header.
    pub event_header: Option<&'a str>,
    /// Kapso's `X-Idempotency-Key` header.
    pub idempotency_key: Option<&'a str>,
    pub received_at: OffsetDateTime,
}

/// Why a body is not a webhook at all. Both mean the sender must fix something: HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("body is not a WhatsApp webhook: {0}")]
    Unrecognised(String),
}

/// An event that was read but cannot be routed, with the reason. Logged, not enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub what: String,
    pub reason: String,
}

/// The result of normalising one delivery.
#[derive(Debug, Default)]
pub struct Normalised {
    pub envelopes: Vec<Envelope>,
    pub skipped: Vec<Skipped>,
}

impl Normalised {
    fn skip(&mut self, what: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            what: what.into(),
            reason: reason.into(),
        });
    }
}

/// Splits a delivery into envelopes. Malformed JSON or a body of no known shape is an error;
/// a well-formed delivery with nothing actionable in it is an empty, successful result.
pub fn normalise(body: &[u8], ctx: &DeliveryContext<'_>) -> Result<Normalised, PayloadError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| PayloadError::MalformedJson(format!("body is not UTF-8: {e}")))?;
    let top: kapso::TopLevel<'_> =
        serde_json::from_str(text).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    let mut out = Normalised::default();

    if let Some(object) = top.object.as_deref() {
        if object != "whatsapp_business_account" {
            out.skip(
                format!("object {object}"),
                "not a WhatsApp Business Account webhook",
            );
            return Ok(out);
        }
        let entries = top.entry.map(RawValue::get).unwrap_or("[]");
        let entries: Vec<meta::Entry<'_>> = serde_json::from_str(entries)
            .map_err(|e| PayloadError::Unrecognised(format!("entry: {e}")))?;
        for entry in &entries {
            for change in &entry.changes {
                meta_change(change, ctx, &mut out)?;
            }
        }
        return Ok(out);
    }

    let header = ctx.event_header.map(str::trim).filter(|h| !h.is_empty());
    // A batch is told by its `data` array (Kapso also sets `batch: true` and X-Webhook-Batch).
    let data_is_array = top
        .data
        .is_some_and(|d| d.get().trim_start().starts_with('['));
    match top.data {
        Some(data) if data_is_array => {
            let event_type = top
                .kind
                .as_deref()
                .or(top.event.as_deref())
                .or(header)
                .ok_or_else(|| {
                    PayloadError::Unrecognised("a batch must name its event type".into())
                })?;
            let items: Vec<&RawValue> = serde_json::from_str(data.get())
                .map_err(|e| PayloadError::Unrecognised(format!("batch data: {e}")))?;
            for item in items {
                // A batch's key names the whole batch, not one event, so it is no event id.
                kapso_event(event_type, item, None, ctx, &mut out)?;
            }
        }
        Some(data) if top.event.is_some() || top.kind.is_some() => {
            let event_type = top
                .event
                .as_deref()
                .or(top.kind.as_deref())
                .unwrap_or_default();
            kapso_event(event_type, data, ctx.idempotency_key, ctx, &mut out)?;
        }
        _ => {
            let event_type = header.or(top.event.as_deref()).or(top.kind.as_deref()).ok_or_else(|| {
                PayloadError::Unrecognised(
                    "neither a Meta payload nor a Kapso event (no X-Webhook-Event header or event type)"
                        .into(),
                )
            })?;
            let whole: &RawValue = serde_json::from_str(text)
                .map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
            kapso_event(event_type, whole, ctx.idempotency_key, ctx, &mut out)?;
        }
    }
    Ok(out)
}

fn meta_change(
    change: &meta::Change<'_>,
    ctx: &DeliveryContext<'_>,
    out: &mut Normalised,
) -> Result<(), PayloadError> {
    if change.field != "messages" {
        out.skip(format!("change {}", change.field), "not a messages change");
        return Ok(());
    }
    let Some(value) = change.value else {
        out.skip("change messages", "no value");
        return Ok(());
    };
    let value: meta::MessagesValue<'_> = serde_json::from_str(value.get())
        .map_err(|e| PayloadError::Unrecognised(format!("messages value: {e}")))?;
    let Ok(tenant) = PhoneNumberId::parse(value.metadata.phone_number_id.as_str()) else {
        out.skip(
            "change messages",
            "metadata.phone_number_id is not a phone number id",
        );
        return Ok(());
    };

    for &raw in &value.messages {
        let Ok(head) = serde_json::from_str::<meta::MessageHead>(raw.get()) else {
            out.skip("message", "message has no id");
            continue;
        };
        let wa_id = customer(head.from.as_deref(), head.from_user_id.as_deref());
        let profile_name = value
            .contacts
            .iter()
            .find(|c| {
                let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
                same(&c.wa_id, &head.from) || same(&c.user_id, &head.from_user_id)
            })
            .or(value.contacts.first().filter(|_| value.contacts.len() == 1))
            .and_then(|c| c.profile.as_ref()?.name.clone());
        push(
            out,
            EnvelopeParts {
                event_id: event_id(format!("msg:{}", head.id), raw),
                kind: EventKind::InboundMessage,
                event_type: head.kind.unwrap_or_else(|| "unknown".into()),
                source: ctx.source,
                phone_number_id: tenant.clone(),
                wa_id,
                profile_name,
                received_at: ctx.received_at,
                occurred_at: head.timestamp.as_deref().and_then(unix_seconds),
                raw: raw.to_owned(),
            },
        );
    }
    for &raw in &value.statuses {
        let Ok(head) = serde_json::from_str::<meta::StatusHead>(raw.get()) else {
            out.skip("status", "status has no id or status");
            continue;
        };
        push(
            out,
            EnvelopeParts {
                event_id: event_id(format!("status:{}:{}", head.id, head.status), raw),
                kind: EventKind::Status,
                event_type: head.status,
                source: ctx.source,
                phone_number_id: tenant.clone(),
                wa_id: customer(
                    head.recipient_id.as_deref(),
                    head.recipient_user_id.as_deref(),
                ),
                profile_name: None,
                received_at: ctx.received_at,
                occurred_at: head.timestamp.as_deref().and_then(unix_seconds),
                raw: raw.to_owned(),
            },
        );
    }
    for &raw in &value.errors {
        push(
            out,
            EnvelopeParts {
                event_id: content_event_id("error", raw),
                kind: EventKind::Error,
                event_type: "error".into(),
                source: ctx.source,
                phone_number_id: tenant.clone(),
                wa_id: None,
                profile_name: None,
                received_at: ctx.received_at,
                occurred_at: None,
                raw: raw.to_owned(),
            },
        );
    }
    Ok(())
}

fn kapso_event(
    event_type: &str,
    raw: &RawValue,
    idempotency_key: Option<&str>,
    ctx: &DeliveryContext<'_>,
    out: &mut Normalised,
) -> Result<(), PayloadError> {
    let head: kapso::EventHead = serde_json::from_str(raw.get())
        .map_err(|e| PayloadError::Unrecognised(format!("{event_type}: {e}")))?;
    let Some(tenant) = head
        .phone_number_id()
        .and_then(|p| PhoneNumberId::parse(p).ok())
    else {
        out.skip(event_type, "no phone_number_id to route by");
        return Ok(());
    };
    let wa_id = head.customer();
    let keyed = |prefix: &str| match idempotency_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => event_id(format!("kapso:{key}"), raw),
        None => content_event_id(prefix, raw),
    };

    let (kind, short_type, id) = if let Some(suffix) = event_type.strip_prefix("whatsapp.message.")
    {
        let Some(message) = head.message.as_ref() else {
            out.skip(event_type, "message event without a message");
            return Ok(());
        };
        match suffix {
            // One id for both copies of a Business-app echo (Kapso may report it as received
            // and as sent), so the queue and the processor keep one of them.
            "received" if head.direction() == Some("outbound") => (
                EventKind::OutboundMessage,
                message.kind.clone().unwrap_or_else(|| "unknown".into()),
                event_id(format!("out:{}", message.id), raw),
            ),
            "sent" if head.is_business_app_echo() => (
                EventKind::OutboundMessage,
                message.kind.clone().unwrap_or_else(|| "unknown".into()),
                event_id(format!("out:{}", message.id), raw),
            ),
            "received" => (
                EventKind::InboundMessage,
                message.kind.clone().unwrap_or_else(|| "unknown".into()),
                event_id(format!("msg:{}", message.id), raw),
            ),
            status => (
                EventKind::Status,
                status.to_owned(),
                event_id(format!("status:{}:{status}", message.id), raw),
            ),
        }
    } else if event_type.starts_with("whatsapp.conversation.") {
        (
            EventKind::Conversation,
            event_type.to_owned(),
            keyed("conversation"),
        )
    } else {
        (EventKind::Account, event_type.to_owned(), keyed("account"))
    };

    let occurred_at = head
        .message
        .as_ref()
        .and_then(|m| m.timestamp.as_deref())
        .and_then(unix_seconds);
    push(
        out,
        EnvelopeParts {
            event_id: id,
            kind,
            event_type: short_type,
            source: ctx.source,
            phone_number_id: tenant,
            wa_id,
            profile_name: head.contact_name().map(str::to_owned),
            received_at: ctx.received_at,
            occurred_at,
            raw: raw.to_owned(),
        },
    );
    Ok(())
}

/// The customer of a Meta event: the phone number when there is a valid one, else the BSUID.
/// A phone number wins so that a customer known before BSUIDs keeps their contact.
fn customer(phone: Option<&str>, bsuid: Option<&str>) -> Option<WaId> {
    phone
        .and_then(|p| WaId::parse(p).ok())
        .filter(|id| !id.is_bsuid())
        .or_else(|| {
            bsuid
                .and_then(|b| WaId::parse(b).ok())
                .filter(WaId::is_bsuid)
        })
}

fn push(out: &mut Normalised, parts: EnvelopeParts) {
    out.envelopes.push(Envelope::new(parts));
}

/// Builds an id from the event's own identity, falling back to its content if that identity
/// is not a usable id (e.g. a wamid with whitespace).
fn event_id(id: String, raw: &RawValue) -> EventId {
    EventId::parse(id).unwrap_or_else(|_| content_event_id("event", raw))
}

fn unix_seconds(raw: &str) -> Option<OffsetDateTime> {
    let secs: i64 = raw.trim().parse().ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn context(source: Source, event: Option<&'static str>) -> DeliveryContext<'static> {
        DeliveryContext {
            source,
            event_header: event,
            idempotency_key: None,
            received_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn kapso(event: &'static str, body: &Value) -> Vec<Envelope> {
        let out = normalise(
            body.to_string().as_bytes(),
            &context(Source::Kapso, Some(event)),
        )
        .unwrap();
        out.envelopes
    }

    fn meta(value: Value) -> Vec<Envelope> {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": value }] }]
        });
        normalise(body.to_string().as_bytes(), &context(Source::Meta, None))
            .unwrap()
            .envelopes
    }

    fn kapso_message(origin: &str, status: &str) -> Value {
        json!({
            "message": {
                "id": "wamid.ECHO",
                "timestamp": "1732272600",
                "type": "image",
                "kapso": { "direction": "outbound", "status": status, "origin": origin }
            },
            "conversation": { "phone_number": "+16505551234", "phone_number_id": "106540352242922" },
            "phone_number_id": "106540352242922"
        })
    }

    fn customer_of(envelope: &Envelope) -> Option<&str> {
        envelope.conversation.as_ref().map(|c| c.wa_id.as_str())
    }

    #[test]
    fn a_kapso_sent_event_for_a_business_app_message_is_an_outbound_echo_like_its_received_copy() {
        let sent = kapso(
            "whatsapp.message.sent",
            &kapso_message("business_app", "sent"),
        );
        let received = kapso(
            "whatsapp.message.received",
            &kapso_message("business_app", "sent"),
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, EventKind::OutboundMessage);
        assert_eq!(sent[0].event_id.as_str(), "out:wamid.ECHO");
        assert_eq!(sent[0].event_type, "image");
        assert_eq!(customer_of(&sent[0]), Some("16505551234"));
        assert_eq!(
            sent[0].event_id, received[0].event_id,
            "both copies are one event"
        );
    }

    #[test]
    fn a_kapso_sent_event_for_a_message_we_sent_is_still_a_status() {
        for origin in ["cloud_api", ""] {
            let mut body = kapso_message(origin, "sent");
            if origin.is_empty() {
                body["message"]["kapso"]
                    .as_object_mut()
                    .unwrap()
                    .remove("origin");
            }
            let out = kapso("whatsapp.message.sent", &body);
            assert_eq!(out[0].kind, EventKind::Status, "origin {origin:?}");
            assert_eq!(out[0].event_id.as_str(), "status:wamid.ECHO:sent");
        }
    }

    #[test]
    fn delivered_read_and_failed_stay_statuses_even_for_business_app_messages() {
        for (event, status) in [
            ("whatsapp.message.delivered", "delivered"),
            ("whatsapp.message.read", "read"),
            ("whatsapp.message.failed", "failed"),
        ] {
            let out = kapso(event, &kapso_message("business_app", status));
            assert_eq!(out[0].kind, EventKind::Status, "{event}");
            assert_eq!(
                out[0].event_id.as_str(),
                format!("status:wamid.ECHO:{status}")
            );
        }
    }

    #[test]
    fn a_meta_message_without_a_phone_number_is_keyed_by_its_bsuid_and_named_by_user_id() {
        let out = meta(json!({
            "metadata": { "phone_number_id": "106540352242922" },
            "contacts": [
                { "profile": { "name": "Marco Rossi" }, "wa_id": "16505559876", "user_id": "US.99" },
                { "profile": { "name": "Sheena", "username": "@sheena" }, "user_id": "US.13491208655302741918" }
            ],
            "messages": [{
                "from_user_id": "US.13491208655302741918",
                "id": "wamid.BSUID", "timestamp": "1732267200", "type": "text", "text": { "body": "hi" }
            }]
        }));
        assert_eq!(out.len(), 1);
        assert_eq!(customer_of(&out[0]), Some("US.13491208655302741918"));
        assert_eq!(out[0].profile_name.as_deref(), Some("Sheena"));
        assert_eq!(out[0].group_id(), "106540352242922:US.13491208655302741918");
    }

    #[test]
    fn a_meta_message_with_both_ids_is_keyed_by_the_phone_number() {
        let out = meta(json!({
            "metadata": { "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Sheena" }, "wa_id": "16505551234", "user_id": "US.134912" }],
            "messages": [{
                "from": "16505551234", "from_user_id": "US.134912",
                "id": "wamid.BOTH", "timestamp": "1732267200", "type": "text", "text": { "body": "hi" }
            }]
        }));
        assert_eq!(customer_of(&out[0]), Some("16505551234"));
        assert_eq!(out[0].profile_name.as_deref(), Some("Sheena"));
    }

    #[test]
    fn a_meta_status_for_a_bsuid_recipient_is_grouped_by_that_bsuid() {
        let out = meta(json!({
            "metadata": { "phone_number_id": "106540352242922" },
            "statuses": [{
                "id": "wamid.OUT", "status": "delivered", "timestamp": "1732267200",
                "recipient_user_id": "US.13491208655302741918"
            }]
        }));
        assert_eq!(out[0].kind, EventKind::Status);
        assert_eq!(customer_of(&out[0]), Some("US.13491208655302741918"));
        let status: meta::Status = serde_json::from_str(out[0].raw.get()).unwrap();
        assert_eq!(status.recipient_id, None);
        assert_eq!(
            status.recipient_user_id.as_deref(),
            Some("US.13491208655302741918")
        );
    }

    #[test]
    fn a_kapso_conversation_without_a_phone_number_is_keyed_by_its_bsuid() {
        let mut body = kapso_message("cloud_api", "received");
        body["message"]["kapso"]["direction"] = json!("inbound");
        body["conversation"]["phone_number"] = Value::Null;
        body["conversation"]["business_scoped_user_id"] = json!("US.13491208655302741918");
        let out = kapso("whatsapp.message.received", &body);
        assert_eq!(out[0].kind, EventKind::InboundMessage);
        assert_eq!(customer_of(&out[0]), Some("US.13491208655302741918"));

        body["conversation"]["phone_number"] = json!("+16505551234");
        let out = kapso("whatsapp.message.received", &body);
        assert_eq!(customer_of(&out[0]), Some("16505551234"), "the phone wins");
    }

    #[test]
    fn an_invalid_id_is_no_customer_rather_than_a_wrong_one() {
        let out = meta(json!({
            "metadata": { "phone_number_id": "106540352242922" },
            "messages": [{ "from": "+1 650", "from_user_id": "not-a-bsuid", "id": "wamid.BAD", "type": "text" }]
        }));
        assert_eq!(customer_of(&out[0]), None);
    }
}
