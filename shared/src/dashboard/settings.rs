//! Workspace settings the dashboard edits besides the AI's: which message templates are
//! transactional (order receipts, security codes), the only messages an opted-out contact may
//! still receive. The send use case reads the same list (`SendStore::transactional_templates`).

use std::future::Future;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DashboardError;
use super::send::SendStore;
use crate::conversations::store::StoreResult;
use crate::ids::WorkspaceId;
use crate::whatsapp::{MAX_TEMPLATE_NAME, is_template_name};

/// The most templates a workspace marks as transactional.
pub const MAX_TRANSACTIONAL_TEMPLATES: usize = 100;

/// The templates a workspace marks as transactional. `PUT` replaces the whole list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionalTemplates {
    /// Template names as WhatsApp knows them: 1 to 512 lowercase letters, digits and `_`; at
    /// most 100, duplicates dropped.
    #[schema(max_items = 100)]
    pub names: Vec<String>,
}

/// Port: writes a workspace's transactional templates (an attribute of its `WS#<workspace_id>`
/// / `WORKSPACE` item).
pub trait TemplateSettingsStore: Send + Sync + 'static {
    fn write_transactional_templates(
        &self,
        workspace_id: &WorkspaceId,
        names: &[String],
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

impl TransactionalTemplates {
    /// The names, checked, in their order, without duplicates; a bad one is named by its index.
    pub fn validate(self) -> Result<Vec<String>, DashboardError> {
        if self.names.len() > MAX_TRANSACTIONAL_TEMPLATES {
            return Err(DashboardError::invalid(
                "names",
                format!("must hold at most {MAX_TRANSACTIONAL_TEMPLATES} template names"),
            ));
        }
        let mut names: Vec<String> = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.into_iter().enumerate() {
            if !is_template_name(&name) {
                return Err(DashboardError::invalid(
                    format!("names[{i}]"),
                    format!(
                        "must be a template name: 1 to {MAX_TEMPLATE_NAME} lowercase letters, digits or `_`"
                    ),
                ));
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// The caller's transactional templates (none until the workspace marks some).
pub async fn get<D: SendStore>(
    store: &D,
    workspace_id: &WorkspaceId,
) -> Result<TransactionalTemplates, DashboardError> {
    Ok(TransactionalTemplates {
        names: store.transactional_templates(workspace_id).await?,
    })
}

/// Replaces the caller's transactional templates; the next send reads the new list.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn put<D: TemplateSettingsStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    input: TransactionalTemplates,
) -> Result<TransactionalTemplates, DashboardError> {
    let names = input.validate()?;
    store
        .write_transactional_templates(workspace_id, &names)
        .await?;
    Ok(TransactionalTemplates { names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(names: &[&str]) -> Result<Vec<String>, DashboardError> {
        TransactionalTemplates {
            names: names.iter().map(|n| n.to_string()).collect(),
        }
        .validate()
    }

    fn field(result: Result<Vec<String>, DashboardError>) -> String {
        match result {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn template_names_are_kept_in_order_without_duplicates() {
        assert_eq!(
            validate(&["receipt", "otp_code_2", "receipt"]).unwrap(),
            ["receipt", "otp_code_2"]
        );
        assert!(validate(&[]).unwrap().is_empty());
        let longest = "a".repeat(MAX_TEMPLATE_NAME);
        assert_eq!(validate(&[&longest]).unwrap(), [longest]);
    }

    #[test]
    fn a_name_that_is_not_a_template_name_is_refused_by_its_index() {
        let too_long = "a".repeat(MAX_TEMPLATE_NAME + 1);
        for bad in [
            "",
            "Receipt",
            "order-receipt",
            "receipt ",
            "reçu",
            too_long.as_str(),
        ] {
            assert_eq!(field(validate(&["ok", bad])), "names[1]", "{bad:?}");
        }
    }

    #[test]
    fn more_than_a_hundred_names_are_refused_naming_the_list() {
        let names: Vec<String> = (0..=MAX_TRANSACTIONAL_TEMPLATES)
            .map(|i| format!("t{i}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(field(validate(&names)), "names");
        assert_eq!(
            validate(&names[..MAX_TRANSACTIONAL_TEMPLATES])
                .unwrap()
                .len(),
            100
        );
    }
}
