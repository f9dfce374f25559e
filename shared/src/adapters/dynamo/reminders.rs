//! Reminders: the item, its due index (GSI2, sharded) and its place in the workspace's list
//! (GSI1). See docs/data-model.md, "Reminders".

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::store::{StoreError, StoreResult};
use crate::ids::{PhoneNumberId, WaId, WorkspaceId};
use crate::reminders::model::{Reminder, ReminderId, ReminderStatus};
use crate::reminders::store::{
    Cancelled, Created, DuePage, KeyedRequest, Recipient, ReminderFilter, ReminderQueue,
    ReminderStore,
};

use super::inbox::position;
use super::*;
use crate::dashboard::DashboardError;
use crate::dashboard::page::{Page, PageKey};

/// The due index: pending and claimed reminders only (sent, failed, cancelled and flagged ones
/// leave it), so it holds exactly the work still to do.
const DUE_INDEX: &str = "GSI2";
const LIST_INDEX: &str = "GSI1";

/// A reminder as stored: the domain reminder, and its index keys.
#[derive(Debug, Serialize)]
struct ReminderItem<'a> {
    #[serde(flatten)]
    reminder: &'a Reminder,
    due_ms: i64,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
}

fn due_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(millis(at)).unwrap_or(i64::MAX)
}

fn reminder_item(reminder: &Reminder) -> StoreResult<Item> {
    let ms = millis(reminder.due_at);
    let indexed = matches!(
        reminder.status,
        ReminderStatus::Pending | ReminderStatus::Sending
    );
    let row = ReminderItem {
        reminder,
        due_ms: due_ms(reminder.due_at),
        gsi1pk: workspace_partition(&reminder.workspace_id),
        gsi1sk: reminder_list_sk(ms, &reminder.id),
        gsi2pk: indexed.then(|| reminder_due_pk(&reminder.id)),
        gsi2sk: indexed.then(|| reminder_due_sk(ms, &reminder.id)),
    };
    to_item(reminder_key(&reminder.workspace_id, &reminder.id), &row)
}

/// The idempotency record of a creation.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyItem {
    reminder_id: ReminderId,
    #[serde(default)]
    request_hash: String,
    ttl: i64,
}

/// What the run reads of a contact.
#[derive(Debug, Deserialize)]
struct ContactFlags {
    #[serde(default)]
    opted_out: bool,
}

fn conflict(reminder: &Reminder) -> StoreError {
    StoreError::Conflict(format!(
        "reminder {} is no longer held by this run",
        reminder.id
    ))
}

