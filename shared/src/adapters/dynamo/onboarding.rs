//! Onboarding: a workspace's record (`WS#<id>` / `ONBOARDING`), the customer → workspace map
//! (`KC#<customer>` / `KAPSO_CUSTOMER`), setup links (`SETUP#<id>` / `SETUP`), and activation,
//! which also writes the number's `INTEGRATION` item the processor routes by.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::conversations::model::{Integration, IntegrationStatus, Provider};
use crate::conversations::store::{StoreError, StoreResult};
use crate::ids::{KapsoCustomerId, PhoneNumberId, SetupLinkId, WorkspaceId};
use crate::onboarding::manual::{ManualConnection, ManualIntegrationStore};
use crate::onboarding::sealed::SealedToken;
use crate::onboarding::{
    Activation, ActivationError, ActiveNumber, Connection, ConnectionType, OnboardingStore,
    RecordedError, SetupLinkRecord,
};

use super::workspaces::integration_item;
use super::*;

/// Setup links are kept a while past their expiry (Kapso's are 30 days), then TTL drops them.
const SETUP_LINK_RETENTION: time::Duration = time::Duration::days(90);

/// `WS#<id>` / `ONBOARDING`: every field is set by one event of the flow.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct OnboardingItem {
    kapso_customer_id: Option<KapsoCustomerId>,
    phone_number_id: Option<PhoneNumberId>,
    provider: Option<Provider>,
    display_phone_number: Option<String>,
    connection_type: Option<ConnectionType>,
    connected_at: Option<Stamp>,
    link_created_at: Option<Stamp>,
    link_expires_at: Option<Stamp>,
    error_code: Option<String>,
    error_message: Option<String>,
    error_at: Option<Stamp>,
    disconnected_at: Option<Stamp>,
}

impl From<OnboardingItem> for Connection {
    fn from(i: OnboardingItem) -> Self {
        let active = match (i.phone_number_id, i.provider, i.connected_at) {
            (Some(phone_number_id), Some(provider), Some(connected_at)) => Some(ActiveNumber {
                phone_number_id,
                provider,
                display_phone_number: i.display_phone_number,
                connection_type: i.connection_type,
                connected_at: connected_at.0,
            }),
            _ => None,
        };
        let error = match (i.error_code, i.error_at) {
            (Some(code), Some(at)) => Some(RecordedError {
                code,
                message: i.error_message,
                at: at.0,
            }),
            _ => None,
        };
        Self {
            kapso_customer_id: i.kapso_customer_id,
            active,
            link_created_at: i.link_created_at.map(|s| s.0),
            link_expires_at: i.link_expires_at.map(|s| s.0),
            error,
            disconnected_at: i.disconnected_at.map(|s| s.0),
        }
    }
}

/// `KC#<customer>` / `KAPSO_CUSTOMER`.
#[derive(Debug, Serialize, Deserialize)]
struct CustomerItem {
    workspace_id: WorkspaceId,
}

/// `SETUP#<id>` / `SETUP`.
#[derive(Debug, Serialize, Deserialize)]
struct SetupLinkItem {
    workspace_id: WorkspaceId,
    customer_id: KapsoCustomerId,
    expires_at: Stamp,
    created_at: Stamp,
    /// Absent until used: the activation's condition is `attribute_not_exists(used_by)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_by: Option<PhoneNumberId>,
    ttl: i64,
}

fn attr<T: Serialize>(value: &T) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(value).map_err(corrupt)
}

impl OnboardingStore for DynamoStore {
    async fn connection(&self, ws: &WorkspaceId) -> StoreResult<Connection> {
        match self.get(onboarding_key(ws), true).await? {
            Some(item) => Ok(from_item::<OnboardingItem>(item)?.into()),
            None => Ok(Connection::default()),
        }
    }

