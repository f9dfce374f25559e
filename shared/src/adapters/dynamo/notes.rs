//! Notes on a contact (`CT#<workspace_id>#<wa_id>` / `NOTE#<ulid>`): in the contact's own
//! partition, so a contact's notes are one query, newest first.

use serde::{Deserialize, Serialize};

use crate::conversations::store::StoreResult;
use crate::dashboard::DashboardError;
use crate::dashboard::notes::{Note, NoteStore};
use crate::dashboard::page::{Page, PageKey};
use crate::ids::{WaId, WorkspaceId};

use super::*;

#[derive(Debug, Serialize, Deserialize)]
struct NoteItem {
    id: String,
    text: String,
    created_at: Stamp,
}

impl NoteStore for DynamoStore {
    async fn add_note(&self, ws: &WorkspaceId, wa_id: &WaId, note: &Note) -> StoreResult<()> {
        let item = NoteItem {
            id: note.id.clone(),
            text: note.text.clone(),
            created_at: Stamp(note.created_at),
        };
        self.put(to_item(note_key(ws, wa_id, &note.id), &item)?)
            .await
    }

    async fn notes(
        &self,
        ws: &WorkspaceId,
        wa_id: &WaId,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<Page<Note>, DashboardError> {
        let (items, next) = self
            .partition_page(
                &contact_partition(ws, wa_id),
                NOTE_PREFIX,
                true,
                limit,
                after,
            )
            .await?;
        let items = items
            .into_iter()
            .map(|item| {
                let n: NoteItem = from_item(item)?;
                Ok(Note {
                    id: n.id,
                    text: n.text,
                    created_at: n.created_at.0,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next })
    }
}
