//! The DynamoDB adapter of the store ports: one table, keys as in docs/data-model.md.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::crm::{
    AiConfig, ContactRef, ContactState, ConversationChoice, Direction, FailedEvent, HistoryItem,
    Integration, IntegrationStatus, IntentOutcome, MessageStatus, NewMessage, Provider, ReplyDraft,
    ReplyIntent, ReplyPart, StatusOutcome, StatusUpdate, Stored, UnsettledReply,
};
use crate::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};
use crate::store::{ContactStore, MessageStore, StoreError, StoreResult, TenantStore};

/// Reply intents are kept a month: long enough for any redelivery or status to find them.
const INTENT_TTL: time::Duration = time::Duration::days(30);
/// Statuses for messages not stored yet are kept a week, then DynamoDB's TTL drops them.
const EARLY_STATUS_TTL: time::Duration = time::Duration::days(7);
/// Events that could never be processed are kept a fortnight for inspection and replay.
const FAILED_EVENT_TTL: time::Duration = time::Duration::days(14);

type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(aws: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

// ----- keys -------------------------------------------------------------------------------------

pub fn integration_key(pn: &PhoneNumberId) -> (String, String) {
    (format!("PN#{}", pn.as_str()), "INTEGRATION".into())
}
pub fn workspace_key(ws: &WorkspaceId) -> (String, String) {
    (format!("WS#{}", ws.as_str()), "WORKSPACE".into())
}
pub fn ai_config_key(ws: &WorkspaceId) -> (String, String) {
    (format!("WS#{}", ws.as_str()), "AI_CONFIG".into())
}
pub fn contact_key(ws: &WorkspaceId, wa_id: &WaId) -> (String, String) {
    (
        format!("CT#{}#{}", ws.as_str(), wa_id.as_str()),
        "CONTACT".into(),
    )
}
pub fn conversation_key(ws: &WorkspaceId, wa_id: &WaId, id: &ConversationId) -> (String, String) {
    (
        format!("CT#{}#{}", ws.as_str(), wa_id.as_str()),
        format!("CONV#{}", id.as_str()),
    )
}
pub fn message_key(wamid: &Wamid) -> (String, String) {
    (format!("MSG#{}", wamid.as_str()), "MESSAGE".into())
}
pub fn intent_key(intent: &ReplyIntent) -> (String, String) {
    (format!("INTENT#{}", intent.key()), "INTENT".into())
}
pub fn failed_key(id: &str) -> (String, String) {
    (format!("FAILED#{id}"), "FAILED".into())
}
fn early_key(wamid: &Wamid, status: MessageStatus) -> (String, String) {
    (
        format!("EARLY#{}", wamid.as_str()),
        format!("STATUS#{}", status.as_str()),
    )
}

fn key(k: (String, String)) -> Item {
    HashMap::from([("pk".into(), s(k.0)), ("sk".into(), s(k.1))])
}

// ----- attribute helpers ---------------------------------------------------------------------------

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}
fn ts(t: OffsetDateTime) -> AttributeValue {
    s(t.format(&Rfc3339).unwrap_or_default())
}
fn millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}
fn ttl_at(t: OffsetDateTime) -> AttributeValue {
    n(t.unix_timestamp())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
fn get_b(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}
fn get_ts(item: &Item, name: &str) -> Option<OffsetDateTime> {
    get_s(item, name).and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
}
fn required<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    get_s(item, name).ok_or_else(|| StoreError::Corrupt(format!("item has no {name}")))
}
fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// Which items of a cancelled transaction failed their condition.
fn cancelled_conditions<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<bool>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(c) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect(),
        ),
        _ => None,
    }
}

fn message_item(m: &NewMessage) -> Item {
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

fn put_if_absent(table: &str, item: Item) -> StoreResult<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(corrupt)?,
        )
        .build())
}

fn update(
    table: &str,
    k: (String, String),
    expression: &str,
    names: &[(&str, &str)],
    values: Vec<(&str, AttributeValue)>,
    condition: Option<&str>,
) -> StoreResult<TransactWriteItem> {
    let mut builder = Update::builder()
        .table_name(table)
        .set_key(Some(key(k)))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_owned));
    for (name, value) in names {
        builder = builder.expression_attribute_names(*name, *value);
    }
    for (name, value) in values {
        builder = builder.expression_attribute_values(name, value);
    }
    Ok(TransactWriteItem::builder()
        .update(builder.build().map_err(corrupt)?)
        .build())
}

