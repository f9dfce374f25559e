//! The inbox: a workspace's conversations, newest activity first, one conversation with its
//! messages, and the two things the dashboard changes on a conversation: its status (ending
//! it) and `botPaused` (a person takes over; the processor reads the very flag written here).

use std::future::Future;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardError;
use super::page::{self, Page, PageKey};
use crate::conversations::model::ContactRef;
use crate::conversations::store::{ContactStore, StoreResult};
use crate::ids::{ConversationId, WorkspaceId};

/// Whether a conversation is still going on. An ended conversation stays ended: the
/// customer's next message starts a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    Active,
    Ended,
}

/// A conversation as the dashboard sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// The conversation id (a ULID).
    pub id: String,
    /// The contact's id: their WhatsApp id (a phone number in digits, or a BSUID).
    pub contact_id: String,
    /// The business number the conversation is with.
    pub phone_number_id: String,
    pub status: ConversationStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_message_at: OffsetDateTime,
    /// The customer's last message; absent while only the business wrote.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_inbound_at: Option<OffsetDateTime>,
    /// The last activity: a message in or out, a status of one of its messages, a change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
    /// A person has taken the conversation over: the AI does not answer in it. Only the
    /// contact's current conversation can be paused.
    pub bot_paused: bool,
}

/// A conversation with where it lives: the contact's thread it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub contact: ContactRef,
    /// It is the thread's current conversation (the one a new message continues).
    pub is_current: bool,
    pub view: Conversation,
}

/// A message as the dashboard sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The WhatsApp message id (wamid).
    pub id: String,
    /// `inbound` (from the customer) or `outbound` (from the business).
    #[schema(example = "inbound")]
    pub direction: String,
    /// `text`, `image`, `template`, … as WhatsApp names it.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: OffsetDateTime,
    /// The delivery status of an outbound message: `sent`, `delivered`, `read` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Every status the message reached, in the order of delivery (sent, delivered, read).
    pub status_history: Vec<StatusChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
    /// Who wrote an outbound message that was not the AI: e.g. `business_app`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// For an AI reply: which model wrote it, how long it took, and what it cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiReply>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatusChange {
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessageError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiReply {
    /// `grok`, `sealion` or `offline`.
    pub provider: String,
    pub model: String,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u32>,
    /// The provider that failed first, when the reply came from the other one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_from: Option<String>,
}

/// A page of conversations.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub items: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What `GET /v1/conversations` asks for, as the query string gives it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConversationListParams {
    pub status: Option<String>,
    pub updated_since: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// `GET /v1/conversations/{id}/messages`'s query string.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A validated conversation list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationQuery {
    pub status: Option<ConversationStatus>,
    /// Only conversations with activity strictly after this time.
    pub updated_since: Option<OffsetDateTime>,
    pub limit: u32,
    pub after: Option<PageKey>,
}

/// `PATCH /v1/conversations/{id}`: the fields to change; at least one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConversationPatch {
    /// `ended` ends the conversation (the customer's next message starts a new one);
    /// `active` is accepted for a conversation that is still active.
    pub status: Option<ConversationStatus>,
    /// `true` hands the conversation to a person: the AI stops answering in it. `false`
    /// gives it back to the AI.
    pub bot_paused: Option<bool>,
}

/// Port: the inbox's reads and writes (see docs/data-model.md, patterns 13 to 16).
pub trait InboxStore: Send + Sync + 'static {
    /// A page of the workspace's conversations, newest activity first.
    fn conversations(
        &self,
        workspace_id: &WorkspaceId,
        query: &ConversationQuery,
    ) -> impl Future<Output = Result<Page<Conversation>, DashboardError>> + Send;
    /// One conversation of the workspace's, read consistently; `None` for another's id.
    fn conversation(
        &self,
        workspace_id: &WorkspaceId,
        id: &ConversationId,
    ) -> impl Future<Output = StoreResult<Option<ConversationRecord>>> + Send;
    /// A page of a conversation's messages, oldest first.
    fn messages(
        &self,
        conversation: &ConversationRecord,
        limit: u32,
        after: Option<PageKey>,
    ) -> impl Future<Output = Result<Page<Message>, DashboardError>> + Send;
    /// Ends the conversation and, when it is the thread's current one, lets the customer's
    /// next message start a new one. `Ok(false)` when it had already ended.
    fn end_conversation(
        &self,
        conversation: &ConversationRecord,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a change made from the dashboard as activity on the conversation.
    fn touch_conversation(
        &self,
        conversation: &ConversationRecord,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

fn parse_time(field: &str, raw: &str) -> Result<OffsetDateTime, DashboardError> {
    OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).map_err(|_| {
        DashboardError::invalid(field, "must be an RFC 3339 time, e.g. 2026-01-31T09:30:00Z")
    })
}

fn parse_id(raw: &str) -> Result<ConversationId, DashboardError> {
    // An id that cannot be one is simply not found: no hint about what ids look like.
    ConversationId::parse(raw).map_err(|_| DashboardError::NotFound)
}

impl ConversationListParams {
    pub fn validate(self) -> Result<ConversationQuery, DashboardError> {
        let status = match self.status.as_deref() {
            None => None,
            Some("active") => Some(ConversationStatus::Active),
            Some("ended") => Some(ConversationStatus::Ended),
            Some(_) => {
                return Err(DashboardError::invalid(
                    "status",
                    "must be `active` or `ended`",
                ));
            }
        };
        let updated_since = self
            .updated_since
            .as_deref()
            .map(|t| parse_time("updatedSince", t))
            .transpose()?;
        Ok(ConversationQuery {
            status,
            updated_since,
            limit: page::limit(self.limit.as_deref())?,
            after: page::cursor(self.cursor.as_deref())?,
        })
    }
}

/// The workspace's conversations.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list<D: InboxStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    params: ConversationListParams,
) -> Result<ConversationPage, DashboardError> {
    let query = params.validate()?;
    let page = store.conversations(workspace_id, &query).await?;
    Ok(ConversationPage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    })
}