    async fn claim_customer(
        &self,
        ws: &WorkspaceId,
        customer: &KapsoCustomerId,
    ) -> StoreResult<KapsoCustomerId> {
        let items = vec![
            update(
                &self.table,
                onboarding_key(ws),
                "SET kapso_customer_id = :c",
                &[],
                vec![(":c", to_value(customer.as_str())?)],
                Some("attribute_not_exists(kapso_customer_id)"),
            )?,
            put_if_absent(
                &self.table,
                to_item(
                    kapso_customer_key(customer),
                    &CustomerItem {
                        workspace_id: ws.clone(),
                    },
                )?,
            )?,
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(customer.clone()),
            Err(e) if cancelled_conditions(&e).is_some() => self
                .connection(ws)
                .await?
                .kapso_customer_id
                .ok_or_else(|| StoreError::Conflict("the Kapso customer is taken".into())),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn customer_workspace(
        &self,
        customer: &KapsoCustomerId,
    ) -> StoreResult<Option<WorkspaceId>> {
        match self.get(kapso_customer_key(customer), true).await? {
            Some(item) => Ok(Some(from_item::<CustomerItem>(item)?.workspace_id)),
            None => Ok(None),
        }
    }

    async fn record_setup_link(&self, link: &SetupLinkRecord) -> StoreResult<()> {
        let row = SetupLinkItem {
            workspace_id: link.workspace_id.clone(),
            customer_id: link.customer_id.clone(),
            expires_at: Stamp(link.expires_at),
            created_at: Stamp(link.created_at),
            used_by: None,
            ttl: (link.expires_at + SETUP_LINK_RETENTION).unix_timestamp(),
        };
        let items = vec![
            put_if_absent(&self.table, to_item(setup_link_key(&link.id), &row)?)?,
            update(
                &self.table,
                onboarding_key(&link.workspace_id),
                "SET link_created_at = :created, link_expires_at = :expires",
                &[],
                vec![
                    (":created", to_value(Stamp(link.created_at))?),
                    (":expires", to_value(Stamp(link.expires_at))?),
                ],
                None,
            )?,
        ];
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| match cancelled_conditions(&e) {
                Some(_) => StoreError::Conflict(format!(
                    "setup link {} already recorded",
                    link.id.as_str()
                )),
                None => unavailable(e),
            })?;
        Ok(())
    }

    async fn setup_link(&self, id: &SetupLinkId) -> StoreResult<Option<SetupLinkRecord>> {
        let Some(item) = self.get(setup_link_key(id), true).await? else {
            return Ok(None);
        };
        let row: SetupLinkItem = from_item(item)?;
        Ok(Some(SetupLinkRecord {
            id: id.clone(),
            workspace_id: row.workspace_id,
            customer_id: row.customer_id,
            expires_at: row.expires_at.0,
            created_at: row.created_at.0,
            used_by: row.used_by,
        }))
    }

    async fn activate(&self, activation: &Activation) -> Result<(), ActivationError> {
        let mut items = self.activation_items(
            &activation.workspace_id,
            &activation.number,
            None,
            Vec::new(),
        )?;
        let number = &activation.number;
        let pn = &number.phone_number_id;
        if let Some(link) = &activation.setup_link {
            items.push(update(
                &self.table,
                setup_link_key(link),
                "SET used_by = :pn, used_at = :at",
                &[],
                vec![
                    (":pn", to_value(pn.as_str())?),
                    (":at", to_value(Stamp(number.connected_at))?),
                ],
                Some("attribute_exists(pk) AND (attribute_not_exists(used_by) OR used_by = :pn)"),
            )?);
        }
        self.write_activation(pn, items).await
    }

    async fn record_error(&self, ws: &WorkspaceId, error: &RecordedError) -> StoreResult<()> {
        let mut values = vec![
            (":code", to_value(&error.code)?),
            (":at", to_value(Stamp(error.at))?),
        ];
        let expression = match &error.message {
            Some(m) => {
                values.push((":message", to_value(m)?));
                "SET error_code = :code, error_at = :at, error_message = :message"
            }
            None => "SET error_code = :code, error_at = :at REMOVE error_message",
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(onboarding_key(ws))?))
            .update_expression(expression);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        request.send().await.map_err(unavailable)?;
        Ok(())
    }
}

