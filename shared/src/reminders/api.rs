//! The send API's reminder use cases (`/v1/reminders`): create (validated, once per
//! `Idempotency-Key`), list with filters and pages, read one, cancel. Every one takes the
//! caller's workspace from the verified token, so another workspace's reminder is never found.

use crate::dashboard::send::request_hash;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::dashboard::DashboardError;
use crate::dashboard::contacts::ContactDirectory;
use crate::dashboard::page;
use crate::dashboard::send::IdempotencyKey;
use crate::ids::{PhoneNumberId, WaId, WorkspaceId};
use crate::reminders::model::{
    EmailAddress, InvalidReminder, NewReminder, Reminder, ReminderChannel, ReminderId,
    ReminderStatus, TemplateSpec,
};
use crate::reminders::store::{Cancelled, Created, KeyedRequest, ReminderFilter, ReminderStore};

// ----- request and response ---------------------------------------------------------------------

/// A reminder to schedule for a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReminderRequest {
    /// The contact's id (its WhatsApp id); the contact must exist in the workspace.
    pub contact_id: String,
    pub channel: ReminderChannelBody,
    /// When to send it: RFC 3339 with an offset (e.g. `2026-11-24T09:30:00+05:30`); stored and
    /// answered in UTC, to the second. A time in the past is refused unless `sendNow`.
    #[schema(format = DateTime)]
    pub due_at: String,
    /// Send at the next run even if `dueAt` is in the past.
    #[serde(default)]
    pub send_now: bool,
}