async fn find<D: InboxStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<ConversationRecord, DashboardError> {
    store
        .conversation(workspace_id, &parse_id(id)?)
        .await?
        .ok_or(DashboardError::NotFound)
}

/// One conversation of the workspace's.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn get<D: InboxStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<Conversation, DashboardError> {
    Ok(find(store, workspace_id, id).await?.view)
}

/// A conversation's messages, oldest first.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn messages<D: InboxStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
    params: PageParams,
) -> Result<MessagePage, DashboardError> {
    let limit = page::limit(params.limit.as_deref())?;
    let after = page::cursor(params.cursor.as_deref())?;
    let conversation = find(store, workspace_id, id).await?;
    let page = store.messages(&conversation, limit, after).await?;
    Ok(MessagePage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    })
}

/// Changes a conversation's status and handoff, and returns it as stored.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn patch<D: InboxStore + ContactStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
    patch: ConversationPatch,
) -> Result<Conversation, DashboardError> {
    if patch.status.is_none() && patch.bot_paused.is_none() {
        return Err(DashboardError::invalid(
            "body",
            "give at least one of `status` and `botPaused`",
        ));
    }
    let conversation = find(store, workspace_id, id).await?;
    let now = OffsetDateTime::now_utc();
    let ended = conversation.view.status == ConversationStatus::Ended;
    if patch.status == Some(ConversationStatus::Active) && ended {
        return Err(DashboardError::Conflict(
            "an ended conversation cannot be reopened; the customer's next message starts a new one"
                .into(),
        ));
    }
    if let Some(paused) = patch.bot_paused {
        if ended || !conversation.is_current {
            return Err(DashboardError::Conflict(
                "only the contact's current, active conversation can be paused or resumed".into(),
            ));
        }
        if !store
            .set_bot_paused(&conversation.contact, &conversation.id, paused)
            .await?
        {
            return Err(DashboardError::Conflict(
                "a new conversation started meanwhile; read it and retry".into(),
            ));
        }
        tracing::info!(conversation_id = %conversation.id, paused, "handoff changed");
    }
    if patch.status == Some(ConversationStatus::Ended) && !ended {
        store.end_conversation(&conversation, now).await?;
        tracing::info!(conversation_id = %conversation.id, "conversation ended");
    } else {
        store.touch_conversation(&conversation, now).await?;
    }
    Ok(find(store, workspace_id, id).await?.view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<ConversationQuery, DashboardError>) -> String {
        match result {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn list_parameters_are_validated_naming_the_field() {
        let params = |f: fn(&mut ConversationListParams)| {
            let mut p = ConversationListParams::default();
            f(&mut p);
            p.validate()
        };
        assert_eq!(
            field_of(params(|p| p.status = Some("open".into()))),
            "status"
        );
        assert_eq!(
            field_of(params(|p| p.updated_since = Some("yesterday".into()))),
            "updatedSince"
        );
        assert_eq!(field_of(params(|p| p.limit = Some("ten".into()))), "limit");
        assert_eq!(field_of(params(|p| p.limit = Some("0".into()))), "limit");
        assert_eq!(
            field_of(params(|p| p.cursor = Some("garbled".into()))),
            "cursor"
        );
    }

    #[test]
    fn valid_list_parameters_become_the_query() {
        let query = ConversationListParams {
            status: Some("ended".into()),
            updated_since: Some("2026-01-31T09:30:00+01:00".into()),
            limit: Some("10".into()),
            cursor: None,
        }
        .validate()
        .unwrap();
        assert_eq!(query.status, Some(ConversationStatus::Ended));
        assert_eq!(query.updated_since.unwrap().unix_timestamp(), 1_769_848_200);
        assert_eq!(query.limit, 10);
    }
}