impl TenantStore for DynamoStore {
    async fn integration(&self, pn: &PhoneNumberId) -> StoreResult<Option<Integration>> {
        let Some(item) = self.get(integration_key(pn), false).await? else {
            return Ok(None);
        };
        let provider = match required(&item, "provider")? {
            "kapso" => Provider::Kapso,
            "meta" => Provider::Meta,
            other => return Err(corrupt(format!("unknown provider {other}"))),
        };
        let status = match get_s(&item, "status").unwrap_or("active") {
            "error" => IntegrationStatus::Error,
            "disconnected" => IntegrationStatus::Disconnected,
            _ => IntegrationStatus::Active,
        };
        Ok(Some(Integration {
            phone_number_id: pn.clone(),
            workspace_id: WorkspaceId::parse(required(&item, "workspace_id")?).map_err(corrupt)?,
            provider,
            status,
            error: get_s(&item, "error").map(str::to_owned),
        }))
    }

    async fn mark_integration_error(&self, pn: &PhoneNumberId, error: &str) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(integration_key(pn))))
            .update_expression("SET #status = :error, #err = :message, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#err", "error")
            .expression_attribute_values(":error", s("error"))
            .expression_attribute_values(":message", s(error))
            .expression_attribute_values(":now", ts(OffsetDateTime::now_utc()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ai_config(&self, ws: &WorkspaceId) -> StoreResult<AiConfig> {
        let item = self.get(ai_config_key(ws), false).await?;
        match item.as_ref().and_then(|i| get_s(i, "config")) {
            Some(json) => serde_json::from_str(json).map_err(corrupt),
            None => Ok(AiConfig::default()),
        }
    }
}

/// The attribute of a contact item holding one field of its thread with `pn` (see
/// [`ContactState`]): `pn#<phone_number_id>#<field>`.
pub fn thread_attr(pn: &PhoneNumberId, field: &str) -> String {
    format!("pn#{}#{field}", pn.as_str())
}

/// Expression names for a thread's attributes: `#conv`, `#started`, `#last`, `#answered`,
/// `#paused`.
fn thread_names(pn: &PhoneNumberId) -> [(&'static str, String); 5] {
    [
        ("#conv", thread_attr(pn, "conversation_id")),
        ("#started", thread_attr(pn, "started_at")),
        ("#last", thread_attr(pn, "last_inbound_at")),
        ("#answered", thread_attr(pn, "answered_through")),
        ("#paused", thread_attr(pn, "bot_paused")),
    ]
}

impl ContactStore for DynamoStore {
    async fn upsert_contact(
        &self,
        ws: &WorkspaceId,
        pn: &PhoneNumberId,
        wa_id: &WaId,
        profile_name: Option<&str>,
        at: OffsetDateTime,
    ) -> StoreResult<ContactState> {
        let mut expression = String::from(
            "SET wa_id = :wa, workspace_id = :ws, updated_at = :now, \
             created_at = if_not_exists(created_at, :now), opted_out = if_not_exists(opted_out, :no), \
             tags = if_not_exists(tags, :tags), gsi1pk = :gpk, gsi1sk = :gsk",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_key(ws, wa_id))))
            .expression_attribute_values(":wa", s(wa_id.as_str()))
            .expression_attribute_values(":ws", s(ws.as_str()))
            .expression_attribute_values(":now", ts(at))
            .expression_attribute_values(":no", b(false))
            .expression_attribute_values(":tags", AttributeValue::L(vec![]))
            .expression_attribute_values(":gpk", s(format!("WS#{}", ws.as_str())))
            .expression_attribute_values(
                ":gsk",
                s(format!("CONTACT#{}#{}", millis(at), wa_id.as_str())),
            )
            .return_values(ReturnValue::AllNew);
        // A customer known only by a business-scoped user id has no phone number to store.
        if let Some(phone) = wa_id.phone().map(|p| format!("+{p}")) {
            expression.push_str(", phone = :phone");
            request = request.expression_attribute_values(":phone", s(phone));
        }
        if let Some(name) = profile_name.filter(|n| !n.trim().is_empty()) {
            expression.push_str(", profile_name = :name");
            request = request.expression_attribute_values(":name", s(name));
        }
        let item = request
            .update_expression(expression)
            .send()
            .await
            .map_err(unavailable)?
            .attributes
            .unwrap_or_default();
        let thread = |field: &str| thread_attr(pn, field);
        Ok(ContactState {
            workspace_id: ws.clone(),
            phone_number_id: pn.clone(),
            wa_id: wa_id.clone(),
            profile_name: get_s(&item, "profile_name").map(str::to_owned),
            opted_out: get_b(&item, "opted_out"),
            conversation_id: get_s(&item, &thread("conversation_id"))
                .map(ConversationId::parse)
                .transpose()
                .map_err(corrupt)?,
            started_at: get_ts(&item, &thread("started_at")),
            last_inbound_at: get_ts(&item, &thread("last_inbound_at")),
            answered_through: get_ts(&item, &thread("answered_through")),
            bot_paused: get_b(&item, &thread("bot_paused")),
        })
    }

    async fn set_opt_out(
        &self,
        ws: &WorkspaceId,
        wa_id: &WaId,
        opted_out: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_key(ws, wa_id))))
            .update_expression("SET opted_out = :v, opted_out_changed_at = :now, updated_at = :now")
            .expression_attribute_values(":v", b(opted_out))
            .expression_attribute_values(":now", ts(at))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_bot_paused(
        &self,
        contact: &ContactRef,
        conversation_id: &ConversationId,
        paused: bool,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_key(
                &contact.workspace_id,
                &contact.wa_id,
            ))))
            .update_expression("SET #paused = :p, updated_at = :now")
            .condition_expression("#conv = :conv")
            .expression_attribute_names(
                "#paused",
                thread_attr(&contact.phone_number_id, "bot_paused"),
            )
            .expression_attribute_names(
                "#conv",
                thread_attr(&contact.phone_number_id, "conversation_id"),
            )
            .expression_attribute_values(":p", b(paused))
            .expression_attribute_values(":conv", s(conversation_id.as_str()))
            .expression_attribute_values(":now", ts(OffsetDateTime::now_utc()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl DynamoStore {
    /// Applies statuses that arrived before their message. Safe to repeat: statuses are
    /// monotonic, so a retry after a failure half-way applies the rest.
    async fn apply_early_statuses(&self, wamid: &Wamid) -> StoreResult<()> {
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

    /// The writes that put `message` in its conversation: the message itself (once), the
    /// thread on the contact (guarded against a racing writer), and the conversation item.
    fn conversation_writes(
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
        let mut items = vec![put_if_absent(&self.table, message_item(message))?];

        let mut sets = vec!["#conv = :conv"];
        let mut values = vec![(":conv", s(conversation.id.as_str()))];
        if let Some(last) = conversation.last_inbound_at {
            sets.push("#last = :last");
            values.push((":last", ts(last)));
        }
        if conversation.is_new {
            sets.push("#started = :started");
            values.push((":started", ts(at)));
        }
        if conversation.is_new || hand_over {
            sets.push("#paused = :paused");
            values.push((":paused", b(hand_over)));
        }
        let condition = match &conversation.previous {
            Some(previous) => {
                values.push((":previous", s(previous.as_str())));
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
        let gsi1sk = s(format!(
            "CONV#{:015}#{}",
            millis(conversation.last_inbound_at.unwrap_or(at).max(at)),
            conversation.id.as_str()
        ));
        if conversation.is_new {
            let mut item = key(conversation_key);
            item.extend([
                ("conversation_id".to_owned(), s(conversation.id.as_str())),
                ("workspace_id".to_owned(), s(ws.as_str())),
                ("phone_number_id".to_owned(), s(pn.as_str())),
                ("wa_id".to_owned(), s(wa_id.as_str())),
                ("status".to_owned(), s("active")),
                ("started_at".to_owned(), ts(at)),
                ("last_message_at".to_owned(), ts(at)),
                ("gsi1pk".to_owned(), s(format!("WS#{}", ws.as_str()))),
                ("gsi1sk".to_owned(), gsi1sk),
            ]);
            if let Some(last) = conversation.last_inbound_at {
                item.insert("last_inbound_at".to_owned(), ts(last));
            }
            items.push(put_if_absent(&self.table, item)?);
            if let Some(previous) = &conversation.previous {
                items.push(update(
                    &self.table,
                    self::conversation_key(ws, wa_id, previous),
                    "SET #status = :ended, ended_at = :ts",
                    &[("#status", "status")],
                    vec![(":ended", s("ended")), (":ts", ts(at))],
                    Some("attribute_exists(pk)"),
                )?);
            }
        } else {
            let (expression, mut values) = match conversation.last_inbound_at {
                Some(last) => (
                    "SET last_inbound_at = :last, last_message_at = :ts, gsi1sk = :gsk",
                    vec![(":last", ts(last))],
                ),
                None => ("SET last_message_at = :ts, gsi1sk = :gsk", vec![]),
            };
            values.extend([(":ts", ts(at)), (":gsk", gsi1sk)]);
            items.push(update(
                &self.table,
                conversation_key,
                expression,
                &[],
                values,
                None,
            )?);
        }
        Ok(items)
    }

    /// Runs the writes of [`Self::conversation_writes`]: `Ok(true)` when the message is new,
    /// `Ok(false)` when it was already stored.
    async fn store_in_conversation(
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

    async fn begin_reply(
        &self,
        intent: &ReplyIntent,
        draft: &ReplyDraft,
        covers: &[Wamid],
    ) -> StoreResult<IntentOutcome> {
        let key_value = intent.key();
        let mut item = key(intent_key(intent));
        item.extend([
            ("state".to_owned(), s("sending")),
            (
                "draft".to_owned(),
                s(serde_json::to_string(draft).map_err(corrupt)?),
            ),
            (
                "covers".to_owned(),
                AttributeValue::L(covers.iter().map(|w| s(w.as_str())).collect()),
            ),
            ("parts_sent".to_owned(), n(0)),
            ("created_at".to_owned(), ts(draft.created_at)),
            ("ttl".to_owned(), ttl_at(draft.created_at + INTENT_TTL)),
        ]);
        let mut items = vec![put_if_absent(&self.table, item)?];
        for wamid in covers {
            items.push(update(
                &self.table,
                message_key(wamid),
                "SET reply_intent = :intent",
                &[],
                vec![(":intent", s(&key_value))],
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
            let state = self
                .get(intent_key(intent), true)
                .await?
                .and_then(|i| get_s(&i, "state").map(str::to_owned));
            return Ok(match state.as_deref() {
                Some("sent" | "failed") => IntentOutcome::AlreadySent,
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
                        .set_key(Some(key(intent_key(intent))))
                        .condition_expression("#state = :sending")
                        .expression_attribute_names("#state", "state")
                        .expression_attribute_values(":sending", s("sending"))
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
                vec![(":intent", s(&key_value))],
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
            .set_key(Some(key(intent_key(intent))))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":reason", s(reason));
        let mut expression = String::from("SET #state = :failed, error_title = :reason");
        if let Some(code) = code {
            expression.push_str(", error_code = :code");
            request = request.expression_attribute_values(":code", n(code));
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
            .set_key(Some(key(intent_key(intent))))
            .update_expression("SET #state = :flag, error_title = :reason")
            .condition_expression("#state = :sending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":flag", s(state.as_str()))
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":reason", s(reason))
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
        answered_through: OffsetDateTime,
    ) -> StoreResult<()> {
        // `answered_through` only moves forward: the contact update carries that condition, and
        // if it alone cancels the transaction (a later reply already moved it), the reply is
        // recorded without moving it.
        let mut move_answered = part.is_last();
        loop {
            let items =
                self.reply_writes(intent, message, part, answered_through, move_answered)?;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let reasons = match result {
                Ok(_) => return Ok(()),
                Err(e) => cancelled_conditions(&e).ok_or_else(|| unavailable(e))?,
            };
            let only_answered = reasons.get(2) == Some(&true)
                && reasons.iter().filter(|failed| **failed).count() == 1;
            if move_answered && only_answered {
                move_answered = false;
                continue;
            }
            return Err(StoreError::Conflict(format!(
                "the reply intent {} is not being sent any more",
                intent.key()
            )));
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
        if !matches!(get_s(&item, "state"), Some("sending" | "unknown")) {
            return Ok(false);
        }
        let draft: ReplyDraft = serde_json::from_str(required(&item, "draft")?).map_err(corrupt)?;
        // The callback data is only ours to trust when the status is about the same number and
        // the same customer as the reply it names.
        if draft.phone_number_id != update.phone_number_id
            || update.recipient.as_ref() != Some(&draft.wa_id)
        {
            return Ok(false);
        }
        let message = draft.message(update.wamid.clone(), &draft.text);
        self.record_reply(intent, &message, ReplyPart::WHOLE, draft.created_at)
            .await?;
        self.apply_status(update).await?;
        Ok(true)
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
    /// The writes of one recorded reply part, in this order: intent, message, contact thread,
    /// conversation (`record_reply` reads the cancellation reasons by position).
    fn reply_writes(
        &self,
        intent: &ReplyIntent,
        message: &NewMessage,
        part: ReplyPart,
        answered_through: OffsetDateTime,
        move_answered: bool,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let state = if part.is_last() { "sent" } else { "sending" };
        let pn = &message.phone_number_id;
        let mut contact_values = vec![(":now", ts(message.timestamp))];
        let (contact_expression, contact_condition, contact_names) = if move_answered {
            contact_values.push((":t", ts(answered_through)));
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
                    (":state", s(state)),
                    (":part", n(part.index)),
                    (":wamid", s(message.wamid.as_str())),
                    (
                        ":wamids",
                        AttributeValue::L(vec![s(message.wamid.as_str())]),
                    ),
                    (":empty", AttributeValue::L(vec![])),
                    (":sending", s("sending")),
                    (":unknown", s("unknown")),
                ],
                Some("#state IN (:sending, :unknown)"),
            )?,
            put_if_absent(&self.table, message_item(message))?,
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
                "SET last_message_at = :now",
                &[],
                vec![(":now", ts(message.timestamp))],
                Some("attribute_exists(pk)"),
            )?,
        ])
    }
}

/// Seeding for the local stack and tests: a workspace, its integration and its AI settings.
impl DynamoStore {
    pub async fn put_workspace(
        &self,
        ws: &WorkspaceId,
        name: &str,
        integration: &Integration,
        ai: &AiConfig,
    ) -> StoreResult<()> {
        let now = ts(OffsetDateTime::now_utc());
        let mut workspace = key(workspace_key(ws));
        workspace.extend([
            ("name".to_owned(), s(name)),
            ("created_at".to_owned(), now.clone()),
        ]);
        let mut config = key(ai_config_key(ws));
        config.insert(
            "config".into(),
            s(serde_json::to_string(ai).map_err(corrupt)?),
        );
        self.put_integration(integration).await?;
        for item in [workspace, config] {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Connects a number to its workspace (seeding: the onboarding issue adds the real flow).
    pub async fn put_integration(&self, integration: &Integration) -> StoreResult<()> {
        let ws = &integration.workspace_id;
        let mut pn = key(integration_key(&integration.phone_number_id));
        pn.extend([
            ("workspace_id".to_owned(), s(ws.as_str())),
            (
                "provider".to_owned(),
                s(match integration.provider {
                    Provider::Kapso => "kapso",
                    Provider::Meta => "meta",
                }),
            ),
            ("status".to_owned(), s("active")),
            ("gsi1pk".to_owned(), s(format!("WS#{}", ws.as_str()))),
            (
                "gsi1sk".to_owned(),
                s(format!(
                    "INTEGRATION#{}",
                    integration.phone_number_id.as_str()
                )),
            ),
        ]);
        self.put(pn).await?;
        Ok(())
    }

    /// Writes one item unconditionally.
    async fn put(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Reads one raw item, for the demo's and the tests' eyes.
    pub async fn raw_item(&self, k: (String, String)) -> StoreResult<Option<Item>> {
        self.get(k, true).await
    }

    async fn get(&self, k: (String, String), consistent: bool) -> StoreResult<Option<Item>> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(k)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(unavailable)?
            .item)
    }

    /// Deletes one item (tests use it to simulate lost state).
    pub async fn delete_item(&self, k: (String, String)) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(k)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
