//! Contacts, and their thread with each number.

use aws_sdk_dynamodb::types::ReturnValue;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::conversations::model::{ContactRef, ContactState};
use crate::conversations::store::{ContactStore, StoreResult};
use crate::ids::{ConversationId, PhoneNumberId, WaId, WorkspaceId};

use super::*;

/// The fixed attributes of a contact (`CT#<workspace_id>#<wa_id>` / `CONTACT`). Its threads,
/// one per business number, are attributes named `pn#<phone_number_id>#<field>` (see
/// [`thread_attr`]), read one by one.
#[derive(Debug, Deserialize)]
struct ContactItem {
    #[serde(default)]
    profile_name: Option<String>,
    #[serde(default)]
    opted_out: bool,
}

/// A contact item read as the contact with its thread with `pn`.
pub(super) fn contact_state(
    item: &Item,
    ws: &WorkspaceId,
    pn: &PhoneNumberId,
    wa_id: &WaId,
) -> StoreResult<ContactState> {
    let contact: ContactItem = from_item(item.clone())?;
    let thread = |field: &str| thread_attr(pn, field);
    let stamp = |field: &str| -> StoreResult<Option<OffsetDateTime>> {
        Ok(attribute::<Stamp>(item, &thread(field))?.map(|t| t.0))
    };
    Ok(ContactState {
        workspace_id: ws.clone(),
        phone_number_id: pn.clone(),
        wa_id: wa_id.clone(),
        profile_name: contact.profile_name,
        opted_out: contact.opted_out,
        conversation_id: attribute(item, &thread("conversation_id"))?,
        started_at: stamp("started_at")?,
        last_inbound_at: stamp("last_inbound_at")?,
        answered_through: stamp("answered_through")?,
        bot_paused: attribute(item, &thread("bot_paused"))?.unwrap_or(false),
    })
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
            .set_key(Some(key(contact_key(ws, wa_id))?))
            .expression_attribute_values(":wa", to_value(wa_id.as_str())?)
            .expression_attribute_values(":ws", to_value(ws.as_str())?)
            .expression_attribute_values(":now", to_value(Stamp(at))?)
            .expression_attribute_values(":no", to_value(false)?)
            .expression_attribute_values(":tags", to_value(Vec::<String>::new())?)
            .expression_attribute_values(":gpk", to_value(workspace_partition(ws))?)
            .expression_attribute_values(":gsk", to_value(contact_phone_sk(wa_id))?)
            .return_values(ReturnValue::AllNew);
        // A customer known only by a business-scoped user id has no phone number to store.
        if let Some(phone) = wa_id.phone().map(|p| format!("+{p}")) {
            expression.push_str(", phone = :phone");
            request = request.expression_attribute_values(":phone", to_value(phone)?);
        }
        if let Some(name) = profile_name.filter(|n| !n.trim().is_empty()) {
            // The name search (GSI2) finds the contact by this name unless the business named
            // them (`name_key`).
            expression.push_str(
                ", profile_name = :name, profile_key = :pkey, gsi2pk = :g2pk, \
                 gsi2sk = if_not_exists(name_key, :pkey)",
            );
            request = request
                .expression_attribute_values(":name", to_value(name)?)
                .expression_attribute_values(":pkey", to_value(contact_name_sk(name, wa_id))?)
                .expression_attribute_values(":g2pk", to_value(contact_name_partition(ws))?);
        }
        let item = request
            .update_expression(expression)
            .send()
            .await
            .map_err(unavailable)?
            .attributes
            .unwrap_or_default();
        contact_state(&item, ws, pn, wa_id)
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
            .set_key(Some(key(contact_key(ws, wa_id))?))
            .update_expression("SET opted_out = :v, opted_out_changed_at = :now, updated_at = :now")
            .expression_attribute_values(":v", to_value(opted_out)?)
            .expression_attribute_values(":now", to_value(Stamp(at))?)
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
            ))?))
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
            .expression_attribute_values(":p", to_value(paused)?)
            .expression_attribute_values(":conv", to_value(conversation_id.as_str())?)
            .expression_attribute_values(":now", to_value(Stamp(OffsetDateTime::now_utc()))?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
