//! Quick replies: canned answers a person picks in the inbox, each with a title, its text and
//! an optional shortcut (e.g. `/hours`) that is unique in the workspace.

use std::future::Future;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardError;
use super::page::{self, Page, PageKey};
use crate::conversations::store::StoreResult;
use crate::ids::WorkspaceId;

pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_SHORTCUT_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuickReply {
    pub id: String,
    pub title: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// `POST` creates one, `PUT` replaces one: every field but the optional shortcut is required.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickReplyInput {
    #[schema(min_length = 1, max_length = 100)]
    pub title: String,
    #[schema(min_length = 1, max_length = 4096)]
    pub text: String,
    /// Letters, digits, `-` and `_`, after an optional `/`; unique in the workspace, any case.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub shortcut: Option<String>,
}

/// A page of quick replies, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuickReplyPage {
    pub items: Vec<QuickReply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The most quick replies a workspace keeps. The store counts them in the same transaction
/// that writes one, so racing creates cannot pass it.
pub const MAX_QUICK_REPLIES: u32 = 500;

/// Why a quick reply write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuickReplyWrite {
    Done,
    NotFound,
    ShortcutTaken,
    /// The workspace has [`MAX_QUICK_REPLIES`] already.
    LimitReached,
}

/// Port: a workspace's quick replies (`WS#<workspace_id>` / `QUICK_REPLY#<id>`), with one guard
/// item per shortcut so a duplicate is refused by a conditional write, and a counter so the
/// workspace never holds more than [`MAX_QUICK_REPLIES`].
pub trait QuickReplyStore: Send + Sync + 'static {
    /// A page of the workspace's quick replies, oldest first.
    fn quick_replies(
        &self,
        workspace_id: &WorkspaceId,
        limit: u32,
        after: Option<PageKey>,
    ) -> impl Future<Output = Result<Page<QuickReply>, DashboardError>> + Send;
    fn quick_reply(
        &self,
        workspace_id: &WorkspaceId,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<QuickReply>>> + Send;
    /// Creates `reply` unless the workspace has [`MAX_QUICK_REPLIES`] already.
    fn create_quick_reply(
        &self,
        workspace_id: &WorkspaceId,
        reply: &QuickReply,
    ) -> impl Future<Output = StoreResult<QuickReplyWrite>> + Send;
    /// Replaces `previous` with `reply` (same id), moving the shortcut guard if it changed.
    fn replace_quick_reply(
        &self,
        workspace_id: &WorkspaceId,
        previous: &QuickReply,
        reply: &QuickReply,
    ) -> impl Future<Output = StoreResult<QuickReplyWrite>> + Send;
    fn delete_quick_reply(
        &self,
        workspace_id: &WorkspaceId,
        reply: &QuickReply,
    ) -> impl Future<Output = StoreResult<QuickReplyWrite>> + Send;
}

fn text(field: &str, value: &str, max: usize) -> Result<String, DashboardError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(DashboardError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

impl QuickReplyInput {
    /// The title, text and shortcut, cleaned; the shortcut lower-cased, with its leading `/`.
    pub fn validate(self) -> Result<(String, String, Option<String>), DashboardError> {
        let title = text("title", &self.title, MAX_TITLE_CHARS)?;
        if title.chars().any(char::is_control) {
            return Err(DashboardError::invalid(
                "title",
                "must not contain control characters",
            ));
        }
        let body = text("text", &self.text, MAX_TEXT_CHARS)?;
        let shortcut = match self.shortcut {
            None => None,
            Some(raw) => {
                let name = raw.trim().trim_start_matches('/').to_lowercase();
                if name.is_empty()
                    || name.chars().count() > MAX_SHORTCUT_CHARS
                    || !name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(DashboardError::invalid(
                        "shortcut",
                        format!(
                            "must be 1 to {MAX_SHORTCUT_CHARS} letters, digits, `-` or `_`, after an optional `/`"
                        ),
                    ));
                }
                Some(format!("/{name}"))
            }
        };
        Ok((title, body, shortcut))
    }
}

