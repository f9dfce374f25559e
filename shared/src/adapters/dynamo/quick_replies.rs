//! Quick replies (`WS#<workspace_id>` / `QUICK_REPLY#<id>`), and one guard item per shortcut
//! (`WS#<workspace_id>` / `SHORTCUT#<shortcut>`) written in the same transaction on the
//! condition that it does not exist: a duplicate shortcut is refused by DynamoDB, even in a race.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use crate::conversations::store::{StoreError, StoreResult};
use crate::dashboard::quick_replies::{QuickReply, QuickReplyStore, QuickReplyWrite};
use crate::ids::WorkspaceId;

use super::*;

#[derive(Debug, Serialize, Deserialize)]
struct QuickReplyItem {
    id: String,
    title: String,
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shortcut: Option<String>,
    created_at: Stamp,
    updated_at: Stamp,
}

#[derive(Debug, Serialize)]
struct ShortcutItem<'a> {
    quick_reply_id: &'a str,
}

fn row(r: &QuickReply) -> QuickReplyItem {
    QuickReplyItem {
        id: r.id.clone(),
        title: r.title.clone(),
        text: r.text.clone(),
        shortcut: r.shortcut.clone(),
        created_at: Stamp(r.created_at),
        updated_at: Stamp(r.updated_at),
    }
}

fn view(i: QuickReplyItem) -> QuickReply {
    QuickReply {
        id: i.id,
        title: i.title,
        text: i.text,
        shortcut: i.shortcut,
        created_at: i.created_at.0,
        updated_at: i.updated_at.0,
    }
}

impl DynamoStore {
    fn put_item(&self, item: Item, condition: &str) -> StoreResult<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .build()
                    .map_err(corrupt)?,
            )
            .build())
    }

    fn delete_write(
        &self,
        k: (String, String),
        condition: Option<&str>,
    ) -> StoreResult<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(k)))
                    .set_condition_expression(condition.map(str::to_owned))
                    .build()
                    .map_err(corrupt)?,
            )
            .build())
    }

    fn shortcut_guard(
        &self,
        ws: &WorkspaceId,
        reply: &QuickReply,
    ) -> StoreResult<Option<TransactWriteItem>> {
        reply
            .shortcut
            .as_deref()
            .map(|shortcut| {
                let item = to_item(
                    shortcut_key(ws, shortcut),
                    &ShortcutItem {
                        quick_reply_id: &reply.id,
                    },
                )?;
                self.put_item(item, "attribute_not_exists(pk)")
            })
            .transpose()
    }

    /// Runs a quick reply transaction whose first write is the quick reply itself; a failed
    /// condition there means it is gone, anywhere else that the shortcut is taken.
    async fn quick_reply_transaction(
        &self,
        writes: Vec<TransactWriteItem>,
    ) -> StoreResult<QuickReplyWrite> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(QuickReplyWrite::Done),
            Err(e) => match cancelled_conditions(&e) {
                Some(reasons) if reasons.first() == Some(&true) => Ok(QuickReplyWrite::NotFound),
                Some(reasons) if reasons.contains(&true) => Ok(QuickReplyWrite::ShortcutTaken),
                Some(_) => Err(StoreError::Conflict(
                    "a concurrent change to a quick reply".into(),
                )),
                None => Err(unavailable(e)),
            },
        }
    }
}

impl QuickReplyStore for DynamoStore {
    async fn quick_replies(&self, ws: &WorkspaceId) -> StoreResult<Vec<QuickReply>> {
        let mut replies = vec![];
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :qr)")
                .expression_attribute_values(":pk", s(workspace_partition(ws)))
                .expression_attribute_values(":qr", s(QUICK_REPLY_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items.unwrap_or_default() {
                replies.push(view(from_item(item)?));
            }
            match output.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(replies),
            }
        }
    }

    async fn quick_reply(&self, ws: &WorkspaceId, id: &str) -> StoreResult<Option<QuickReply>> {
        self.get(quick_reply_key(ws, id), true)
            .await?
            .map(|item| Ok(view(from_item(item)?)))
            .transpose()
    }

    async fn create_quick_reply(
        &self,
        ws: &WorkspaceId,
        reply: &QuickReply,
    ) -> StoreResult<QuickReplyWrite> {
        let item = to_item(quick_reply_key(ws, &reply.id), &row(reply))?;
        let mut writes = vec![self.put_item(item, "attribute_not_exists(pk)")?];
        writes.extend(self.shortcut_guard(ws, reply)?);
        match self.quick_reply_transaction(writes).await? {
            // A new id cannot exist: the first condition failing would be a ULID collision.
            QuickReplyWrite::NotFound => Err(StoreError::Conflict("quick reply id taken".into())),
            other => Ok(other),
        }
    }

    async fn replace_quick_reply(
        &self,
        ws: &WorkspaceId,
        previous: &QuickReply,
        reply: &QuickReply,
    ) -> StoreResult<QuickReplyWrite> {
        let item = to_item(quick_reply_key(ws, &reply.id), &row(reply))?;
        let mut writes = vec![self.put_item(item, "attribute_exists(pk)")?];
        if previous.shortcut != reply.shortcut {
            if let Some(old) = &previous.shortcut {
                writes.push(self.delete_write(shortcut_key(ws, old), None)?);
            }
            writes.extend(self.shortcut_guard(ws, reply)?);
        }
        self.quick_reply_transaction(writes).await
    }

    async fn delete_quick_reply(
        &self,
        ws: &WorkspaceId,
        reply: &QuickReply,
    ) -> StoreResult<QuickReplyWrite> {
        let mut writes =
            vec![self.delete_write(quick_reply_key(ws, &reply.id), Some("attribute_exists(pk)"))?];
        if let Some(shortcut) = &reply.shortcut {
            writes.push(self.delete_write(shortcut_key(ws, shortcut), None)?);
        }
        self.quick_reply_transaction(writes).await
    }
}
