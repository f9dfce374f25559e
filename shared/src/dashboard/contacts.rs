//! Contacts as the dashboard sees them: search by phone prefix or by name, one contact, and
//! the changes a person makes (name, tags, opt-out). A contact's id is its WhatsApp id.

use std::future::Future;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardError;
use super::page::{self, Page, PageKey};
use crate::conversations::store::{ContactStore, StoreResult};
use crate::ids::{WaId, WorkspaceId};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// The contact's WhatsApp id: a phone number in digits, or a business-scoped user id.
    pub id: String,
    /// `+E.164`; absent for a contact known only by a business-scoped user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The name the business gave the contact, else their WhatsApp profile name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The name on their WhatsApp profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
    pub tags: Vec<String>,
    /// The contact asked not to be messaged (STOP): no AI replies, no sends but transactional
    /// templates.
    pub opted_out: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactPage {
    pub items: Vec<Contact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/contacts`'s query string.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactListParams {
    pub phone: Option<String>,
    pub name: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// How to search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactSearch {
    /// Every contact, by phone number.
    All,
    /// Phone numbers starting with these digits.
    PhonePrefix(String),
    /// Names starting with this, case and spacing folded (see [`fold_name`]).
    NamePrefix(String),
}

/// `PATCH /v1/contacts/{id}`: the fields to change; at least one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactPatch {
    /// The name the business gives the contact; `null` goes back to their profile name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    pub name: Option<Option<String>>,
    /// Replaces the tags: at most 20, each 1 to 40 characters.
    pub tags: Option<Vec<String>>,
    /// Opts the contact out (`true`) or back in (`false`).
    pub opted_out: Option<bool>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// A validated patch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactChange {
    pub name: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub opted_out: Option<bool>,
}

/// A name as the name search compares it: lower case, single spaces, trimmed.
pub fn fold_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn clean(field: &str, value: &str, max: usize) -> Result<String, DashboardError> {
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_empty() || value.chars().count() > max {
        return Err(DashboardError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(DashboardError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value)
}

impl ContactPatch {
    pub fn validate(self) -> Result<ContactChange, DashboardError> {
        if self.name.is_none() && self.tags.is_none() && self.opted_out.is_none() {
            return Err(DashboardError::invalid(
                "body",
                "give at least one of `name`, `tags` and `optedOut`",
            ));
        }
        let name = match self.name {
            None => None,
            Some(None) => Some(None),
            Some(Some(name)) => Some(Some(clean("name", &name, MAX_NAME_CHARS)?)),
        };
        let tags = match self.tags {
            None => None,
            Some(tags) => {
                if tags.len() > MAX_TAGS {
                    return Err(DashboardError::invalid(
                        "tags",
                        format!("at most {MAX_TAGS} tags"),
                    ));
                }
                let mut clean_tags: Vec<String> = vec![];
                for (i, tag) in tags.iter().enumerate() {
                    let tag = clean(&format!("tags[{i}]"), tag, MAX_TAG_CHARS)?;
                    if !clean_tags.contains(&tag) {
                        clean_tags.push(tag);
                    }
                }
                Some(clean_tags)
            }
        };
        Ok(ContactChange {
            name,
            tags,
            opted_out: self.opted_out,
        })
    }
}

impl ContactListParams {
    pub fn validate(self) -> Result<(ContactSearch, u32, Option<PageKey>), DashboardError> {
        let search = match (self.phone, self.name) {
            (Some(_), Some(_)) => {
                return Err(DashboardError::invalid(
                    "name",
                    "search by `phone` or by `name`, not both",
                ));
            }
            (Some(phone), None) => {
                let digits: String = phone
                    .trim()
                    .trim_start_matches('+')
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
                    .collect();
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(DashboardError::invalid(
                        "phone",
                        "must be the start of a phone number: digits, optionally after a +",
                    ));
                }
                ContactSearch::PhonePrefix(digits)
            }
            (None, Some(name)) => {
                let folded = fold_name(&name);
                if folded.is_empty() || folded.chars().count() > MAX_NAME_CHARS {
                    return Err(DashboardError::invalid(
                        "name",
                        format!("must be 1 to {MAX_NAME_CHARS} characters"),
                    ));
                }
                ContactSearch::NamePrefix(folded)
            }
            (None, None) => ContactSearch::All,
        };
        Ok((
            search,
            page::limit(self.limit.as_deref())?,
            page::cursor(self.cursor.as_deref())?,
        ))
    }
}

/// Port: the dashboard's contact reads and writes. Opt-out goes through
/// [`ContactStore::set_opt_out`], the processor's own write.
pub trait ContactDirectory: Send + Sync + 'static {
    fn search_contacts(
        &self,
        workspace_id: &WorkspaceId,
        search: &ContactSearch,
        limit: u32,
        after: Option<PageKey>,
    ) -> impl Future<Output = Result<Page<Contact>, DashboardError>> + Send;
    /// One contact of the workspace's, read consistently.
    fn contact(
        &self,
        workspace_id: &WorkspaceId,
        wa_id: &WaId,
    ) -> impl Future<Output = StoreResult<Option<Contact>>> + Send;
    /// Sets or clears the name and replaces the tags of an existing contact.
    fn update_contact(
        &self,
        workspace_id: &WorkspaceId,
        wa_id: &WaId,
        current: &Contact,
        change: &ContactChange,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

fn parse_id(raw: &str) -> Result<WaId, DashboardError> {
    WaId::parse(raw).map_err(|_| DashboardError::NotFound)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list<D: ContactDirectory>(
    store: &D,
    workspace_id: &WorkspaceId,
    params: ContactListParams,
) -> Result<ContactPage, DashboardError> {
    let (search, limit, after) = params.validate()?;
    let page = store
        .search_contacts(workspace_id, &search, limit, after)
        .await?;
    Ok(ContactPage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    })
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn get<D: ContactDirectory>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
) -> Result<Contact, DashboardError> {
    store
        .contact(workspace_id, &parse_id(id)?)
        .await?
        .ok_or(DashboardError::NotFound)
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn patch<D: ContactDirectory + ContactStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    id: &str,
    patch: ContactPatch,
) -> Result<Contact, DashboardError> {
    let change = patch.validate()?;
    let wa_id = parse_id(id)?;
    let current = get(store, workspace_id, id).await?;
    let now = OffsetDateTime::now_utc();
    if change.name.is_some() || change.tags.is_some() {
        store
            .update_contact(workspace_id, &wa_id, &current, &change, now)
            .await?;
    }
    if let Some(opted_out) = change.opted_out.filter(|o| *o != current.opted_out) {
        store
            .set_opt_out(workspace_id, &wa_id, opted_out, now)
            .await?;
        tracing::info!(opted_out, "opt-out changed from the dashboard");
    }
    get(store, workspace_id, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(result: Result<T, DashboardError>) -> String {
        match result {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_patch_is_validated_naming_the_field() {
        let patch = |json: serde_json::Value| {
            serde_json::from_value::<ContactPatch>(json)
                .unwrap()
                .validate()
        };
        assert_eq!(field_of(patch(serde_json::json!({}))), "body");
        assert_eq!(field_of(patch(serde_json::json!({ "name": "  " }))), "name");
        assert_eq!(
            field_of(patch(serde_json::json!({ "name": "x".repeat(101) }))),
            "name"
        );
        assert_eq!(
            field_of(patch(serde_json::json!({ "tags": ["vip", ""] }))),
            "tags[1]"
        );
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert_eq!(field_of(patch(serde_json::json!({ "tags": many }))), "tags");
    }

    #[test]
    fn a_patch_tells_a_null_name_from_an_absent_one_and_cleans_tags() {
        let change = serde_json::from_value::<ContactPatch>(serde_json::json!({
            "name": null, "tags": [" vip ", "vip", "late  payer"]
        }))
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(change.name, Some(None));
        assert_eq!(change.tags, Some(vec!["vip".into(), "late payer".into()]));
        let change =
            serde_json::from_value::<ContactPatch>(serde_json::json!({ "optedOut": true }))
                .unwrap()
                .validate()
                .unwrap();
        assert_eq!(change.name, None);
    }

    #[test]
    fn a_search_takes_a_phone_prefix_or_a_name_prefix_but_not_both() {
        let params = |phone: Option<&str>, name: Option<&str>| ContactListParams {
            phone: phone.map(Into::into),
            name: name.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            params(Some("+65 9123"), None).validate().unwrap().0,
            ContactSearch::PhonePrefix("659123".into())
        );
        assert_eq!(
            params(None, Some("  Ana  MARIA")).validate().unwrap().0,
            ContactSearch::NamePrefix("ana maria".into())
        );
        assert_eq!(field_of(params(Some("65x"), None).validate()), "phone");
        assert_eq!(field_of(params(Some("6"), Some("a")).validate()), "name");
        assert_eq!(field_of(params(None, Some("   ")).validate()), "name");
    }
}