/// How the reminder reaches the contact; `type` says which way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReminderChannelBody {
    /// An approved template, from one of the workspace's numbers; allowed at any time.
    WhatsappTemplate(TemplateChannel),
    /// A free-form text, only inside the 24-hour window; outside it the `fallback` template
    /// is sent, or the reminder fails with that reason.
    WhatsappText(TextChannel),
    /// An email through Resend.
    Email(EmailChannel),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateChannel {
    /// The workspace's number that sends it.
    pub phone_number_id: String,
    pub template: TemplateBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TextChannel {
    /// The workspace's number that sends it.
    pub phone_number_id: String,
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<TemplateBody>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    pub to: String,
    /// One line.
    pub subject: String,
    pub body: String,
}

/// A template message: its approved name, language code and Meta's components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateBody {
    /// Lowercase letters, digits and underscores.
    pub name: String,
    /// e.g. `en` or `en_US`.
    pub language: String,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

/// A reminder as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReminderView {
    pub id: String,
    pub contact_id: String,
    pub channel: ReminderChannelBody,
    /// In UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    pub status: ReminderStatus,
    /// Sends tried so far.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<OffsetDateTime>,
    /// The wamid of the WhatsApp message, or the Resend email id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    /// Why a person must decide whether it went out (its send's outcome is unknown); it is
    /// never sent again by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReminderList {
    pub items: Vec<ReminderView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/reminders`'s query string.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReminderListParams {
    pub status: Option<String>,
    pub contact_id: Option<String>,
    pub due_from: Option<String>,
    pub due_to: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Why a reminder request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReminderError {
    #[error(transparent)]
    Dashboard(#[from] DashboardError),
    #[error("this Idempotency-Key was used with another request body")]
    IdempotencyKeyReused,
}

impl From<crate::conversations::store::StoreError> for ReminderError {
    fn from(e: crate::conversations::store::StoreError) -> Self {
        Self::Dashboard(e.into())
    }
}

impl From<InvalidReminder> for DashboardError {
    fn from(e: InvalidReminder) -> Self {
        DashboardError::invalid(e.field, e.message)
    }
}

// ----- conversions ------------------------------------------------------------------------------

fn template_spec(t: TemplateBody) -> TemplateSpec {
    TemplateSpec {
        name: t.name,
        language: t.language,
        components: t.components,
    }
}

fn template_body(t: TemplateSpec) -> TemplateBody {
    TemplateBody {
        name: t.name,
        language: t.language,
        components: t.components,
    }
}

fn phone_number(raw: String) -> Result<PhoneNumberId, DashboardError> {
    PhoneNumberId::parse(raw)
        .map_err(|_| DashboardError::invalid("channel.phoneNumberId", "not a phone number id"))
}

impl ReminderChannelBody {
    fn into_channel(self) -> Result<ReminderChannel, DashboardError> {
        Ok(match self {
            Self::WhatsappTemplate(c) => ReminderChannel::WhatsappTemplate {
                phone_number_id: phone_number(c.phone_number_id)?,
                template: template_spec(c.template),
            },
            Self::WhatsappText(c) => ReminderChannel::WhatsappText {
                phone_number_id: phone_number(c.phone_number_id)?,
                body: c.body,
                fallback: c.fallback.map(template_spec),
            },
            Self::Email(c) => ReminderChannel::Email {
                to: EmailAddress::parse(c.to)?,
                subject: c.subject,
                body: c.body,
            },
        })
    }
}

impl From<ReminderChannel> for ReminderChannelBody {
    fn from(c: ReminderChannel) -> Self {
        match c {
            ReminderChannel::WhatsappTemplate {
                phone_number_id,
                template,
            } => Self::WhatsappTemplate(TemplateChannel {
                phone_number_id: phone_number_id.as_str().to_owned(),
                template: template_body(template),
            }),
            ReminderChannel::WhatsappText {
                phone_number_id,
                body,
                fallback,
            } => Self::WhatsappText(TextChannel {
                phone_number_id: phone_number_id.as_str().to_owned(),
                body,
                fallback: fallback.map(template_body),
            }),
            ReminderChannel::Email { to, subject, body } => Self::Email(EmailChannel {
                to: to.as_str().to_owned(),
                subject,
                body,
            }),
        }
    }
}

impl From<Reminder> for ReminderView {
    fn from(r: Reminder) -> Self {
        Self {
            id: r.id.to_string(),
            contact_id: r.contact.as_str().to_owned(),
            channel: r.channel.into(),
            due_at: r.due_at,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
            sent_at: r.sent_at,
            result_id: r.result_id,
            review: r.review,
            created_at: r.created_at,
        }
    }
}

fn timestamp(field: &'static str, raw: &str) -> Result<OffsetDateTime, DashboardError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        DashboardError::invalid(
            field,
            "must be an RFC 3339 time with an offset, e.g. 2026-11-24T09:30:00+05:30",
        )
    })
}

// ----- the use cases ----------------------------------------------------------------------------

/// What creating answered: the reminder, and whether an earlier request with the same key
/// created it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedReminder {
    pub reminder: ReminderView,
    pub replayed: bool,
}

/// Validates and stores a pending reminder; with an `Idempotency-Key`, the same key and body
/// answer with the reminder the first request created, and another body is refused.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create<D: ReminderStore + ContactDirectory>(
    store: &D,
    workspace_id: &WorkspaceId,
    idempotency_key: Option<&IdempotencyKey>,
    request: CreateReminderRequest,
) -> Result<CreatedReminder, ReminderError> {
    let now = OffsetDateTime::now_utc();
    let hash = request_hash(&request);
    let contact = WaId::parse(request.contact_id.as_str())
        .map_err(|_| DashboardError::invalid("contactId", "not a contact id"))?;
    let due_at = timestamp("dueAt", &request.due_at)?;
    let channel = request.channel.into_channel()?;
    let new = NewReminder::parse(contact, channel, due_at, request.send_now, now)
        .map_err(DashboardError::from)?;
    if store.contact(workspace_id, &new.contact).await?.is_none() {
        return Err(
            DashboardError::invalid("contactId", "no such contact in this workspace").into(),
        );
    }
    if let Some(number) = new.channel.phone_number_id()
        && !store.owns_number(workspace_id, number).await?
    {
        return Err(DashboardError::invalid(
            "channel.phoneNumberId",
            "not one of this workspace's numbers",
        )
        .into());
    }
    let reminder = new.into_reminder(workspace_id.clone(), now);
    let keyed = idempotency_key.map(|k| KeyedRequest {
        key: k.as_str(),
        request_hash: &hash,
    });
    match store.create_reminder(&reminder, keyed).await? {
        Created::New(r) => {
            tracing::info!(reminder_id = %r.id, channel = r.channel.kind(), due_at = %r.due_at, "reminder created");
            Ok(CreatedReminder {
                reminder: r.into(),
                replayed: false,
            })
        }
        Created::Existing {
            reminder,
            request_hash,
        } if request_hash == hash => Ok(CreatedReminder {
            reminder: reminder.into(),
            replayed: true,
        }),
        Created::Existing { .. } => Err(ReminderError::IdempotencyKeyReused),
    }
}

fn parse_id(raw: &str) -> Result<ReminderId, DashboardError> {
    // An id that cannot be one is simply not found.
    ReminderId::parse(raw).map_err(|_| DashboardError::NotFound)
}

impl ReminderListParams {
    fn validate(self) -> Result<(ReminderFilter, u32, Option<page::PageKey>), DashboardError> {
        let status = self
            .status
            .map(|s| {
                ReminderStatus::parse(&s).ok_or_else(|| {
                    DashboardError::invalid(
                        "status",
                        "must be pending, sending, sent, failed or cancelled",
                    )
                })
            })
            .transpose()?;
        let contact = self
            .contact_id
            .map(|c| {
                WaId::parse(c).map_err(|_| DashboardError::invalid("contactId", "not a contact id"))
            })
            .transpose()?;
        let due_from = self
            .due_from
            .map(|t| timestamp("dueFrom", &t))
            .transpose()?;
        let due_to = self.due_to.map(|t| timestamp("dueTo", &t)).transpose()?;
        if let (Some(from), Some(to)) = (due_from, due_to)
            && from > to
        {
            return Err(DashboardError::invalid("dueTo", "is before dueFrom"));
        }
        let limit = page::limit(self.limit.as_deref())?;
        Ok((
            ReminderFilter {
                status,
                contact,
                due_from,
                due_to,
            },
            limit,
            page::cursor(self.cursor.as_deref())?,
        ))
    }
}

/// The workspace's reminders by due time, oldest first, filtered.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list<D: ReminderStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    params: ReminderListParams,
) -> Result<ReminderList, DashboardError> {
    let (filter, limit, after) = params.validate()?;
    let page = store
        .list_reminders(workspace_id, &filter, limit, after)
        .await?;
    Ok(ReminderList {
        items: page.items.into_iter().map(ReminderView::from).collect(),
        next_cursor: page.next.map(|k| k.encode()),
    })
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn get<D: ReminderStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<ReminderView, DashboardError> {
    store
        .reminder(workspace_id, &parse_id(id)?)
        .await?
        .map(ReminderView::from)
        .ok_or(DashboardError::NotFound)
}

/// Cancels a pending reminder; any other status is a conflict.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn cancel<D: ReminderStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<ReminderView, DashboardError> {
    let id = parse_id(id)?;
    let now = OffsetDateTime::now_utc();
    match store.cancel_reminder(workspace_id, &id, now).await? {
        Cancelled::Cancelled(r) => {
            tracing::info!(reminder_id = %id, "reminder cancelled");
            Ok((*r).into())
        }
        Cancelled::NotFound => Err(DashboardError::NotFound),
        Cancelled::NotPending(status) => Err(DashboardError::Conflict(format!(
            "only a pending reminder can be cancelled; this one is {}",
            status.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(params: ReminderListParams) -> String {
        match params.validate() {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn each_bad_list_parameter_is_named() {
        let p = ReminderListParams::default;
        assert_eq!(
            field(ReminderListParams {
                status: Some("done".into()),
                ..p()
            }),
            "status"
        );
        assert_eq!(
            field(ReminderListParams {
                due_from: Some("tomorrow".into()),
                ..p()
            }),
            "dueFrom"
        );
        assert_eq!(
            field(ReminderListParams {
                due_from: Some("2026-11-24T10:00:00Z".into()),
                due_to: Some("2026-11-24T09:00:00Z".into()),
                ..p()
            }),
            "dueTo"
        );
        assert_eq!(
            field(ReminderListParams {
                limit: Some("0".into()),
                ..p()
            }),
            "limit"
        );
        assert_eq!(
            field(ReminderListParams {
                cursor: Some("!".into()),
                ..p()
            }),
            "cursor"
        );
    }

    #[test]
    fn the_request_hash_ignores_key_order_but_not_values() {
        let a: CreateReminderRequest = serde_json::from_str(
            r#"{"contactId":"1","dueAt":"x","channel":{"type":"email","to":"a@b.c","subject":"s","body":"b"}}"#,
        )
        .unwrap();
        let b: CreateReminderRequest = serde_json::from_str(
            r#"{"channel":{"body":"b","subject":"s","to":"a@b.c","type":"email"},"dueAt":"x","contactId":"1"}"#,
        )
        .unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        let mut c = a.clone();
        c.send_now = true;
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