impl DynamoStore {
    /// The writes that connect `number` to `ws`: its `INTEGRATION` item (active, with its own
    /// sealed token if it has one) and the workspace's record, plus `extra` attributes set on the
    /// record (name, placeholder, value).
    fn activation_items(
        &self,
        ws: &WorkspaceId,
        number: &ActiveNumber,
        access_token: Option<SealedToken>,
        extra: Vec<(&'static str, &'static str, AttributeValue)>,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let pn = &number.phone_number_id;
        let integration = integration_item(&Integration {
            phone_number_id: pn.clone(),
            workspace_id: ws.clone(),
            provider: number.provider,
            status: IntegrationStatus::Active,
            error: None,
            access_token,
        })?;
        // A number is routed to one workspace: it may be (re)activated only by the one it
        // already belongs to, or by any once it has been disconnected.
        let route = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(integration))
                    .condition_expression(
                        "attribute_not_exists(pk) OR workspace_id = :ws OR #status = :disconnected",
                    )
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":ws", to_value(ws.as_str())?)
                    .expression_attribute_values(":disconnected", to_value("disconnected")?)
                    .build()
                    .map_err(corrupt)?,
            )
            .build();
        let mut set = vec![
            "phone_number_id = :pn".to_owned(),
            "#provider = :provider".to_owned(),
            "connected_at = :at".to_owned(),
        ];
        let mut remove = vec!["error_code", "error_message", "error_at", "disconnected_at"];
        let mut values = vec![
            (":pn", to_value(pn.as_str())?),
            (":provider", attr(&number.provider)?),
            (":at", to_value(Stamp(number.connected_at))?),
        ];
        match &number.display_phone_number {
            Some(d) => {
                set.push("display_phone_number = :display".into());
                values.push((":display", to_value(d)?));
            }
            None => remove.push("display_phone_number"),
        }
        match &number.connection_type {
            Some(t) => {
                set.push("connection_type = :type".into());
                values.push((":type", attr(t)?));
            }
            None => remove.push("connection_type"),
        }
        // What only a manual integration sets does not outlive it.
        for manual_only in ["business_account_id", "webhook_verify_token_sha256"] {
            if !extra.iter().any(|(name, ..)| *name == manual_only) {
                remove.push(manual_only);
            }
        }
        for (name, placeholder, value) in extra {
            set.push(format!("{name} = {placeholder}"));
            values.push((placeholder, value));
        }
        let record = update(
            &self.table,
            onboarding_key(ws),
            &format!("SET {} REMOVE {}", set.join(", "), remove.join(", ")),
            &[("#provider", "provider")],
            values,
            None,
        )?;
        Ok(vec![route, record])
    }

    async fn write_activation(
        &self,
        pn: &PhoneNumberId,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), ActivationError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match cancelled_conditions(&e) {
                Some(reasons) if reasons.iter().any(|failed| *failed) => {
                    Err(ActivationError::Taken)
                }
                Some(_) => Err(StoreError::Conflict(format!(
                    "the activation of {pn} raced another writer"
                ))
                .into()),
                None => Err(unavailable(e).into()),
            },
        }
    }
}

/// A manual integration is an activation with the number's own sealed token; disconnecting
/// keeps the items (history) but drops the token and the routing.
impl ManualIntegrationStore for DynamoStore {
    async fn connect_manual(&self, c: &ManualConnection) -> Result<(), ActivationError> {
        let number = ActiveNumber {
            phone_number_id: c.phone_number_id.clone(),
            provider: Provider::Meta,
            display_phone_number: c.display_phone_number.clone(),
            connection_type: None,
            connected_at: c.connected_at,
        };
        let mut extra = vec![(
            "business_account_id",
            ":business_account_id",
            to_value(&c.business_account_id)?,
        )];
        if let Some(digest) = &c.webhook_verify_token_sha256 {
            extra.push((
                "webhook_verify_token_sha256",
                ":verify_sha256",
                to_value(digest)?,
            ));
        }
        let items = self.activation_items(
            &c.workspace_id,
            &number,
            Some(c.access_token.clone()),
            extra,
        )?;
        self.write_activation(&c.phone_number_id, items).await
    }

    async fn disconnect(
        &self,
        ws: &WorkspaceId,
        pn: &PhoneNumberId,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(integration_key(pn))?))
            .update_expression(
                "SET #status = :disconnected, updated_at = :at REMOVE access_token, #err",
            )
            .condition_expression("workspace_id = :ws")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#err", "error")
            .expression_attribute_values(":disconnected", to_value("disconnected")?)
            .expression_attribute_values(":at", to_value(Stamp(at))?)
            .expression_attribute_values(":ws", to_value(ws.as_str())?)
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_conditional_failure(&e) => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        }
        // The workspace's record shows it disconnected only if it is the number it shows.
        let shown = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(onboarding_key(ws))?))
            .update_expression("SET disconnected_at = :at")
            .condition_expression("phone_number_id = :pn")
            .expression_attribute_values(":at", to_value(Stamp(at))?)
            .expression_attribute_values(":pn", to_value(pn.as_str())?)
            .send()
            .await;
        match shown {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(true),
            Err(e) => Err(unavailable(e)),
        }
    }
}
