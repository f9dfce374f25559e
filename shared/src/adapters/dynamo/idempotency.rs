//! Idempotency keys of the send API (`IDEMP#<workspace_id>#<key>` / `IDEMP`): claimed by a
//! conditional put before anything is sent, so two containers can never both own one.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::store::{StoreError, StoreResult};
use crate::dashboard::send::{Claim, IdempotencyKey, IdempotencyStore};
use crate::ids::WorkspaceId;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeyState {
    InFlight,
    Done,
}

/// A claimed key: the hash of the request that claimed it and, once done, its result (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyItem {
    state: KeyState,
    request_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    created_at: Stamp,
    ttl: i64,
}

impl IdempotencyStore for DynamoStore {
    async fn claim_idempotency_key(
        &self,
        ws: &WorkspaceId,
        key: &IdempotencyKey,
        request_hash: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Claim> {
        let k = idempotency_key(ws, key.as_str());
        let item = IdempotencyItem {
            state: KeyState::InFlight,
            request_hash: request_hash.to_owned(),
            result: None,
            created_at: Stamp(at),
            ttl: (at + IDEMPOTENCY_TTL).unix_timestamp(),
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(k.clone(), &item)?))
            // A key past its TTL that DynamoDB has not deleted yet counts as free.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", to_value(at.unix_timestamp())?)
            .send()
            .await;
        match result {
            Ok(_) => return Ok(Claim::New),
            Err(e) if is_conditional_failure(&e) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let Some(item) = self.get(k, true).await? else {
            return Err(StoreError::Conflict(
                "the idempotency key was released while it was read".into(),
            ));
        };
        let stored: IdempotencyItem = from_item(item)?;
        Ok(match (stored.state, stored.result) {
            (KeyState::Done, Some(result)) => Claim::Done {
                request_hash: stored.request_hash,
                result,
            },
            _ => Claim::InFlight {
                request_hash: stored.request_hash,
            },
        })
    }

    async fn finish_idempotency_key(
        &self,
        ws: &WorkspaceId,
        key: &IdempotencyKey,
        result: &str,
    ) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(super::key(idempotency_key(ws, key.as_str()))?))
            .update_expression("SET #state = :done, #result = :result")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":done", to_value("done")?)
            .expression_attribute_values(":result", to_value(result)?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release_idempotency_key(
        &self,
        ws: &WorkspaceId,
        key: &IdempotencyKey,
    ) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(super::key(idempotency_key(ws, key.as_str()))?))
            .condition_expression("#state = :in_flight")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_flight", to_value("in_flight")?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
