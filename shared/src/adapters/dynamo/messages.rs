//! Messages and their statuses, statuses that came before their message, and failed events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use crate::ai::ProviderName;
use crate::conversations::model::{
    ConversationChoice, Direction, FailedEvent, HistoryItem, MessageStatus, NewMessage,
    ReplyIntent, StatusOutcome, StatusUpdate, Stored,
};
use crate::conversations::store::{MessageStore, StoreError, StoreResult};
use crate::envelope::Source;
use crate::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};

use super::*;

/// A message as the table stores it (`MSG#<wamid>` / `MESSAGE`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MessageItem {
    pub wamid: Wamid,
    pub direction: Direction,
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
    pub conversation_id: ConversationId,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// The status's rank (0 before any), compared by the monotonic status update.
    #[serde(default)]
    pub status_rank: u8,
    /// When the message reached each status: its history.
    #[serde(default)]
    pub status_at: BTreeMap<String, Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiMeta>,
    /// The key of the reply intent that covers this (inbound) message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Index keys: written, never needed to read an item back.
    #[serde(default)]
    pub gsi1pk: String,
    #[serde(default)]
    pub gsi1sk: String,
}

/// Which model wrote a reply, and what it cost.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AiMeta {
    pub provider: ProviderName,
    pub model: String,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_from: Option<ProviderName>,
}

impl From<&NewMessage> for MessageItem {
    fn from(m: &NewMessage) -> Self {
        Self {
            wamid: m.wamid.clone(),
            direction: m.direction,
            workspace_id: m.workspace_id.clone(),
            phone_number_id: m.phone_number_id.clone(),
            wa_id: m.wa_id.clone(),
            conversation_id: m.conversation_id.clone(),
            kind: m.kind.clone(),
            timestamp: m.timestamp,
            source: m.source,
            status: m.status,
            status_rank: m.status.map_or(0, MessageStatus::rank),
            status_at: m
                .status
                .map(|status| (status.as_str().to_owned(), Stamp(m.timestamp)))
                .into_iter()
                .collect(),
            error_code: None,
            error_title: None,
            text: m.text.clone(),
            media_id: m.media_id.clone(),
            mime_type: m.mime_type.clone(),
            origin: m.origin.clone(),
            ai: m.ai.as_ref().map(|ai| AiMeta {
                provider: ai.provider,
                model: ai.model.clone(),
                latency_ms: ai.latency_ms,
                first_token_ms: ai.first_token_ms,
                prompt_tokens: ai.prompt_tokens,
                completion_tokens: ai.completion_tokens,
                total_tokens: ai.total_tokens,
                failover_from: ai.failover_from,
            }),
            reply_intent: None,
            raw: m.raw.clone(),
            gsi1pk: conversation_messages_partition(&m.conversation_id),
            gsi1sk: message_position_sk(m.timestamp, &m.wamid),
        }
    }
}

/// The item of a new message, with its key.
pub(super) fn message_item(m: &NewMessage) -> StoreResult<Item> {
    to_item(message_key(&m.wamid), &MessageItem::from(m))
}

/// A status that came before its message (`EARLY#<wamid>` / `STATUS#<status>`).
#[derive(Debug, Serialize, Deserialize)]
struct EarlyStatusItem {
    status: MessageStatus,
    phone_number_id: PhoneNumberId,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_title: Option<String>,
    raw: String,
    ttl: i64,
}

/// An event that can never be processed (`FAILED#<id>` / `FAILED`).
#[derive(Debug, Serialize)]
struct FailedEventItem<'a> {
    reason: &'a str,
    body: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    ttl: i64,
}

