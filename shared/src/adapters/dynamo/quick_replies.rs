//! Quick replies (`WS#<workspace_id>` / `QUICK_REPLY#<id>`), and one guard item per shortcut
//! (`WS#<workspace_id>` / `SHORTCUT#<shortcut>`) written in the same transaction on the
//! condition that it does not exist: a duplicate shortcut is refused by DynamoDB, even in a race.
//! A counter (`WS#<workspace_id>` / `QUICK_REPLY_COUNT`) moves in the same transactions, on the
//! condition on a create that it is below the cap, so racing creates cannot pass it.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use crate::conversations::store::{StoreError, StoreResult};
use crate::dashboard::DashboardError;
use crate::dashboard::page::{Page, PageKey};
use crate::dashboard::quick_replies::{
    MAX_QUICK_REPLIES, QuickReply, QuickReplyStore, QuickReplyWrite,
};
use crate::ids::WorkspaceId;
use crate::retry::RetryPolicy;

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
                    .set_key(Some(key(k)?))
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

    /// Moves the workspace's quick reply counter by `by`; a create (`by > 0`) only while the
    /// workspace is below [`MAX_QUICK_REPLIES`].
    fn count(&self, ws: &WorkspaceId, by: i32) -> StoreResult<TransactWriteItem> {
        let mut values = vec![(":by", to_value(by)?)];
        let condition = (by > 0).then(|| {
            values.push((":max", to_value(MAX_QUICK_REPLIES)?));
            Ok::<_, StoreError>("attribute_not_exists(#count) OR #count < :max")
        });
        let condition = condition.transpose()?;
        update(
            &self.table,
            quick_reply_count_key(ws),
            "ADD #count :by",
            &[("#count", "count")],
            values,
            condition,
        )
    }

    /// Runs a quick reply transaction whose first write is the quick reply itself and whose
    /// second, on a create, is the counter; a failed condition on the first means it is gone,
    /// on the counter that the workspace is full, anywhere else that the shortcut is taken.
    ///
    /// Creates and deletes in the same workspace all write its counter, so DynamoDB may cancel
    /// one for a concurrent transaction: a cancelled transaction wrote nothing, and is tried
    /// again by the one retry policy.
    async fn quick_reply_transaction(
        &self,
        writes: Vec<TransactWriteItem>,
        counted: bool,
    ) -> StoreResult<QuickReplyWrite> {
        let policy = RetryPolicy::default();
        let mut delays = policy.delays();
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .send()
                .await;
            return match result {
                Ok(_) => Ok(QuickReplyWrite::Done),
                Err(e) => match cancelled_conditions(&e) {
                    Some(reasons) if reasons.first() == Some(&true) => {
                        Ok(QuickReplyWrite::NotFound)
                    }
                    Some(reasons) if counted && reasons.get(1) == Some(&true) => {
                        Ok(QuickReplyWrite::LimitReached)
                    }
                    Some(reasons) if reasons.contains(&true) => Ok(QuickReplyWrite::ShortcutTaken),
                    Some(_) => match delays.next() {
                        Some(delay) => {
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        None => Err(StoreError::Conflict(
                            "a concurrent change to a quick reply".into(),
                        )),
                    },
                    None => Err(unavailable(e)),
                },
            };
        }
    }
}

impl QuickReplyStore for DynamoStore {
    async fn quick_replies(
        &self,
        ws: &WorkspaceId,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<Page<QuickReply>, DashboardError> {
        let (items, next) = self
            .partition_page(
                &workspace_partition(ws),
                QUICK_REPLY_PREFIX,
                false,
                limit,
                after,
            )
            .await?;
        let items = items
            .into_iter()
            .map(|item| Ok(view(from_item(item)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next })
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
        let mut writes = vec![
            self.put_item(item, "attribute_not_exists(pk)")?,
            self.count(ws, 1)?,
        ];
        writes.extend(self.shortcut_guard(ws, reply)?);
        match self.quick_reply_transaction(writes, true).await? {
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
        self.quick_reply_transaction(writes, false).await
    }

    async fn delete_quick_reply(
        &self,
        ws: &WorkspaceId,
        reply: &QuickReply,
    ) -> StoreResult<QuickReplyWrite> {
        let mut writes = vec![
            self.delete_write(quick_reply_key(ws, &reply.id), Some("attribute_exists(pk)"))?,
            self.count(ws, -1)?,
        ];
        if let Some(shortcut) = &reply.shortcut {
            writes.push(self.delete_write(shortcut_key(ws, shortcut), None)?);
        }
        self.quick_reply_transaction(writes, false).await
    }
}
