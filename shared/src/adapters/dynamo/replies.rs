//! Reply intents: recorded before a send, settled after it.

use aws_sdk_dynamodb::types::{Delete, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::model::{
    IntentOutcome, NewMessage, ReplyDraft, ReplyIntent, ReplyPart, Resumption, StatusUpdate,
    UnsettledReply,
};
use crate::conversations::store::{MessageStore, ReplyStore, StoreError, StoreResult};
use crate::ids::Wamid;

use super::messages::message_item;
use super::*;

/// Where a reply intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum IntentState {
    /// Recorded before the send; parts may be going out.
    Sending,
    Sent,
    /// Refused for good.
    Failed,
    /// May or may not have been sent: flagged, never sent again.
    Unknown,
    /// Some parts of a split reply went out; the next certainly did not, and a redelivery
    /// sends the rest.
    Interrupted,
}

/// A reply intent as first written (`INTENT#<conversation_id>#<trigger_wamid>` / `INTENT`).
/// Sending the parts adds `wamid`, `wamids` and the error attributes to it.
#[derive(Debug, Serialize)]
struct IntentItem {
    state: IntentState,
    draft: ReplyDraft,
    covers: Vec<Wamid>,
    parts_sent: u32,
    created_at: Stamp,
    ttl: i64,
}

/// What reading an intent back needs.
#[derive(Debug, Deserialize)]
struct StoredIntent {
    state: IntentState,
    draft: ReplyDraft,
}

/// What a coverage check reads of a message.
#[derive(Debug, Deserialize)]
struct Coverage {
    #[serde(default)]
    reply_intent: Option<String>,
}

/// What resuming an interrupted intent needs.
#[derive(Debug, Deserialize)]
struct InterruptedIntent {
    draft: ReplyDraft,
    covers: Vec<Wamid>,
    parts_sent: u32,
}

