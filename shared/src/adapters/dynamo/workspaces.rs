//! Workspaces, their integrations (numbers) and AI settings.

use time::OffsetDateTime;

use crate::conversations::model::{AiConfig, Integration, IntegrationStatus, Provider};
use crate::conversations::store::{StoreResult, TenantStore};
use crate::ids::{PhoneNumberId, WorkspaceId};

use super::*;

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
}
