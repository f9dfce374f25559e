//! Messages and their statuses, statuses that came before their message, and failed events.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use crate::conversations::model::{
    ConversationChoice, Direction, FailedEvent, HistoryItem, MessageStatus, NewMessage,
    StatusOutcome, StatusUpdate, Stored,
};
use crate::conversations::store::{MessageStore, StoreError, StoreResult};
use crate::ids::{ConversationId, PhoneNumberId, Wamid};

use super::*;

pub(super) fn message_item(m: &NewMessage) -> Item {
    let mut item = key(message_key(&m.wamid));
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("wamid", s(m.wamid.as_str()));
    put(
        "direction",
        s(match m.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }),
    );
    put("workspace_id", s(m.workspace_id.as_str()));
    put("phone_number_id", s(m.phone_number_id.as_str()));
    put("wa_id", s(m.wa_id.as_str()));
    put("conversation_id", s(m.conversation_id.as_str()));
    put("type", s(&m.kind));
    put("timestamp", ts(m.timestamp));
    put("source", s(m.source.as_str()));
    put("gsi1pk", s(format!("CONV#{}", m.conversation_id.as_str())));
    put(
        "gsi1sk",
        s(format!("{:015}#{}", millis(m.timestamp), m.wamid.as_str())),
    );
    let mut history = HashMap::new();
    if let Some(status) = m.status {
        put("status", s(status.as_str()));
        put("status_rank", n(status.rank()));
        history.insert(status.as_str().to_owned(), ts(m.timestamp));
    } else {
        put("status_rank", n(0));
    }
    put("status_at", AttributeValue::M(history));
    if let Some(v) = &m.text {
        put("text", s(v));
    }
    if let Some(v) = &m.media_id {
        put("media_id", s(v));
    }
    if let Some(v) = &m.mime_type {
        put("mime_type", s(v));
    }
    if let Some(v) = &m.origin {
        put("origin", s(v));
    }
    if let Some(ai) = &m.ai {
        let mut meta = HashMap::from([
            ("provider".to_owned(), s(ai.provider.as_str())),
            ("model".to_owned(), s(&ai.model)),
            ("latency_ms".to_owned(), n(ai.latency_ms)),
        ]);
        let optional = [
            ("first_token_ms", ai.first_token_ms),
            ("prompt_tokens", ai.prompt_tokens.map(u64::from)),
            ("completion_tokens", ai.completion_tokens.map(u64::from)),
            ("total_tokens", ai.total_tokens.map(u64::from)),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                meta.insert(k.to_owned(), n(v));
            }
        }
        if let Some(from) = ai.failover_from {
            meta.insert("failover_from".to_owned(), s(from.as_str()));
        }
        put("ai", AttributeValue::M(meta));
    }
    if let Some(raw) = &m.raw {
        put("raw", s(raw));
    }
    item
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
                covered: false,
            });
        }
        // A redelivery: whether a reply covers it is recorded on the message itself.
        let stored = self
            .get(message_key(&message.wamid), true)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("{} vanished", message.wamid)))?;
        Ok(Stored {
            conversation_id: ConversationId::parse(required(&stored, "conversation_id")?)
                .map_err(corrupt)?,
            first_time: false,
            covered: stored.contains_key("reply_intent"),
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
            .set_key(Some(key(message_key(&update.wamid))))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#s", update.status.as_str())
            .expression_attribute_values(":status", s(update.status.as_str()))
            .expression_attribute_values(":rank", n(update.status.rank()))
            .expression_attribute_values(":at", ts(update.at))
            .condition_expression("attribute_exists(pk) AND status_rank < :rank")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut expression =
            String::from("SET #status = :status, status_rank = :rank, status_at.#s = :at");
        if let Some(code) = update.error_code {
            expression.push_str(", error_code = :code");
            request = request.expression_attribute_values(":code", n(code));
        }
        if let Some(title) = &update.error_title {
            expression.push_str(", error_title = :title");
            request = request.expression_attribute_values(":title", s(title));
        }
        let applied = request.update_expression(expression).send().await;
        let exists = match applied {
            Ok(_) => return Ok(StatusOutcome::Applied),
            Err(e) if is_conditional_failure(&e) => {
                // The old item comes back when the message exists but is already further along.
                matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) if c.item.is_some()
                )
            }
            Err(e) => return Err(unavailable(e)),
        };
        if exists {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(message_key(&update.wamid))))
                .update_expression("SET status_at.#s = if_not_exists(status_at.#s, :at)")
                .expression_attribute_names("#s", update.status.as_str())
                .expression_attribute_values(":at", ts(update.at))
                .send()
                .await
                .map_err(unavailable)?;
            return Ok(StatusOutcome::Stale);
        }
        let mut item = key(early_key(&update.wamid, update.status));
        item.extend([
            ("status".to_owned(), s(update.status.as_str())),
            (
                "phone_number_id".to_owned(),
                s(update.phone_number_id.as_str()),
            ),
            ("at".to_owned(), ts(update.at)),
            ("raw".to_owned(), s(&update.raw)),
            (
                "ttl".to_owned(),
                ttl_at(OffsetDateTime::now_utc() + EARLY_STATUS_TTL),
            ),
        ]);
        if let Some(code) = update.error_code {
            item.insert("error_code".into(), s(code.to_string()));
        }
        if let Some(title) = &update.error_title {
            item.insert("error_title".into(), s(title));
        }
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
            .expression_attribute_values(":pk", s(format!("CONV#{}", conversation.as_str())))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = output
            .items()
            .iter()
            .map(|item| {
                Ok(HistoryItem {
                    wamid: Wamid::parse(required(item, "wamid")?).map_err(corrupt)?,
                    direction: match get_s(item, "direction") {
                        Some("outbound") => Direction::Outbound,
                        _ => Direction::Inbound,
                    },
                    text: get_s(item, "text").map(str::to_owned),
                    kind: get_s(item, "type").unwrap_or("unknown").to_owned(),
                    timestamp: get_ts(item, "timestamp").unwrap_or(OffsetDateTime::UNIX_EPOCH),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        items.reverse();
        Ok(items)
    }
    async fn record_failed_event(&self, failed: &FailedEvent) -> StoreResult<()> {
        let mut item = key(failed_key(&failed.id));
        item.extend([
            ("reason".to_owned(), s(&failed.reason)),
            ("body".to_owned(), s(&failed.body)),
            ("at".to_owned(), ts(failed.at)),
            ("ttl".to_owned(), ttl_at(failed.at + FAILED_EVENT_TTL)),
        ]);
        self.put(item).await?;
        Ok(())
    }
}

impl DynamoStore {
    /// Applies statuses that arrived before their message. Safe to repeat: statuses are
    /// monotonic, so a retry after a failure half-way applies the rest.
    pub(super) async fn apply_early_statuses(&self, wamid: &Wamid) -> StoreResult<()> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("EARLY#{}", wamid.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        for item in output.items() {
            let Some(status) = get_s(item, "status").and_then(MessageStatus::parse) else {
                continue;
            };
            let update = StatusUpdate {
                wamid: wamid.clone(),
                phone_number_id: PhoneNumberId::parse(required(item, "phone_number_id")?)
                    .map_err(corrupt)?,
                recipient: None,
                status,
                at: get_ts(item, "at").unwrap_or_else(OffsetDateTime::now_utc),
                error_code: get_s(item, "error_code").and_then(|c| c.parse().ok()),
                error_title: get_s(item, "error_title").map(str::to_owned),
                raw: get_s(item, "raw").unwrap_or_default().to_owned(),
            };
            self.apply_status(&update).await?;
        }
        Ok(())
    }
}
