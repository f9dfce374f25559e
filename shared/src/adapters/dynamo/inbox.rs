//! The inbox's reads and the dashboard's changes to a conversation (docs/data-model.md,
//! patterns 13 to 16). Lists read GSI1; a conversation is found by its id through GSI2 and then
//! read consistently from the table.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::KeysAndAttributes;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::conversations::model::ContactRef;
use crate::conversations::store::StoreResult;
use crate::dashboard::DashboardError;
use crate::dashboard::inbox::{
    AiReply, Conversation, ConversationQuery, ConversationRecord, ConversationStatus, InboxStore,
    Message, MessageError, StatusChange,
};
use crate::dashboard::page::{Page, PageKey};
use crate::ids::{ConversationId, WaId, WorkspaceId};

use super::contacts::contact_state;
use super::conversations::{self, ConversationItem, touch_expression, touch_values};
use super::messages::MessageItem;
use super::*;

/// Queries per page at most when a filter skips items: a page may come back short, with a
/// cursor to go on from.
const MAX_QUERIES_PER_PAGE: usize = 10;

impl From<conversations::ConversationStatus> for ConversationStatus {
    fn from(s: conversations::ConversationStatus) -> Self {
        match s {
            conversations::ConversationStatus::Active => Self::Active,
            conversations::ConversationStatus::Ended => Self::Ended,
        }
    }
}

fn view(c: ConversationItem, bot_paused: bool) -> Conversation {
    Conversation {
        id: c.conversation_id.as_str().to_owned(),
        contact_id: c.wa_id.as_str().to_owned(),
        phone_number_id: c.phone_number_id.as_str().to_owned(),
        status: c.status.into(),
        started_at: c.started_at.0,
        last_message_at: c.last_message_at.0,
        last_inbound_at: c.last_inbound_at.map(|t| t.0),
        updated_at: c.updated_at.unwrap_or(c.last_message_at).0,
        ended_at: c.ended_at.map(|t| t.0),
        bot_paused,
    }
}

/// Whether conversation `id` is the current one of the contact's thread (`who`'s number), and
/// whether the bot is paused in it: only the thread's current conversation can be. The contact
/// item is read as the processor reads it ([`contact_state`]), so a thread attribute of another
/// shape is corrupt, never "not paused".
fn thread_state(
    contact: &Item,
    who: &ContactRef,
    id: &ConversationId,
) -> StoreResult<(bool, bool)> {
    let state = contact_state(contact, &who.workspace_id, &who.phone_number_id, &who.wa_id)?;
    let is_current = state.conversation_id.as_ref() == Some(id);
    Ok((is_current, is_current && state.bot_paused))
}

/// The contact a conversation item belongs to.
fn contact_of(c: &ConversationItem) -> ContactRef {
    ContactRef {
        workspace_id: c.workspace_id.clone(),
        phone_number_id: c.phone_number_id.clone(),
        wa_id: c.wa_id.clone(),
    }
}

/// What a batch read of contacts needs of each: whose it is.
#[derive(Debug, Deserialize)]
struct ContactId {
    wa_id: WaId,
}

fn message_view(m: MessageItem) -> Message {
    let mut history: Vec<StatusChange> = m
        .status_at
        .into_iter()
        .map(|(status, at)| StatusChange { status, at: at.0 })
        .collect();
    // In the order a message moves through them (the times come from different clocks).
    history.sort_by_key(|c| {
        (
            crate::conversations::model::MessageStatus::parse(&c.status).map(|s| s.rank()),
            c.at,
        )
    });
    Message {
        id: m.wamid.as_str().to_owned(),
        direction: match m.direction {
            crate::conversations::model::Direction::Inbound => "inbound".into(),
            crate::conversations::model::Direction::Outbound => "outbound".into(),
        },
        kind: m.kind,
        text: m.text,
        media_id: m.media_id,
        mime_type: m.mime_type,
        timestamp: m.timestamp,
        status: m.status.map(|s| s.as_str().to_owned()),
        status_history: history,
        error: (m.error_code.is_some() || m.error_title.is_some()).then_some(MessageError {
            code: m.error_code,
            title: m.error_title,
        }),
        origin: m.origin,
        ai: m.ai.map(|ai| AiReply {
            provider: provider_name(ai.provider),
            model: ai.model,
            latency_ms: ai.latency_ms,
            first_token_ms: ai.first_token_ms,
            prompt_tokens: ai.prompt_tokens,
            completion_tokens: ai.completion_tokens,
            total_tokens: ai.total_tokens,
            failover_from: ai.failover_from.map(provider_name),
        }),
    }
}

