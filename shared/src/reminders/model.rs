//! What a reminder is, parsed and validated once: once you hold a [`NewReminder`], it can be
//! stored and sent.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::ids::{PhoneNumberId, WaId, WorkspaceId};

/// The longest subject or template name we accept, and the longest text and email bodies.
pub const MAX_SUBJECT: usize = 998;
pub const MAX_TEXT_BODY: usize = crate::whatsapp::MAX_TEXT_BODY;
pub const MAX_EMAIL_BODY: usize = 100_000;

/// Why a reminder is not valid; `field` is the API's JSON path of the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidReminder {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidReminder {
    InvalidReminder {
        field,
        message: message.into(),
    }
}

/// A reminder's id: a ULID, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReminderId(String);

impl ReminderId {
    pub fn new_at(at: OffsetDateTime) -> Self {
        Self(ulid::Ulid::from_datetime(at.into()).to_string())
    }

    /// Parses an id from a path or an item; anything but a ULID is refused.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidReminder> {
        let raw = raw.into();
        ulid::Ulid::from_string(&raw).map_err(|_| invalid("id", "not a reminder id"))?;
        Ok(Self(raw.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReminderId {
    type Error = InvalidReminder;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<ReminderId> for String {
    fn from(id: ReminderId) -> String {
        id.0
    }
}

impl std::fmt::Display for ReminderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: one `@`, a non-empty local part, a dotted domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidReminder> {
        let raw = raw.into();
        let bad = || invalid("channel.to", "not an email address");
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = InvalidReminder;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0
    }
}

/// A WhatsApp template message: its approved name, language, and components (Meta's
/// `template.components` array, parameters included) as the API takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSpec {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub components: Vec<Value>,
}

impl TemplateSpec {
    fn validate(&self, field: &'static str) -> Result<(), InvalidReminder> {
        if !crate::whatsapp::is_template_name(&self.name) {
            return Err(invalid(
                field,
                "template name must be 1-512 lowercase letters, digits or underscores",
            ));
        }
        let language_ok = (2..=15).contains(&self.language.len())
            && self
                .language
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !language_ok {
            return Err(invalid(
                field,
                "language must be a code such as en or en_US",
            ));
        }
        if self.components.iter().any(|c| !c.is_object()) {
            return Err(invalid(field, "every template component must be an object"));
        }
        Ok(())
    }
}

/// How a reminder reaches the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReminderChannel {
    /// A template message from `phone_number_id`: allowed at any time.
    WhatsappTemplate {
        phone_number_id: PhoneNumberId,
        template: TemplateSpec,
    },
    /// A free-form text, allowed only inside the 24-hour customer service window; outside it
    /// the `fallback` template is sent instead, or the reminder fails with that reason.
    WhatsappText {
        phone_number_id: PhoneNumberId,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<TemplateSpec>,
    },
    /// An email through Resend.
    Email {
        to: EmailAddress,
        subject: String,
        body: String,
    },
}

impl ReminderChannel {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WhatsappTemplate { .. } => "whatsapp_template",
            Self::WhatsappText { .. } => "whatsapp_text",
            Self::Email { .. } => "email",
        }
    }

    /// The business number a WhatsApp reminder is sent from.
    pub fn phone_number_id(&self) -> Option<&PhoneNumberId> {
        match self {
            Self::WhatsappTemplate {
                phone_number_id, ..
            }
            | Self::WhatsappText {
                phone_number_id, ..
            } => Some(phone_number_id),
            Self::Email { .. } => None,
        }
    }

    fn validate(&self) -> Result<(), InvalidReminder> {
        match self {
            Self::WhatsappTemplate { template, .. } => template.validate("channel.template"),
            Self::WhatsappText { body, fallback, .. } => {
                if body.trim().is_empty() || body.chars().count() > MAX_TEXT_BODY {
                    return Err(invalid(
                        "channel.body",
                        format!("must be 1-{MAX_TEXT_BODY} characters"),
                    ));
                }
                fallback
                    .as_ref()
                    .map_or(Ok(()), |t| t.validate("channel.fallback"))
            }
            Self::Email { subject, body, .. } => {
                if subject.trim().is_empty()
                    || subject.chars().count() > MAX_SUBJECT
                    || subject.contains(['\r', '\n'])
                {
                    return Err(invalid(
                        "channel.subject",
                        format!("must be one line of 1-{MAX_SUBJECT} characters"),
                    ));
                }
                if body.trim().is_empty() || body.chars().count() > MAX_EMAIL_BODY {
                    return Err(invalid(
                        "channel.body",
                        format!("must be 1-{MAX_EMAIL_BODY} characters"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Where a reminder stands. `pending` → `sending` (claimed by one run) → `sent` | `failed`;
/// `pending` → `cancelled`; `sending` → `pending` again after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReminderStatus {
    Pending,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl ReminderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// A reminder as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    pub id: ReminderId,
    pub workspace_id: WorkspaceId,
    pub contact: WaId,
    pub channel: ReminderChannel,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    pub status: ReminderStatus,
    /// Sends tried so far (claims).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    /// The wamid of the WhatsApp message or the Resend email id.
    #[serde(default)]
    pub result_id: Option<String>,
    /// Set when the outcome of a send is unknown (a crashed run, a timeout after the request
    /// left): the reminder is never sent again by itself; a person decides.
    #[serde(default)]
    pub review: Option<String>,
    /// The run holding the claim, and until when.
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A reminder to create, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReminder {
    pub contact: WaId,
    pub channel: ReminderChannel,
    pub due_at: OffsetDateTime,
}

impl NewReminder {
    /// Validates a reminder due at `due_at` (any offset; stored in UTC, to the second). A due
    /// time in the past is refused unless `send_now`, which makes it due at `now`.
    pub fn parse(
        contact: WaId,
        channel: ReminderChannel,
        due_at: OffsetDateTime,
        send_now: bool,
        now: OffsetDateTime,
    ) -> Result<Self, InvalidReminder> {
        channel.validate()?;
        let due_at = due_at
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .map_err(|e| invalid("dueAt", e.to_string()))?;
        let due_at = if send_now {
            due_at.min(now)
        } else if due_at < now - time::Duration::seconds(1) {
            return Err(invalid(
                "dueAt",
                "is in the past; send `sendNow: true` to send it at once",
            ));
        } else {
            due_at
        };
        if due_at > now + time::Duration::days(400) {
            return Err(invalid("dueAt", "is more than 400 days ahead"));
        }
        Ok(Self {
            contact,
            channel,
            due_at,
        })
    }

    /// The stored reminder, pending.
    pub fn into_reminder(self, workspace_id: WorkspaceId, now: OffsetDateTime) -> Reminder {
        Reminder {
            id: ReminderId::new_at(now),
            workspace_id,
            contact: self.contact,
            channel: self.channel,
            due_at: self.due_at,
            status: ReminderStatus::Pending,
            attempts: 0,
            last_error: None,
            sent_at: None,
            result_id: None,
            review: None,
            run_id: None,
            lease_until: None,
            created_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    fn at(raw: &str) -> OffsetDateTime {
        OffsetDateTime::parse(raw, &Rfc3339).unwrap()
    }

    fn template() -> ReminderChannel {
        ReminderChannel::WhatsappTemplate {
            phone_number_id: PhoneNumberId::parse("1065").unwrap(),
            template: TemplateSpec {
                name: "appointment_reminder".into(),
                language: "en_US".into(),
                components: vec![],
            },
        }
    }

    fn wa() -> WaId {
        WaId::parse("16505551234").unwrap()
    }

    #[test]
    fn a_due_time_with_an_offset_is_stored_in_utc() {
        let now = at("2026-11-23T10:00:00Z");
        let r = NewReminder::parse(
            wa(),
            template(),
            at("2026-11-24T09:30:15.5+07:00"),
            false,
            now,
        )
        .unwrap();
        assert_eq!(r.due_at, at("2026-11-24T02:30:15Z"));
        assert_eq!(r.due_at.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn a_past_due_time_is_refused_unless_sent_now() {
        let now = at("2026-11-23T10:00:00Z");
        let past = at("2026-11-23T09:00:00Z");
        let e = NewReminder::parse(wa(), template(), past, false, now).unwrap_err();
        assert_eq!(e.field, "dueAt");
        let r = NewReminder::parse(wa(), template(), past, true, now).unwrap();
        assert_eq!(r.due_at, past);
    }

    #[test]
    fn a_template_name_with_capitals_is_refused() {
        let channel = ReminderChannel::WhatsappTemplate {
            phone_number_id: PhoneNumberId::parse("1065").unwrap(),
            template: TemplateSpec {
                name: "Appointment".into(),
                language: "en".into(),
                components: vec![],
            },
        };
        let now = at("2026-11-23T10:00:00Z");
        let e = NewReminder::parse(wa(), channel, now, false, now).unwrap_err();
        assert_eq!(e.field, "channel.template");
    }

    #[test]
    fn an_email_needs_an_address_a_one_line_subject_and_a_body() {
        assert!(EmailAddress::parse("ana@example.com").is_ok());
        for bad in [
            "ana",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        let now = at("2026-11-23T10:00:00Z");
        let channel = ReminderChannel::Email {
            to: EmailAddress::parse("ana@example.com").unwrap(),
            subject: "Hi\nBcc: x@y.z".into(),
            body: "See you".into(),
        };
        let e = NewReminder::parse(wa(), channel, now, false, now).unwrap_err();
        assert_eq!(e.field, "channel.subject");
    }

    #[test]
    fn reminder_ids_are_ulids() {
        let id = ReminderId::new_at(at("2026-11-23T10:00:00Z"));
        assert_eq!(ReminderId::parse(id.as_str()).unwrap(), id);
        assert!(ReminderId::parse("../etc").is_err());
    }
}
