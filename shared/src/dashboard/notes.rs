//! Notes: what people in the workspace write down about a contact, newest first.

use std::future::Future;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardError;
use super::contacts::ContactDirectory;
use super::page::{self, Page, PageKey};
use crate::ids::{WaId, WorkspaceId};

pub const MAX_NOTE_CHARS: usize = 4000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// A ULID: notes sort by when they were written.
    pub id: String,
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    #[schema(min_length = 1, max_length = 4000)]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotePage {
    pub items: Vec<Note>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Port: a contact's notes (`CT#<workspace_id>#<wa_id>` / `NOTE#<ulid>`).
pub trait NoteStore: Send + Sync + 'static {
    fn add_note(
        &self,
        workspace_id: &WorkspaceId,
        wa_id: &WaId,
        note: &Note,
    ) -> impl Future<Output = crate::conversations::store::StoreResult<()>> + Send;
    /// A page of a contact's notes, newest first.
    fn notes(
        &self,
        workspace_id: &WorkspaceId,
        wa_id: &WaId,
        limit: u32,
        after: Option<PageKey>,
    ) -> impl Future<Output = Result<Page<Note>, DashboardError>> + Send;
}

/// The contact's id, when the contact exists in the workspace.
async fn contact<D: ContactDirectory>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<WaId, DashboardError> {
    let wa_id = WaId::parse(id).map_err(|_| DashboardError::NotFound)?;
    store
        .contact(workspace_id, &wa_id)
        .await?
        .ok_or(DashboardError::NotFound)?;
    Ok(wa_id)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn add<D: NoteStore + ContactDirectory>(
    store: &D,
    workspace_id: &WorkspaceId,
    contact_id: &str,
    new: NewNote,
) -> Result<Note, DashboardError> {
    let text = new.text.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return Err(DashboardError::invalid(
            "text",
            format!("must be 1 to {MAX_NOTE_CHARS} characters"),
        ));
    }
    let wa_id = contact(store, workspace_id, contact_id).await?;
    let now = OffsetDateTime::now_utc();
    let note = Note {
        id: ulid::Ulid::from_datetime(now.into()).to_string(),
        text: text.to_owned(),
        created_at: now,
    };
    store.add_note(workspace_id, &wa_id, &note).await?;
    Ok(note)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list<D: NoteStore + ContactDirectory>(
    store: &D,
    workspace_id: &WorkspaceId,
    contact_id: &str,
    limit: Option<String>,
    cursor: Option<String>,
) -> Result<NotePage, DashboardError> {
    let limit = page::limit(limit.as_deref())?;
    let after = page::cursor(cursor.as_deref())?;
    let wa_id = contact(store, workspace_id, contact_id).await?;
    let page = store.notes(workspace_id, &wa_id, limit, after).await?;
    Ok(NotePage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    })
}
