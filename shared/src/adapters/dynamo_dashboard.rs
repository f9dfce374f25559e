//! The DynamoDB adapter of the dashboard's ports: the same table and keys as `dynamo`, so what
//! the dashboard writes is what the processor reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::dynamo::ai_config_key;
use crate::crm::AiConfig;
use crate::dashboard::ai_settings::AiConfigStore;
use crate::ids::WorkspaceId;
use crate::store::{StoreError, StoreResult};

/// The dashboard's view of the app table.
#[derive(Clone)]
pub struct DynamoDashboard {
    client: Client,
    table: String,
}

impl DynamoDashboard {
    pub fn new(aws: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            table: table.into(),
        }
    }
}

fn key((pk, sk): (String, String)) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ])
}

fn unavailable(e: impl std::error::Error + 'static) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

impl AiConfigStore for DynamoDashboard {
    async fn read_ai_config(&self, ws: &WorkspaceId) -> StoreResult<AiConfig> {
        // Strongly consistent: a dashboard reads back what it has just saved.
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(ai_config_key(ws))))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        // The item's layout is the processor's (`TenantStore::ai_config`): the config as JSON.
        match item
            .as_ref()
            .and_then(|i| i.get("config"))
            .map(AttributeValue::as_s)
        {
            None => Ok(AiConfig::default()),
            Some(Ok(json)) => {
                serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            Some(Err(_)) => Err(StoreError::Corrupt("AI config is not a string".into())),
        }
    }

    async fn write_ai_config(&self, ws: &WorkspaceId, config: &AiConfig) -> StoreResult<()> {
        let json = serde_json::to_string(config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = key(ai_config_key(ws));
        item.insert("config".into(), AttributeValue::S(json));
        item.insert("updated_at".into(), AttributeValue::S(now));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