impl ReplyStore for DynamoStore {
    async fn begin_reply(
        &self,
        intent: &ReplyIntent,
        draft: &ReplyDraft,
        covers: &[Wamid],
    ) -> StoreResult<IntentOutcome> {
        let key_value = intent.key();
        let item = IntentItem {
            state: IntentState::Sending,
            draft: draft.clone(),
            covers: covers.to_vec(),
            parts_sent: 0,
            created_at: Stamp(draft.created_at),
            ttl: (draft.created_at + INTENT_TTL).unix_timestamp(),
        };
        let item = to_item(intent_key(intent), &item)?;
        let mut items = vec![put_if_absent(&self.table, item)?];
        for wamid in covers {
            items.push(update(
                &self.table,
                message_key(wamid),
                "SET reply_intent = :intent",
                &[],
                vec![(":intent", to_value(&key_value)?)],
                Some("attribute_exists(pk) AND (attribute_not_exists(reply_intent) OR reply_intent = :intent)"),
            )?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let reasons = match result {
            Ok(_) => return Ok(IntentOutcome::Acquired),
            Err(e) => cancelled_conditions(&e).ok_or_else(|| unavailable(e))?,
        };
        if reasons.first() == Some(&true) {
            let state = match self.get(intent_key(intent), true).await? {
                Some(item) => Some(from_item::<StoredIntent>(item)?.state),
                None => None,
            };
            return Ok(match state {
                Some(IntentState::Sent | IntentState::Failed) => IntentOutcome::AlreadySent,
                _ => IntentOutcome::OutcomeUnknown,
            });
        }
        if reasons.iter().any(|failed| *failed) {
            return Ok(IntentOutcome::Covered);
        }
        Err(StoreError::Conflict(format!(
            "the reply intent {key_value} raced another writer"
        )))
    }

    async fn release_reply(&self, intent: &ReplyIntent, covers: &[Wamid]) -> StoreResult<()> {
        let key_value = intent.key();
        let mut items = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(intent_key(intent))?))
                        .condition_expression("#state = :sending")
                        .expression_attribute_names("#state", "state")
                        .expression_attribute_values(":sending", to_value("sending")?)
                        .build()
                        .map_err(corrupt)?,
                )
                .build(),
        ];
        for wamid in covers {
            items.push(update(
                &self.table,
                message_key(wamid),
                "REMOVE reply_intent",
                &[],
                vec![(":intent", to_value(&key_value)?)],
                Some("reply_intent = :intent"),
            )?);
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| match cancelled_conditions(&e) {
                Some(_) => StoreError::Conflict(format!(
                    "the reply intent {key_value} changed before it could be released"
                )),
                None => unavailable(e),
            })?;
        Ok(())
    }

    async fn fail_reply(
        &self,
        intent: &ReplyIntent,
        code: Option<i64>,
        reason: &str,
    ) -> StoreResult<()> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(intent_key(intent))?))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":failed", to_value("failed")?)
            .expression_attribute_values(":reason", to_value(reason)?);
        let mut expression = String::from("SET #state = :failed, error_title = :reason");
        if let Some(code) = code {
            expression.push_str(", error_code = :code");
            request = request.expression_attribute_values(":code", to_value(code)?);
        }
        request
            .update_expression(expression)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn flag_reply(
        &self,
        intent: &ReplyIntent,
        state: UnsettledReply,
        reason: &str,
    ) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(intent_key(intent))?))
            .update_expression("SET #state = :flag, error_title = :reason")
            .condition_expression("#state = :sending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":flag", to_value(state.as_str())?)
            .expression_attribute_values(":sending", to_value("sending")?)
            .expression_attribute_values(":reason", to_value(reason)?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_reply(
        &self,
        intent: &ReplyIntent,
        message: &NewMessage,
        part: ReplyPart,
        answered_through: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        // `answered_through` only moves forward: the contact update carries that condition, and
        // if it alone cancels the transaction (a later reply already moved it), the reply is
        // recorded without moving it.
        let mut moving = answered_through.filter(|_| part.is_last());
        loop {
            let items = self.reply_writes(intent, message, part, moving)?;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let reasons = match result {
                Ok(_) => {
                    self.apply_early_statuses_of_reply(&message.wamid).await;
                    return Ok(());
                }
                Err(e) => cancelled_conditions(&e).ok_or_else(|| unavailable(e))?,
            };
            let only_answered = reasons.get(2) == Some(&true)
                && reasons.iter().filter(|failed| **failed).count() == 1;
            if moving.is_some() && only_answered {
                moving = None;
                continue;
            }
            return Err(StoreError::Conflict(format!(
                "the reply intent {} is not being sent any more",
                intent.key()
            )));
        }
    }

    async fn uncovered(&self, wamids: &[Wamid]) -> StoreResult<Vec<Wamid>> {
        let mut left = Vec::new();
        for wamid in wamids {
            let covered = match self.get(message_key(wamid), true).await? {
                Some(item) => from_item::<Coverage>(item)?.reply_intent.is_some(),
                None => true,
            };
            if !covered {
                left.push(wamid.clone());
            }
        }
        Ok(left)
    }

    async fn resume_reply(&self, intent: &ReplyIntent) -> StoreResult<Option<Resumption>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(intent_key(intent))?))
            .update_expression("SET #state = :sending")
            .condition_expression("#state = :interrupted")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":sending", to_value("sending")?)
            .expression_attribute_values(":interrupted", to_value("interrupted")?)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output
                    .attributes
                    .ok_or_else(|| corrupt("the resumed intent came back without attributes"))?;
                let InterruptedIntent {
                    draft,
                    covers,
                    parts_sent,
                } = from_item(item)?;
                Ok(Some(Resumption {
                    draft,
                    covers,
                    parts_sent,
                }))
            }
            Err(e) if is_conditional_failure(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn reconcile_reply(
        &self,
        intent: &ReplyIntent,
        update: &StatusUpdate,
    ) -> StoreResult<bool> {
        let Some(item) = self.get(intent_key(intent), true).await? else {
            return Ok(false);
        };
        let StoredIntent { state, draft } = from_item(item)?;
        if !matches!(state, IntentState::Sending | IntentState::Unknown) {
            return Ok(false);
        }
        // The callback data is only ours to trust when the status is about the same number and
        // the same customer as the reply it names.
        if draft.phone_number_id != update.phone_number_id
            || update.recipient.as_ref() != Some(&draft.wa_id)
        {
            return Ok(false);
        }
        let message = draft.message(update.wamid.clone(), &draft.text);
        self.record_reply(intent, &message, ReplyPart::WHOLE, draft.answers_through)
            .await?;
        self.apply_status(update).await?;
        Ok(true)
    }
}

