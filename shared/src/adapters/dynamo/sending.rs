//! The reads of a dashboard send: the workspace's numbers, a contact's thread without touching
//! it, the workspace's transactional templates (and their one write), and which messages no
//! reply covers yet.

use serde::Deserialize;

use crate::conversations::model::{ContactState, Integration};
use crate::conversations::store::StoreResult;
use crate::dashboard::send::SendStore;
use crate::dashboard::settings::TemplateSettingsStore;
use crate::ids::{PhoneNumberId, WaId, WorkspaceId};

use super::contacts::contact_state;
use super::workspaces::IntegrationItem;
use super::*;

/// The workspace item's send settings (`WS#<workspace_id>` / `WORKSPACE`).
#[derive(Debug, Deserialize)]
struct WorkspaceSendSettings {
    /// Template names that may go to opted-out contacts (receipts, security codes).
    #[serde(default)]
    transactional_templates: Vec<String>,
}

impl SendStore for DynamoStore {
    async fn workspace_integrations(&self, ws: &WorkspaceId) -> StoreResult<Vec<Integration>> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
            .expression_attribute_values(":pk", to_value(workspace_partition(ws))?)
            .expression_attribute_values(":prefix", to_value(INTEGRATION_PREFIX)?)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let row: IntegrationItem = from_item(item)?;
                let pn = integration_list_number(&row.gsi1sk)
                    .ok_or_else(|| corrupt(format!("integration sort key {}", row.gsi1sk)))?;
                Ok(Integration {
                    phone_number_id: pn,
                    workspace_id: row.workspace_id,
                    provider: row.provider,
                    status: row.status,
                    error: row.error,
                    access_token: row.access_token,
                })
            })
            .collect()
    }

    async fn contact_thread(
        &self,
        ws: &WorkspaceId,
        pn: &PhoneNumberId,
        wa_id: &WaId,
    ) -> StoreResult<Option<ContactState>> {
        match self.get(contact_key(ws, wa_id), true).await? {
            Some(item) => contact_state(&item, ws, pn, wa_id).map(Some),
            None => Ok(None),
        }
    }

    async fn transactional_templates(&self, ws: &WorkspaceId) -> StoreResult<Vec<String>> {
        match self.get(workspace_key(ws), true).await? {
            Some(item) => Ok(from_item::<WorkspaceSendSettings>(item)?.transactional_templates),
            None => Ok(Vec::new()),
        }
    }
}

impl TemplateSettingsStore for DynamoStore {
    async fn write_transactional_templates(
        &self,
        ws: &WorkspaceId,
        names: &[String],
    ) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(workspace_key(ws))?))
            .update_expression("SET transactional_templates = :names")
            .expression_attribute_values(":names", to_value(names)?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Seeding for the local stack and tests (the dashboard edits the list through
/// `PUT /v1/templates/transactional`).
impl DynamoStore {
    pub async fn set_transactional_templates(
        &self,
        ws: &WorkspaceId,
        names: &[&str],
    ) -> StoreResult<()> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        self.write_transactional_templates(ws, &names).await
    }
}
