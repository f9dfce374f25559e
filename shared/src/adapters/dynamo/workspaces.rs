//! Workspaces, their integrations (numbers) and AI settings.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::model::{AiConfig, Integration, IntegrationStatus, Provider};
use crate::conversations::store::{StoreResult, TenantStore};
use crate::dashboard::ai_settings::AiConfigStore;
use crate::ids::{PhoneNumberId, WorkspaceId};
use crate::onboarding::sealed::SealedToken;

use super::*;

/// A number connected to a workspace (`PN#<phone_number_id>` / `INTEGRATION`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IntegrationItem {
    pub workspace_id: WorkspaceId,
    pub provider: Provider,
    #[serde(default = "active")]
    pub status: IntegrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A manual integration's Meta access token, sealed (`v1:<base64>`); never plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<SealedToken>,
    /// Index keys: written; the sort key names the number in a workspace's list.
    #[serde(default)]
    pub gsi1pk: String,
    #[serde(default)]
    pub gsi1sk: String,
}

fn active() -> IntegrationStatus {
    IntegrationStatus::Active
}

/// A workspace (`WS#<workspace_id>` / `WORKSPACE`).
#[derive(Debug, Serialize)]
struct WorkspaceItem<'a> {
    name: &'a str,
    created_at: Stamp,
}

impl TenantStore for DynamoStore {
    async fn integration(&self, pn: &PhoneNumberId) -> StoreResult<Option<Integration>> {
        let Some(item) = self.get(integration_key(pn), false).await? else {
            return Ok(None);
        };
        let item: IntegrationItem = from_item(item)?;
        Ok(Some(Integration {
            phone_number_id: pn.clone(),
            workspace_id: item.workspace_id,
            provider: item.provider,
            status: item.status,
            error: item.error,
            access_token: item.access_token,
        }))
    }

    async fn mark_integration_error(&self, pn: &PhoneNumberId, error: &str) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(integration_key(pn))?))
            .update_expression("SET #status = :error, #err = :message, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#err", "error")
            .expression_attribute_values(":error", to_value("error")?)
            .expression_attribute_values(":message", to_value(error)?)
            .expression_attribute_values(":now", to_value(Stamp(OffsetDateTime::now_utc()))?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ai_config(&self, ws: &WorkspaceId) -> StoreResult<AiConfig> {
        // Settings the workspace never set take their defaults.
        match self.get(ai_config_key(ws), false).await? {
            Some(item) => from_item(item),
            None => Ok(AiConfig::default()),
        }
    }
}

/// A workspace's AI settings (`WS#<workspace_id>` / `AI_CONFIG`), one attribute per setting.
#[derive(Debug, Serialize)]
struct AiConfigItem<'a> {
    #[serde(flatten)]
    config: &'a AiConfig,
    updated_at: Stamp,
}

/// The dashboard reads and writes the very item the processor reads.
impl AiConfigStore for DynamoStore {
    async fn read_ai_config(&self, ws: &WorkspaceId) -> StoreResult<AiConfig> {
        // Strongly consistent: a dashboard reads back what it has just saved.
        match self.get(ai_config_key(ws), true).await? {
            Some(item) => from_item(item),
            None => Ok(AiConfig::default()),
        }
    }

    async fn write_ai_config(&self, ws: &WorkspaceId, config: &AiConfig) -> StoreResult<()> {
        let item = AiConfigItem {
            config,
            updated_at: Stamp(OffsetDateTime::now_utc()),
        };
        self.put(to_item(ai_config_key(ws), &item)?).await
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
        let workspace = WorkspaceItem {
            name,
            created_at: Stamp(OffsetDateTime::now_utc()),
        };
        self.put_integration(integration).await?;
        self.put(to_item(workspace_key(ws), &workspace)?).await?;
        self.write_ai_config(ws, ai).await
    }

    /// Connects a number to its workspace (seeding; onboarding activates through
    /// [`integration_item`] in its own transaction).
    pub async fn put_integration(&self, integration: &Integration) -> StoreResult<()> {
        self.put(integration_item(integration)?).await
    }
}

/// The `INTEGRATION` item of a number, as the processor reads it.
pub(super) fn integration_item(integration: &Integration) -> StoreResult<Item> {
    let ws = &integration.workspace_id;
    let item = IntegrationItem {
        workspace_id: ws.clone(),
        provider: integration.provider,
        status: integration.status,
        error: integration.error.clone(),
        access_token: integration.access_token.clone(),
        gsi1pk: workspace_partition(ws),
        gsi1sk: integration_list_sk(&integration.phone_number_id),
    };
    to_item(integration_key(&integration.phone_number_id), &item)
}
