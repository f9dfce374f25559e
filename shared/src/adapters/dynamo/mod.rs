//! The DynamoDB adapter of the store ports: one table, keys as in docs/data-model.md (see
//! `keys`), one file per entity. This file holds the client and the helpers every entity uses.

mod contact_directory;
mod contacts;
mod conversations;
mod idempotency;
mod inbox;
pub mod keys;
mod messages;
mod notes;
mod onboarding;
mod quick_replies;
mod reminders;
mod replies;
mod sending;
mod workspaces;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::store::{StoreError, StoreResult};

pub use keys::*;

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

/// A table key as DynamoDB takes it (`Key`, `ExclusiveStartKey`).
#[derive(Serialize)]
struct TableKey {
    pk: String,
    sk: String,
}

fn key((pk, sk): (String, String)) -> StoreResult<Item> {
    serde_dynamo::to_item(TableKey { pk, sk }).map_err(corrupt)
}

// ----- attribute helpers ---------------------------------------------------------------------------

/// A typed item with its key: rows are written and read with serde_dynamo, never attribute by
/// attribute.
fn to_item<T: Serialize>(k: (String, String), row: &T) -> StoreResult<Item> {
    let mut item: Item = serde_dynamo::to_item(row).map_err(corrupt)?;
    item.extend(key(k)?);
    Ok(item)
}

/// An expression attribute value, written by serde_dynamo exactly as a row's field is.
fn to_value<T: Serialize>(v: T) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(v).map_err(corrupt)
}

/// Reads a stored item into its typed row; an item of another shape is corrupt.
fn from_item<T: DeserializeOwned>(item: Item) -> StoreResult<T> {
    serde_dynamo::from_item(item).map_err(corrupt)
}

/// Reads one attribute of an item, for items whose attribute names are not fixed (a contact's
/// per-number threads).
fn attribute<T: DeserializeOwned>(item: &Item, name: &str) -> StoreResult<Option<T>> {
    item.get(name)
        .map(|value| serde_dynamo::from_attribute_value(value.clone()).map_err(corrupt))
        .transpose()
}

/// A point in time as every item stores it: an RFC 3339 string, which sorts by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

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
        .set_key(Some(key(k)?))
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

/// Single-item reads and writes.
impl DynamoStore {
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
            .set_key(Some(key(k)?))
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
            .set_key(Some(key(k)?))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
