//! Contacts as the dashboard reads and changes them: by phone prefix (GSI1, `CONTACT#<wa_id>`),
//! by name prefix (GSI2, `CTNAME#<workspace_id>` / `<folded name>#<wa_id>`), one by id.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::conversations::store::StoreResult;
use crate::dashboard::DashboardError;
use crate::dashboard::contacts::{Contact, ContactChange, ContactDirectory, ContactSearch};
use crate::dashboard::page::{Page, PageKey};
use crate::ids::{WaId, WorkspaceId};

use super::*;

/// The attributes of a contact item the dashboard shows.
#[derive(Debug, Deserialize)]
struct ContactRow {
    wa_id: WaId,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    profile_name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    opted_out: bool,
    #[serde(default)]
    created_at: Option<Stamp>,
    #[serde(default)]
    updated_at: Option<Stamp>,
}

fn view(row: ContactRow) -> Contact {
    Contact {
        id: row.wa_id.as_str().to_owned(),
        phone: row.phone,
        name: row.name.or_else(|| row.profile_name.clone()),
        profile_name: row.profile_name,
        tags: row.tags,
        opted_out: row.opted_out,
        created_at: row.created_at.map(|t| t.0),
        updated_at: row.updated_at.map(|t| t.0),
    }
}

impl ContactDirectory for DynamoStore {
    async fn search_contacts(
        &self,
        ws: &WorkspaceId,
        search: &ContactSearch,
        limit: u32,
        after: Option<PageKey>,
    ) -> Result<Page<Contact>, DashboardError> {
        let own = workspace_contacts_prefix(ws);
        let (index, partition, prefix, cursor_sk) = match search {
            ContactSearch::All => (
                "GSI1",
                workspace_partition(ws),
                contact_phone_prefix(""),
                CONTACT_PHONE_PREFIX,
            ),
            ContactSearch::PhonePrefix(digits) => (
                "GSI1",
                workspace_partition(ws),
                contact_phone_prefix(digits),
                CONTACT_PHONE_PREFIX,
            ),
            ContactSearch::NamePrefix(name) => {
                ("GSI2", contact_name_partition(ws), name.clone(), "")
            }
        };
        let after = after
            .map(|a| a.expect(&own, CONTACT_SK, cursor_sk))
            .transpose()?;
        let (items, next) = self
            .index_page(
                index,
                &partition,
                (
                    "begins_with(#sk, :prefix)",
                    vec![(":prefix", to_value(prefix)?)],
                ),
                None,
                false,
                limit,
                after,
            )
            .await?;
        let items = items
            .into_iter()
            .map(|item| Ok(view(from_item(item)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next })
    }

    async fn contact(&self, ws: &WorkspaceId, wa_id: &WaId) -> StoreResult<Option<Contact>> {
        self.get(contact_key(ws, wa_id), true)
            .await?
            .map(|item| Ok(view(from_item(item)?)))
            .transpose()
    }

    async fn update_contact(
        &self,
        ws: &WorkspaceId,
        wa_id: &WaId,
        current: &Contact,
        change: &ContactChange,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut sets = vec!["updated_at = :now"];
        let mut removes: Vec<&str> = vec![];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_key(ws, wa_id))?))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", to_value(Stamp(at))?);
        match &change.name {
            None => {}
            Some(Some(name)) => {
                sets.extend([
                    "#name = :name",
                    "name_key = :nkey",
                    "gsi2pk = :g2pk",
                    "gsi2sk = :nkey",
                ]);
                request = request
                    .expression_attribute_names("#name", "name")
                    .expression_attribute_values(":name", to_value(name)?)
                    .expression_attribute_values(":nkey", to_value(contact_name_sk(name, wa_id))?)
                    .expression_attribute_values(":g2pk", to_value(contact_name_partition(ws))?);
            }
            // Back to the profile name, in the search too.
            Some(None) => {
                removes.extend(["#name", "name_key"]);
                request = request.expression_attribute_names("#name", "name");
                match &current.profile_name {
                    Some(profile) => {
                        sets.extend(["gsi2pk = :g2pk", "gsi2sk = :pkey"]);
                        request = request
                            .expression_attribute_values(
                                ":pkey",
                                to_value(contact_name_sk(profile, wa_id))?,
                            )
                            .expression_attribute_values(
                                ":g2pk",
                                to_value(contact_name_partition(ws))?,
                            );
                    }
                    None => removes.extend(["gsi2pk", "gsi2sk"]),
                }
            }
        }
        if let Some(tags) = &change.tags {
            sets.push("tags = :tags");
            request = request.expression_attribute_values(":tags", to_value(tags)?);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        request
            .update_expression(expression)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