impl DynamoStore {
    /// A status can come before the reply it is about is recorded (Meta and Kapso report a
    /// message as soon as it is sent, and the record is written after the API answered): such a
    /// status was kept as early, and is applied now. The reply itself is recorded whatever
    /// happens here, and a redelivery would find it sent and not come back, so a failure is
    /// logged rather than failing the record; a later status still applies normally.
    async fn apply_early_statuses_of_reply(&self, wamid: &Wamid) {
        if let Err(e) = self.apply_early_statuses(wamid).await {
            tracing::warn!(wamid = %wamid, error = %e, "statuses that came before the reply could not be applied");
        }
    }

    /// The writes of one recorded reply part, in this order: intent, message, contact thread,
    /// conversation (`record_reply` reads the cancellation reasons by position).
    pub(super) fn reply_writes(
        &self,
        intent: &ReplyIntent,
        message: &NewMessage,
        part: ReplyPart,
        answered_through: Option<OffsetDateTime>,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let state = if part.is_last() { "sent" } else { "sending" };
        let pn = &message.phone_number_id;
        let mut contact_values = vec![(":now", to_value(Stamp(message.timestamp))?)];
        let (contact_expression, contact_condition, contact_names) =
            if let Some(t) = answered_through {
                contact_values.push((":t", to_value(Stamp(t))?));
                (
                    "SET last_outbound_at = :now, #answered = :t",
                    Some("attribute_not_exists(#answered) OR #answered <= :t"),
                    vec![("#answered", thread_attr(pn, "answered_through"))],
                )
            } else {
                ("SET last_outbound_at = :now", None, vec![])
            };
        let contact_names: Vec<(&str, &str)> = contact_names
            .iter()
            .map(|(name, attr)| (*name, attr.as_str()))
            .collect();
        Ok(vec![
            update(
                &self.table,
                intent_key(intent),
                "SET #state = :state, parts_sent = :part, wamid = if_not_exists(wamid, :wamid), \
                 wamids = list_append(if_not_exists(wamids, :empty), :wamids)",
                &[("#state", "state")],
                vec![
                    (":state", to_value(state)?),
                    (":part", to_value(part.index)?),
                    (":wamid", to_value(message.wamid.as_str())?),
                    (":wamids", to_value([message.wamid.as_str()])?),
                    (":empty", to_value(Vec::<String>::new())?),
                    (":sending", to_value("sending")?),
                    (":unknown", to_value("unknown")?),
                ],
                Some("#state IN (:sending, :unknown)"),
            )?,
            put_if_absent(&self.table, message_item(message)?)?,
            update(
                &self.table,
                contact_key(&message.workspace_id, &message.wa_id),
                contact_expression,
                &contact_names,
                contact_values,
                contact_condition,
            )?,
            update(
                &self.table,
                conversation_key(
                    &message.workspace_id,
                    &message.wa_id,
                    &message.conversation_id,
                ),
                &format!(
                    "SET last_message_at = :now, {}",
                    super::conversations::touch_expression()
                ),
                &[],
                [(":now", to_value(Stamp(message.timestamp))?)]
                    .into_iter()
                    .chain(super::conversations::touch_values(
                        &message.conversation_id,
                        OffsetDateTime::now_utc(),
                    )?)
                    .collect(),
                Some("attribute_exists(pk)"),
            )?,
        ])
    }
}
