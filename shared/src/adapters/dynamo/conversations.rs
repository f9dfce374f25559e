//! Conversations: the writes that put a message in its conversation.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::model::{ConversationChoice, NewMessage};
use crate::conversations::store::{StoreError, StoreResult};
use crate::ids::{ConversationId, PhoneNumberId, WaId, WorkspaceId};

use super::messages::message_item;
use super::*;

/// Whether a conversation is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ConversationStatus {
    Active,
    Ended,
}

/// A conversation as the table stores it (`CT#<workspace_id>#<wa_id>` / `CONV#<id>`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ConversationItem {
    pub conversation_id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
    pub status: ConversationStatus,
    pub started_at: Stamp,
    pub last_message_at: Stamp,
    /// Absent while only the business wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inbound_at: Option<Stamp>,
    /// The last activity: a message in or out, a status of one of its messages, a change from
    /// the dashboard. Absent on items written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Stamp>,
    /// Index keys: written, never needed to read an item back. GSI1 sorts a workspace's
    /// conversations by activity ([`conversation_activity_sk`]); GSI2 finds one by its id
    /// ([`conversation_id_key`]).
    #[serde(default)]
    pub gsi1pk: String,
    #[serde(default)]
    pub gsi1sk: String,
    #[serde(default)]
    pub gsi2pk: String,
    #[serde(default)]
    pub gsi2sk: String,
}

/// The writes that record activity on a conversation: `updated_at` and its GSI1 sort key.
pub(super) fn touch_expression() -> &'static str {
    "updated_at = :activity, gsi1sk = :activity_key"
}

pub(super) fn touch_values(
    id: &ConversationId,
    at: OffsetDateTime,
) -> StoreResult<[(&'static str, AttributeValue); 2]> {
    Ok([
        (":activity", to_value(Stamp(at))?),
        (":activity_key", to_value(conversation_activity_sk(id, at))?),
    ])
}

impl DynamoStore {
    /// The writes that put `message` in its conversation: the message itself (once), the
    /// thread on the contact (guarded against a racing writer), and the conversation item.
    pub(super) fn conversation_writes(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
        hand_over: bool,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let (ws, wa_id, pn) = (
            &message.workspace_id,
            &message.wa_id,
            &message.phone_number_id,
        );
        let at = message.timestamp;
        let mut items = vec![put_if_absent(&self.table, message_item(message)?)?];

        let mut sets = vec!["#conv = :conv"];
        let mut values = vec![(":conv", to_value(conversation.id.as_str())?)];
        if let Some(last) = conversation.last_inbound_at {
            sets.push("#last = :last");
            values.push((":last", to_value(Stamp(last))?));
        }
        if conversation.is_new {
            sets.push("#started = :started");
            values.push((":started", to_value(Stamp(at))?));
        }
        if conversation.is_new || hand_over {
            sets.push("#paused = :paused");
            values.push((":paused", to_value(hand_over)?));
        }
        let condition = match &conversation.previous {
            Some(previous) => {
                values.push((":previous", to_value(previous.as_str())?));
                "attribute_exists(pk) AND #conv = :previous"
            }
            None => "attribute_exists(pk) AND attribute_not_exists(#conv)",
        };
        let names = thread_names(pn);
        let mut expression = format!("SET {}", sets.join(", "));
        if conversation.is_new && conversation.last_inbound_at.is_none() {
            // A conversation the business opened has no inbound message yet.
            expression.push_str(" REMOVE #last");
        }
        let used: Vec<(&str, &str)> = names
            .iter()
            .filter(|(name, _)| expression.contains(name) || condition.contains(name))
            .map(|(name, attr)| (*name, attr.as_str()))
            .collect();
        items.push(update(
            &self.table,
            contact_key(ws, wa_id),
            &expression,
            &used,
            values,
            Some(condition),
        )?);

        let conversation_key = conversation_key(ws, wa_id, &conversation.id);
        let now = OffsetDateTime::now_utc();
        if conversation.is_new {
            let (gsi2pk, gsi2sk) = conversation_id_key(ws, &conversation.id);
            let item = ConversationItem {
                conversation_id: conversation.id.clone(),
                workspace_id: ws.clone(),
                phone_number_id: pn.clone(),
                wa_id: wa_id.clone(),
                status: ConversationStatus::Active,
                started_at: Stamp(at),
                last_message_at: Stamp(at),
                last_inbound_at: conversation.last_inbound_at.map(Stamp),
                updated_at: Some(Stamp(now)),
                ended_at: None,
                gsi1pk: workspace_partition(ws),
                gsi1sk: conversation_activity_sk(&conversation.id, now),
                gsi2pk,
                gsi2sk,
            };
            let item = to_item(conversation_key, &item)?;
            items.push(put_if_absent(&self.table, item)?);
            if let Some(previous) = &conversation.previous {
                let mut values = vec![
                    (":ended", to_value("ended")?),
                    (":ts", to_value(Stamp(at))?),
                ];
                values.extend(touch_values(previous, now)?);
                items.push(update(
                    &self.table,
                    self::conversation_key(ws, wa_id, previous),
                    &format!(
                        "SET #status = :ended, ended_at = :ts, {}",
                        touch_expression()
                    ),
                    &[("#status", "status")],
                    values,
                    Some("attribute_exists(pk)"),
                )?);
            }
        } else {
            let (expression, mut values) = match conversation.last_inbound_at {
                Some(last) => (
                    "SET last_inbound_at = :last, last_message_at = :ts",
                    vec![(":last", to_value(Stamp(last))?)],
                ),
                None => ("SET last_message_at = :ts", vec![]),
            };
            values.push((":ts", to_value(Stamp(at))?));
            values.extend(touch_values(&conversation.id, now)?);
            items.push(update(
                &self.table,
                conversation_key,
                &format!("{expression}, {}", touch_expression()),
                &[],
                values,
                None,
            )?);
        }
        Ok(items)
    }

    /// Records activity on a conversation that is not a message in it (a status of one of its
    /// messages): moves its `updated_at` and its place in GSI1.
    pub(super) async fn touch_conversation_item(
        &self,
        ws: &WorkspaceId,
        wa_id: &WaId,
        id: &ConversationId,
    ) -> StoreResult<()> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conversation_key(ws, wa_id, id))?))
            .update_expression(format!("SET {}", touch_expression()))
            .condition_expression("attribute_exists(pk)");
        for (name, value) in touch_values(id, OffsetDateTime::now_utc())? {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            // A message whose conversation is gone (deleted by hand): nothing to move.
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Runs the writes of [`Self::conversation_writes`]: `Ok(true)` when the message is new,
    /// `Ok(false)` when it was already stored.
    pub(super) async fn store_in_conversation(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
        hand_over: bool,
    ) -> StoreResult<bool> {
        let items = self.conversation_writes(message, conversation, hand_over)?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match cancelled_conditions(&e) {
                Some(reasons) if reasons.first() == Some(&true) => Ok(false),
                Some(_) => Err(StoreError::Conflict(format!(
                    "the conversation of {} changed while storing {}",
                    message.wa_id, message.wamid
                ))),
                None => Err(unavailable(e)),
            },
        }
    }
}