fn provider_name(p: crate::ai::ProviderName) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The keys of the last item a query read (its `LastEvaluatedKey`): the table's, and an index's
/// when the query read one.
#[derive(Debug, Deserialize)]
struct LastKey {
    pk: String,
    sk: String,
    #[serde(default)]
    gsi1sk: Option<String>,
    #[serde(default)]
    gsi2sk: Option<String>,
}

/// The position of an item in an index (`index_sk` names the index's sort key), as a cursor.
pub(super) fn position(item: Item, index_sk: &str) -> StoreResult<PageKey> {
    let last: LastKey = from_item(item)?;
    let index = match index_sk {
        "gsi2sk" => last.gsi2sk,
        _ => last.gsi1sk,
    };
    let index_sk = index.ok_or_else(|| corrupt(format!("a last key without {index_sk}")))?;
    Ok(PageKey {
        pk: last.pk,
        sk: last.sk,
        index_sk,
    })
}

/// The position of an item in the table (a query without an index), as a cursor.
fn table_position(item: Item) -> StoreResult<PageKey> {
    let last: LastKey = from_item(item)?;
    Ok(PageKey {
        pk: last.pk,
        index_sk: last.sk.clone(),
        sk: last.sk,
    })
}

/// DynamoDB refused the request as malformed: with a client's cursor as the start key, the
/// cursor was forged.
pub(super) fn is_validation_error<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ValidationException")
}

pub(super) fn bad_cursor() -> DashboardError {
    DashboardError::invalid("cursor", "is not a cursor this API issued")
}

/// The index keys of GSI1 and GSI2.
pub(super) fn index_keys(index: &str) -> (&'static str, &'static str) {
    if index == "GSI2" {
        ("gsi2pk", "gsi2sk")
    } else {
        ("gsi1pk", "gsi1sk")
    }
}

/// A key condition on an index's sort key, written with `#sk` for it, and its values.
pub(super) type Range<'a> = (&'a str, Vec<(&'a str, AttributeValue)>);
/// A filter expression, its names and its values.
pub(super) type Filter<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(&'a str, AttributeValue)>,
);

impl DynamoStore {
    /// Reads one page of an index partition, following DynamoDB's pages until `limit` items
    /// passed the filter (or [`MAX_QUERIES_PER_PAGE`] were made).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn index_page(
        &self,
        index: &'static str,
        partition: &str,
        range: Range<'_>,
        filter: Option<Filter<'_>>,
        newest_first: bool,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<(Vec<Item>, Option<PageKey>), DashboardError> {
        let (pk_name, sk_name) = index_keys(index);
        let mut from_client = after.is_some();
        let mut items: Vec<Item> = vec![];
        let mut start = match after {
            Some(a) => {
                let mut start = key((a.pk, a.sk))?;
                start.insert(pk_name.to_owned(), to_value(partition)?);
                start.insert(sk_name.to_owned(), to_value(&a.index_sk)?);
                Some(start)
            }
            None => None,
        };
        for _ in 0..MAX_QUERIES_PER_PAGE {
            let remaining = limit as usize - items.len();
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(format!("#pk = :pk AND {}", range.0))
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":pk", to_value(partition)?)
                .scan_index_forward(!newest_first)
                .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            for (name, value) in &range.1 {
                request = request.expression_attribute_values(*name, value.clone());
            }
            if let Some((expression, names, values)) = &filter {
                request = request.filter_expression(*expression);
                for (name, attr) in names {
                    request = request.expression_attribute_names(*name, *attr);
                }
                for (name, value) in values {
                    request = request.expression_attribute_values(*name, value.clone());
                }
            }
            let output = match request.send().await {
                Ok(output) => output,
                Err(e) if from_client && is_validation_error(&e) => return Err(bad_cursor()),
                Err(e) => return Err(unavailable(e).into()),
            };
            from_client = false;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                None => return Ok((items, None)),
                Some(last) if items.len() >= limit as usize => {
                    return Ok((items, Some(position(last, sk_name)?)));
                }
                Some(last) => start = Some(last),
            }
        }
        let next = start.map(|s| position(s, sk_name)).transpose()?;
        Ok((items, next))
    }

    /// Reads one page of the items of a table partition whose sort key starts with `prefix`
    /// (the lists kept in one partition: a contact's notes, a workspace's quick replies). A
    /// client's cursor must be a position in this very list; it is refused otherwise.
    pub(super) async fn partition_page(
        &self,
        partition: &str,
        prefix: &str,
        newest_first: bool,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<(Vec<Item>, Option<PageKey>), DashboardError> {
        let after = after
            .map(|a| a.expect(partition, prefix, prefix))
            .transpose()?;
        if after.as_ref().is_some_and(|a| a.pk != partition) {
            return Err(bad_cursor());
        }
        let from_client = after.is_some();
        let start = after
            .map(|a| key((partition.to_owned(), a.sk)))
            .transpose()?;
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", to_value(partition)?)
            .expression_attribute_values(":prefix", to_value(prefix)?)
            .consistent_read(true)
            .scan_index_forward(!newest_first)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| {
                if from_client && is_validation_error(&e) {
                    bad_cursor()
                } else {
                    DashboardError::from(unavailable(e))
                }
            })?;
        let next = output.last_evaluated_key.map(table_position).transpose()?;
        Ok((output.items.unwrap_or_default(), next))
    }

    /// The contact items of `conversations`, by WhatsApp id, read in batches of 100 (what
    /// BatchGetItem takes), with the keys DynamoDB leaves unprocessed asked again.
    async fn contacts_of(
        &self,
        ws: &WorkspaceId,
        conversations: &[ConversationItem],
    ) -> StoreResult<HashMap<String, Item>> {
        let mut wa_ids: Vec<&WaId> = conversations.iter().map(|c| &c.wa_id).collect();
        wa_ids.sort_by_key(|w| w.as_str());
        wa_ids.dedup();
        let mut found = HashMap::new();
        for chunk in wa_ids.chunks(100) {
            let keys = chunk
                .iter()
                .map(|w| key(contact_key(ws, w)))
                .collect::<StoreResult<Vec<_>>>()?;
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(corrupt)?,
            );
            for _ in 0..5 {
                let Some(keys) = request.take() else { break };
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let ContactId { wa_id } = from_item(item.clone())?;
                    found.insert(wa_id.as_str().to_owned(), item);
                }
                request = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
            }
            if request.is_some() {
                return Err(StoreError::Unavailable(
                    "DynamoDB left contacts unprocessed after five reads".into(),
                ));
            }
        }
        Ok(found)
    }

    async fn contact_thread_state(
        &self,
        contact: &ContactRef,
        id: &ConversationId,
    ) -> StoreResult<(bool, bool)> {
        match self
            .get(contact_key(&contact.workspace_id, &contact.wa_id), true)
            .await?
        {
            Some(item) => thread_state(&item, contact, id),
            None => Ok((false, false)),
        }
    }
}