impl DynamoStore {
    /// A conditional update of a claimed reminder: applies only while `run_id` holds it.
    async fn update_claimed(
        &self,
        reminder: &Reminder,
        run_id: &str,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> StoreResult<bool> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(reminder_key(
                &reminder.workspace_id,
                &reminder.id,
            ))?))
            .update_expression(expression)
            .condition_expression("#status = :sending AND run_id = :run")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", to_value("sending")?)
            .expression_attribute_values(":run", to_value(run_id)?);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl ReminderStore for DynamoStore {
    async fn create_reminder(
        &self,
        reminder: &Reminder,
        idempotency: Option<KeyedRequest<'_>>,
    ) -> StoreResult<Created> {
        let idempotency_key = idempotency.as_ref().map(|i| i.key);
        let ws = &reminder.workspace_id;
        let mut items: Vec<TransactWriteItem> =
            vec![put_if_absent(&self.table, reminder_item(reminder)?)?];
        if let Some(KeyedRequest {
            key: k,
            request_hash,
        }) = &idempotency
        {
            let record = IdempotencyItem {
                reminder_id: reminder.id.clone(),
                request_hash: (*request_hash).to_owned(),
                ttl: (reminder.created_at + REMINDER_IDEMPOTENCY_TTL).unix_timestamp(),
            };
            items.push(put_if_absent(
                &self.table,
                to_item(reminder_idempotency_key(ws, k), &record)?,
            )?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let reasons = match result {
            Ok(_) => return Ok(Created::New(reminder.clone())),
            Err(e) => cancelled_conditions(&e).ok_or_else(|| unavailable(e))?,
        };
        if let (Some(k), Some(true)) = (idempotency_key, reasons.get(1)) {
            let record = self
                .get(reminder_idempotency_key(ws, k), true)
                .await?
                .ok_or_else(|| StoreError::Conflict("the idempotency record vanished".into()))?;
            let record: IdempotencyItem = from_item(record)?;
            let existing = self
                .reminder(ws, &record.reminder_id)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "idempotency record points at missing reminder {}",
                        record.reminder_id
                    ))
                })?;
            return Ok(Created::Existing {
                reminder: existing,
                request_hash: record.request_hash,
            });
        }
        Err(StoreError::Conflict(format!(
            "reminder {} exists already",
            reminder.id
        )))
    }

    async fn reminder(&self, ws: &WorkspaceId, id: &ReminderId) -> StoreResult<Option<Reminder>> {
        self.get(reminder_key(ws, id), true)
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list_reminders(
        &self,
        ws: &WorkspaceId,
        filter: &ReminderFilter,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<Page<Reminder>, DashboardError> {
        let partition = workspace_partition(ws);
        let after = after
            .map(|a| a.expect(&partition, REMINDER_PREFIX, REMINDER_PREFIX))
            .transpose()?;
        if after.as_ref().is_some_and(|a| a.pk != partition) {
            return Err(super::inbox::bad_cursor());
        }
        let from = filter.due_from.map_or(0, millis).max(0);
        let to = filter.due_to.map_or(i128::from(i64::MAX / 1000), millis) - 1;
        let range = (
            "#sk BETWEEN :from AND :to",
            vec![
                (":from", to_value(reminder_list_from(from))?),
                (":to", to_value(reminder_list_through(to))?),
            ],
        );
        let mut conditions = Vec::new();
        let mut names = Vec::new();
        let mut values = Vec::new();
        if let Some(status) = filter.status {
            conditions.push("#status = :status");
            names.push(("#status", "status"));
            values.push((":status", to_value(status.as_str())?));
        }
        if let Some(contact) = &filter.contact {
            conditions.push("contact = :contact");
            values.push((":contact", to_value(contact.as_str())?));
        }
        let expression = conditions.join(" AND ");
        let filter = (!conditions.is_empty()).then_some((expression.as_str(), names, values));
        let (items, next) = self
            .index_page(LIST_INDEX, &partition, range, filter, false, limit, after)
            .await?;
        Ok(Page {
            items: items
                .into_iter()
                .map(from_item)
                .collect::<StoreResult<_>>()?,
            next,
        })
    }

    async fn cancel_reminder(
        &self,
        ws: &WorkspaceId,
        id: &ReminderId,
        at: OffsetDateTime,
    ) -> StoreResult<Cancelled> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(reminder_key(ws, id))?))
            .update_expression("SET #status = :cancelled, cancelled_at = :at REMOVE gsi2pk, gsi2sk")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":cancelled", to_value("cancelled")?)
            .expression_attribute_values(":pending", to_value("pending")?)
            .expression_attribute_values(":at", to_value(Stamp(at))?)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Cancelled::Cancelled(Box::new(from_item(
                out.attributes.unwrap_or_default(),
            )?))),
            Err(e) if is_conditional_failure(&e) => Ok(match self.reminder(ws, id).await? {
                None => Cancelled::NotFound,
                Some(r) => Cancelled::NotPending(r.status),
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn owns_number(&self, ws: &WorkspaceId, pn: &PhoneNumberId) -> StoreResult<bool> {
        #[derive(Deserialize)]
        struct Owner {
            workspace_id: WorkspaceId,
        }
        Ok(match self.get(integration_key(pn), false).await? {
            Some(item) => from_item::<Owner>(item)?.workspace_id == *ws,
            None => false,
        })
    }
}

impl ReminderQueue for DynamoStore {
    fn shards(&self) -> u16 {
        REMINDER_DUE_SHARDS
    }

    async fn due(
        &self,
        shard: u16,
        now: OffsetDateTime,
        start: Option<&str>,
        limit: u32,
    ) -> StoreResult<DuePage> {
        let shard_pk = reminder_due_shard_pk(shard);
        let start = match start {
            Some(raw) => {
                let at = PageKey::decode(raw)
                    .map_err(|_| StoreError::Corrupt("bad due cursor".into()))?;
                Some(HashMap::from([
                    ("gsi2pk".to_owned(), to_value(&shard_pk)?),
                    ("gsi2sk".to_owned(), to_value(at.index_sk)?),
                    ("pk".to_owned(), to_value(at.pk)?),
                    ("sk".to_owned(), to_value(at.sk)?),
                ]))
            }
            None => None,
        };
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :bound")
            .expression_attribute_values(":pk", to_value(shard_pk)?)
            .expression_attribute_values(":bound", to_value(reminder_due_bound(millis(now)))?)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let items = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<StoreResult<Vec<Reminder>>>()?;
        Ok(DuePage {
            items,
            next: page
                .last_evaluated_key
                .map(|last| position(last, "gsi2sk"))
                .transpose()?
                .map(|at| at.encode()),
        })
    }

    async fn claim(
        &self,
        reminder: &Reminder,
        run_id: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<Reminder>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(reminder_key(&reminder.workspace_id, &reminder.id))?))
            .update_expression(
                "SET #status = :sending, run_id = :run, lease_until = :lease, lease_ms = :lease_ms, \
                 attempts = if_not_exists(attempts, :zero) + :one, updated_at = :now",
            )
            .condition_expression("#status = :pending AND due_ms <= :now_ms")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", to_value("sending")?)
            .expression_attribute_values(":pending", to_value("pending")?)
            .expression_attribute_values(":run", to_value(run_id)?)
            .expression_attribute_values(":lease", to_value(Stamp(lease_until))?)
            .expression_attribute_values(":lease_ms", to_value(due_ms(lease_until))?)
            .expression_attribute_values(":zero", to_value(0)?)
            .expression_attribute_values(":one", to_value(1)?)
            .expression_attribute_values(":now", to_value(Stamp(now))?)
            .expression_attribute_values(":now_ms", to_value(due_ms(now))?)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(from_item(out.attributes.unwrap_or_default())?)),
            Err(e) if is_conditional_failure(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn record_sent(
        &self,
        reminder: &Reminder,
        run_id: &str,
        result_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let updated = self
            .update_claimed(
                reminder,
                run_id,
                "SET #status = :sent, sent_at = :at, result_id = :result, updated_at = :at \
                 REMOVE gsi2pk, gsi2sk, lease_until, lease_ms",
                vec![
                    (":sent", to_value("sent")?),
                    (":at", to_value(Stamp(at))?),
                    (":result", to_value(result_id)?),
                ],
            )
            .await?;
        updated.then_some(()).ok_or_else(|| conflict(reminder))
    }

    async fn retry_later(
        &self,
        reminder: &Reminder,
        run_id: &str,
        due_at: OffsetDateTime,
        error: &str,
    ) -> StoreResult<()> {
        let ms = millis(due_at);
        let updated = self
            .update_claimed(
                reminder,
                run_id,
                "SET #status = :pending, due_at = :due, due_ms = :due_ms, gsi2sk = :due_sk, \
                 gsi1sk = :list_sk, last_error = :error \
                 REMOVE run_id, lease_until, lease_ms",
                vec![
                    (":pending", to_value("pending")?),
                    (":due", to_value(Stamp(due_at))?),
                    (":due_ms", to_value(due_ms(due_at))?),
                    (":due_sk", to_value(reminder_due_sk(ms, &reminder.id))?),
                    (":list_sk", to_value(reminder_list_sk(ms, &reminder.id))?),
                    (":error", to_value(error)?),
                ],
            )
            .await?;
        updated.then_some(()).ok_or_else(|| conflict(reminder))
    }

    async fn fail(
        &self,
        reminder: &Reminder,
        run_id: &str,
        error: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let updated = self
            .update_claimed(
                reminder,
                run_id,
                "SET #status = :failed, last_error = :error, updated_at = :at \
                 REMOVE gsi2pk, gsi2sk, lease_until, lease_ms",
                vec![
                    (":failed", to_value("failed")?),
                    (":error", to_value(error)?),
                    (":at", to_value(Stamp(at))?),
                ],
            )
            .await?;
        updated.then_some(()).ok_or_else(|| conflict(reminder))
    }

    async fn flag_for_review(
        &self,
        reminder: &Reminder,
        run_id: &str,
        expired_before: Option<OffsetDateTime>,
        reason: &str,
    ) -> StoreResult<bool> {
        let expression = "SET review = :reason REMOVE gsi2pk, gsi2sk";
        let Some(before) = expired_before else {
            return self
                .update_claimed(
                    reminder,
                    run_id,
                    expression,
                    vec![(":reason", to_value(reason)?)],
                )
                .await;
        };
        // A dead run's claim: still the same claim (its run id), and its lease over.
        let Some(owner) = reminder.run_id.as_deref() else {
            return Ok(false);
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(reminder_key(
                &reminder.workspace_id,
                &reminder.id,
            ))?))
            .update_expression(expression)
            .condition_expression("#status = :sending AND run_id = :owner AND lease_ms < :before")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", to_value("sending")?)
            .expression_attribute_values(":owner", to_value(owner)?)
            .expression_attribute_values(":before", to_value(due_ms(before))?)
            .expression_attribute_values(":reason", to_value(reason)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn recipient(
        &self,
        ws: &WorkspaceId,
        wa_id: &WaId,
        pn: &PhoneNumberId,
    ) -> StoreResult<Option<Recipient>> {
        let Some(item) = self.get(contact_key(ws, wa_id), false).await? else {
            return Ok(None);
        };
        let last: Option<Stamp> =
            attribute::<Option<Stamp>>(&item, &thread_attr(pn, "last_inbound_at"))?.flatten();
        let flags: ContactFlags = from_item(item)?;
        Ok(Some(Recipient {
            opted_out: flags.opted_out,
            last_inbound_at: last.map(|s| s.0),
        }))
    }
}
