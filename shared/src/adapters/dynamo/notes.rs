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
        let pk = contact_partition(ws, wa_id);
        let after = after
            .map(|a| a.expect(&pk, NOTE_PREFIX, NOTE_PREFIX))
            .transpose()?;
        let from_client = after.is_some();
        let start = after.map(|a| key((pk.clone(), a.sk))).transpose()?;
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :note)")
            .expression_attribute_values(":pk", to_value(&pk)?)
            .expression_attribute_values(":note", to_value(NOTE_PREFIX)?)
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| {
                if from_client && super::inbox::is_validation_error(&e) {
                    super::inbox::bad_cursor()
                } else {
                    DashboardError::from(unavailable(e))
                }
            })?;
        let next = output
            .last_evaluated_key
            .map(super::inbox::table_position)
            .transpose()?;
        let items = output
            .items
            .unwrap_or_default()
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