impl InboxStore for DynamoStore {
    async fn conversations(
        &self,
        ws: &WorkspaceId,
        query: &ConversationQuery,
    ) -> Result<Page<Conversation>, DashboardError> {
        let after = query
            .after
            .clone()
            .map(|a| {
                a.expect(
                    &workspace_contacts_prefix(ws),
                    CONVERSATION_PREFIX,
                    CONVERSATION_PREFIX,
                )
            })
            .transpose()?;
        let range = match query.updated_since {
            // Strictly after: from the next millisecond on.
            Some(since) => (
                "#sk BETWEEN :lo AND :hi",
                vec![
                    (
                        ":lo",
                        to_value(conversation_activity_from(millis(since) + 1))?,
                    ),
                    (":hi", to_value(CONVERSATION_ACTIVITY_END)?),
                ],
            ),
            None => (
                "begins_with(#sk, :conv)",
                vec![(":conv", to_value(CONVERSATION_PREFIX)?)],
            ),
        };
        let filter = query
            .status
            .map(|status| -> StoreResult<Filter<'_>> {
                let value = match status {
                    ConversationStatus::Active => "active",
                    ConversationStatus::Ended => "ended",
                };
                Ok((
                    "#status = :status",
                    vec![("#status", "status")],
                    vec![(":status", to_value(value)?)],
                ))
            })
            .transpose()?;
        let (items, next) = self
            .index_page(
                "GSI1",
                &workspace_partition(ws),
                range,
                filter,
                true,
                query.limit,
                after,
            )
            .await?;
        let items = items
            .into_iter()
            .map(from_item::<ConversationItem>)
            .collect::<StoreResult<Vec<_>>>()?;
        // `botPaused` lives on the contact's thread: one batch read for the page's contacts.
        let contacts = self.contacts_of(ws, &items).await?;
        let items = items
            .into_iter()
            .map(|c| {
                let paused = match contacts.get(c.wa_id.as_str()) {
                    Some(contact) => thread_state(contact, &contact_of(&c), &c.conversation_id)?.1,
                    None => false,
                };
                Ok(view(c, paused))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next })
    }

    async fn conversation(
        &self,
        ws: &WorkspaceId,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>> {
        let (gsi2pk, gsi2sk) = conversation_id_key(ws, id);
        let found = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI2")
            .key_condition_expression("gsi2pk = :pk AND gsi2sk = :sk")
            .expression_attribute_values(":pk", to_value(gsi2pk)?)
            .expression_attribute_values(":sk", to_value(gsi2sk)?)
            .limit(1)
            .send()
            .await
            .map_err(unavailable)?
            .items
            .unwrap_or_default()
            .into_iter()
            .next();
        let Some(found) = found else { return Ok(None) };
        let found: ConversationItem = from_item(found)?;
        // The index only says where it lives; the table has the latest of it.
        let Some(item) = self
            .get(conversation_key(ws, &found.wa_id, id), true)
            .await?
        else {
            return Ok(None);
        };
        let item: ConversationItem = from_item(item)?;
        if &item.workspace_id != ws {
            return Ok(None);
        }
        let contact = contact_of(&item);
        let (is_current, paused) = self.contact_thread_state(&contact, id).await?;
        Ok(Some(ConversationRecord {
            id: id.clone(),
            contact,
            is_current,
            view: view(item, paused),
        }))
    }

    async fn messages(
        &self,
        conversation: &ConversationRecord,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<Page<Message>, DashboardError> {
        let after = after
            .map(|a| a.expect(MESSAGE_PREFIX, MESSAGE_SK, ""))
            .transpose()?;
        let ws = &conversation.contact.workspace_id;
        let (items, next) = self
            .index_page(
                "GSI1",
                &conversation_messages_partition(&conversation.id),
                (
                    "#sk >= :zero",
                    vec![(":zero", to_value(MESSAGE_POSITION_START)?)],
                ),
                // Conversation ids are unique, but a message is only ever shown to its own
                // workspace.
                Some((
                    "workspace_id = :ws",
                    vec![],
                    vec![(":ws", to_value(ws.as_str())?)],
                )),
                false,
                limit,
                after,
            )
            .await?;
        let items = items
            .into_iter()
            .map(|item| Ok(message_view(from_item::<MessageItem>(item)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next })
    }

    async fn end_conversation(
        &self,
        conversation: &ConversationRecord,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let contact = &conversation.contact;
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conversation_key(
                &contact.workspace_id,
                &contact.wa_id,
                &conversation.id,
            ))?))
            .update_expression(format!(
                "SET #status = :ended, ended_at = :at, {}",
                touch_expression()
            ))
            .condition_expression("attribute_exists(pk) AND #status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":ended", to_value("ended")?)
            .expression_attribute_values(":active", to_value("active")?)
            .expression_attribute_values(":at", to_value(Stamp(at))?);
        for (name, value) in touch_values(&conversation.id, at)? {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => {}
            Err(e) if is_conditional_failure(&e) => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        }
        // The thread lets go of it, so the customer's next message starts a new conversation
        // (and a pause never carries over). Not if a newer one is current already.
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_key(
                &contact.workspace_id,
                &contact.wa_id,
            ))?))
            .update_expression("REMOVE #conv SET #paused = :no, updated_at = :at")
            .condition_expression("#conv = :id")
            .expression_attribute_names(
                "#conv",
                thread_attr(&contact.phone_number_id, "conversation_id"),
            )
            .expression_attribute_names(
                "#paused",
                thread_attr(&contact.phone_number_id, "bot_paused"),
            )
            .expression_attribute_values(":id", to_value(conversation.id.as_str())?)
            .expression_attribute_values(":no", to_value(false)?)
            .expression_attribute_values(":at", to_value(Stamp(at))?)
            .send()
            .await;
        match released {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(true),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn touch_conversation(
        &self,
        conversation: &ConversationRecord,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let contact = &conversation.contact;
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conversation_key(
                &contact.workspace_id,
                &contact.wa_id,
                &conversation.id,
            ))?))
            .update_expression(format!("SET {}", touch_expression()))
            .condition_expression("attribute_exists(pk)");
        for (name, value) in touch_values(&conversation.id, at)? {
            request = request.expression_attribute_values(name, value);
        }
        request.send().await.map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PhoneNumberId;

    #[test]
    fn a_pause_flag_of_another_shape_is_a_corrupt_item_not_an_unpaused_bot() {
        let who = ContactRef {
            workspace_id: WorkspaceId::parse("ws").unwrap(),
            phone_number_id: PhoneNumberId::parse("123456789").unwrap(),
            wa_id: WaId::parse("15551234567").unwrap(),
        };
        let id = ConversationId::new_at(OffsetDateTime::now_utc());
        let current = thread_attr(&who.phone_number_id, "conversation_id");
        let paused = thread_attr(&who.phone_number_id, "bot_paused");
        let mut item: Item = HashMap::from([
            (current, to_value(id.as_str()).unwrap()),
            (paused.clone(), to_value(true).unwrap()),
        ]);
        assert_eq!(thread_state(&item, &who, &id).unwrap(), (true, true));
        let other = ConversationId::new_at(OffsetDateTime::now_utc());
        assert_eq!(thread_state(&item, &who, &other).unwrap(), (false, false));

        item.insert(paused, to_value("yes").unwrap());
        assert!(
            matches!(thread_state(&item, &who, &id), Err(StoreError::Corrupt(_))),
            "{:?}",
            thread_state(&item, &who, &id)
        );
    }
}