fn outcome(write: QuickReplyWrite) -> Result<(), DashboardError> {
    match write {
        QuickReplyWrite::Done => Ok(()),
        QuickReplyWrite::NotFound => Err(DashboardError::NotFound),
        QuickReplyWrite::ShortcutTaken => Err(DashboardError::Conflict(
            "another quick reply has this shortcut".into(),
        )),
        QuickReplyWrite::LimitReached => Err(DashboardError::Conflict(format!(
            "a workspace keeps at most {MAX_QUICK_REPLIES} quick replies"
        ))),
    }
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list<D: QuickReplyStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    limit: Option<String>,
    cursor: Option<String>,
) -> Result<QuickReplyPage, DashboardError> {
    let limit = page::limit(limit.as_deref())?;
    let after = page::cursor(cursor.as_deref())?;
    let page = store.quick_replies(workspace_id, limit, after).await?;
    Ok(QuickReplyPage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    })
}

pub async fn get<D: QuickReplyStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<QuickReply, DashboardError> {
    if ulid::Ulid::from_string(id).is_err() {
        return Err(DashboardError::NotFound);
    }
    store
        .quick_reply(workspace_id, id)
        .await?
        .ok_or(DashboardError::NotFound)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create<D: QuickReplyStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    input: QuickReplyInput,
) -> Result<QuickReply, DashboardError> {
    let (title, text, shortcut) = input.validate()?;
    let now = OffsetDateTime::now_utc();
    let reply = QuickReply {
        id: ulid::Ulid::from_datetime(now.into()).to_string(),
        title,
        text,
        shortcut,
        created_at: now,
        updated_at: now,
    };
    outcome(store.create_quick_reply(workspace_id, &reply).await?)?;
    Ok(reply)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn replace<D: QuickReplyStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
    input: QuickReplyInput,
) -> Result<QuickReply, DashboardError> {
    let (title, text, shortcut) = input.validate()?;
    let previous = get(store, workspace_id, id).await?;
    let reply = QuickReply {
        title,
        text,
        shortcut,
        updated_at: OffsetDateTime::now_utc(),
        ..previous.clone()
    };
    outcome(
        store
            .replace_quick_reply(workspace_id, &previous, &reply)
            .await?,
    )?;
    Ok(reply)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn delete<D: QuickReplyStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<(), DashboardError> {
    let reply = get(store, workspace_id, id).await?;
    outcome(store.delete_quick_reply(workspace_id, &reply).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(title: &str, text: &str, shortcut: Option<&str>) -> QuickReplyInput {
        QuickReplyInput {
            title: title.into(),
            text: text.into(),
            shortcut: shortcut.map(Into::into),
        }
    }

    fn field_of(result: Result<(String, String, Option<String>), DashboardError>) -> String {
        match result {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_shortcut_is_kept_lower_case_with_one_leading_slash() {
        let (_, _, shortcut) = input("Hours", "9 to 5", Some(" /Hours "))
            .validate()
            .unwrap();
        assert_eq!(shortcut.as_deref(), Some("/hours"));
        let (_, _, shortcut) = input("Hours", "9 to 5", Some("hours")).validate().unwrap();
        assert_eq!(shortcut.as_deref(), Some("/hours"));
    }

    #[test]
    fn each_invalid_field_is_named() {
        assert_eq!(field_of(input(" ", "t", None).validate()), "title");
        assert_eq!(field_of(input("t", "", None).validate()), "text");
        assert_eq!(
            field_of(input("t", &"x".repeat(MAX_TEXT_CHARS + 1), None).validate()),
            "text"
        );
        assert_eq!(field_of(input("t", "t", Some("/")).validate()), "shortcut");
        assert_eq!(
            field_of(input("t", "t", Some("two words")).validate()),
            "shortcut"
        );
    }
}