impl MessageStore for DynamoStore {
    async fn store_inbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
    ) -> StoreResult<Stored> {
        if self
            .store_in_conversation(message, conversation, false)
            .await?
        {
            return Ok(Stored {
                conversation_id: conversation.id.clone(),
                first_time: true,
                covered_by: None,
            });
        }
        // A redelivery: whether a reply covers it is recorded on the message itself.
        let stored = self
            .get(message_key(&message.wamid), true)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("{} vanished", message.wamid)))?;
        let stored: MessageItem = from_item(stored)?;
        Ok(Stored {
            conversation_id: stored.conversation_id,
            first_time: false,
            covered_by: stored
                .reply_intent
                .as_deref()
                .map(|key| {
                    ReplyIntent::parse_key(key).ok_or_else(|| {
                        corrupt(format!("reply_intent {key:?} is not an intent key"))
                    })
                })
                .transpose()?,
        })
    }

    async fn store_outbound(
        &self,
        message: &NewMessage,
        conversation: &ConversationChoice,
        hand_over: bool,
    ) -> StoreResult<bool> {
        let stored = self
            .store_in_conversation(message, conversation, hand_over)
            .await?;
        // Also on a redelivery: the first attempt may have stored the message and then failed
        // before its early statuses were applied.
        self.apply_early_statuses(&message.wamid).await?;
        Ok(stored)
    }

    async fn apply_status(&self, update: &StatusUpdate) -> StoreResult<StatusOutcome> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(message_key(&update.wamid))?))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#s", update.status.as_str())
            .expression_attribute_values(":status", to_value(update.status.as_str())?)
            .expression_attribute_values(":rank", to_value(update.status.rank())?)
            .expression_attribute_values(":at", to_value(Stamp(update.at))?)
            .condition_expression("attribute_exists(pk) AND status_rank < :rank")
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut expression =
            String::from("SET #status = :status, status_rank = :rank, status_at.#s = :at");
        if let Some(code) = update.error_code {
            expression.push_str(", error_code = :code");
            request = request.expression_attribute_values(":code", to_value(code)?);
        }
        if let Some(title) = &update.error_title {
            expression.push_str(", error_title = :title");
            request = request.expression_attribute_values(":title", to_value(title)?);
        }
        let applied = request.update_expression(expression).send().await;
        let existing = match applied {
            Ok(output) => {
                self.touch_conversation_of(output.attributes).await?;
                return Ok(StatusOutcome::Applied);
            }
            Err(e) if is_conditional_failure(&e) => {
                // The old item comes back when the message exists but is already further along.
                match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                }
            }
            Err(e) => return Err(unavailable(e)),
        };
        if let Some(existing) = existing {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(message_key(&update.wamid))?))
                .update_expression("SET status_at.#s = if_not_exists(status_at.#s, :at)")
                .expression_attribute_names("#s", update.status.as_str())
                .expression_attribute_values(":at", to_value(Stamp(update.at))?)
                .send()
                .await
                .map_err(unavailable)?;
            self.touch_conversation_of(Some(existing)).await?;
            return Ok(StatusOutcome::Stale);
        }
        let early = EarlyStatusItem {
            status: update.status,
            phone_number_id: update.phone_number_id.clone(),
            at: update.at,
            error_code: update.error_code,
            error_title: update.error_title.clone(),
            raw: update.raw.clone(),
            ttl: (OffsetDateTime::now_utc() + EARLY_STATUS_TTL).unix_timestamp(),
        };
        let item = to_item(early_key(&update.wamid, update.status), &early)?;
        self.put(item).await?;
        Ok(StatusOutcome::Early)
    }

    async fn history(
        &self,
        conversation: &ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<HistoryItem>> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("gsi1pk = :pk")
            .expression_attribute_values(
                ":pk",
                to_value(conversation_messages_partition(conversation))?,
            )
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let m: MessageItem = from_item(item)?;
                Ok(HistoryItem {
                    wamid: m.wamid,
                    direction: m.direction,
                    text: m.text,
                    kind: m.kind,
                    timestamp: m.timestamp,
                    covered: m.reply_intent.is_some(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        items.reverse();
        Ok(items)
    }
    async fn record_failed_event(&self, failed: &FailedEvent) -> StoreResult<()> {
        let item = to_item(
            failed_key(&failed.id),
            &FailedEventItem {
                reason: &failed.reason,
                body: &failed.body,
                at: failed.at,
                ttl: (failed.at + FAILED_EVENT_TTL).unix_timestamp(),
            },
        )?;
        self.put(item).await?;
        Ok(())
    }
}

impl DynamoStore {
    /// A status is activity on the message's conversation: it moves the conversation's place in
    /// the inbox (see `updatedSince`).
    async fn touch_conversation_of(&self, message: Option<Item>) -> StoreResult<()> {
        let Some(message) = message else {
            return Ok(());
        };
        let m: MessageItem = from_item(message)?;
        self.touch_conversation_item(&m.workspace_id, &m.wa_id, &m.conversation_id)
            .await
    }

    /// Applies statuses that arrived before their message. Safe to repeat: statuses are
    /// monotonic, so a retry after a failure half-way applies the rest.
    pub(super) async fn apply_early_statuses(&self, wamid: &Wamid) -> StoreResult<()> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", to_value(early_partition(wamid))?)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        for item in output.items.unwrap_or_default() {
            let early: EarlyStatusItem = from_item(item)?;
            let update = StatusUpdate {
                wamid: wamid.clone(),
                phone_number_id: early.phone_number_id,
                recipient: None,
                status: early.status,
                at: early.at,
                error_code: early.error_code,
                error_title: early.error_title,
                raw: early.raw,
            };
            self.apply_status(&update).await?;
        }
        Ok(())
    }
}
