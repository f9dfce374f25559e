//! Creating a setup link: the workspace's Kapso customer (created once, reused after), a link
//! that sends the browser back to our callbacks, recorded with its expiry.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::settings::{SetupLinkSettings, is_country};
use super::{
    ConnectionType, KapsoPlatform, OnboardingStore, PlatformError, SetupLinkRecord, SetupLinkSpec,
};
use crate::conversations::store::StoreError;
use crate::ids::WorkspaceId;

/// `POST /v1/whatsapp/setup-links`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetupLinkRequest {
    /// Provision a new number instead of connecting an existing WhatsApp Business account.
    pub provision_phone_number: bool,
    /// Which connection types the customer may choose; the configured default when absent.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub connection_types: Option<Vec<ConnectionType>>,
    /// Countries (ISO 3166 alpha-2, upper case) a provisioned number may come from.
    #[serde(default)]
    pub countries: Option<Vec<String>>,
    /// The area code of a provisioned number (digits).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 6)]
    pub area_code: Option<String>,
}

/// The link to send the customer to.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupLinkCreated {
    pub setup_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub kapso_customer_id: String,
}

/// Why a setup link was not created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetupLinkError {
    /// A request field is out of range; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: &str) -> SetupLinkError {
    SetupLinkError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl SetupLinkRequest {
    /// Kapso's `setup_link` object for this request, with the configured defaults filled in.
    pub fn spec(self, settings: &SetupLinkSettings) -> Result<SetupLinkSpec, SetupLinkError> {
        let callbacks = settings
            .callback_base_url
            .as_deref()
            .ok_or(PlatformError::NotConfigured)?;
        let mut types = self
            .connection_types
            .unwrap_or_else(|| settings.connection_types.clone());
        types.dedup();
        if types.is_empty() {
            return Err(invalid("connectionTypes", "must not be empty"));
        }
        let countries = self.countries.unwrap_or_else(|| settings.countries.clone());
        if countries.len() > 50 {
            return Err(invalid("countries", "at most 50 countries"));
        }
        if countries.iter().any(|c| !is_country(c)) {
            return Err(invalid(
                "countries",
                "each must be a two-letter ISO country code in upper case",
            ));
        }
        if let Some(code) = &self.area_code
            && (code.is_empty() || code.len() > 6 || !code.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("areaCode", "must be 1 to 6 digits"));
        }
        Ok(SetupLinkSpec {
            success_redirect_url: format!("{callbacks}/webhooks/kapso/success"),
            failure_redirect_url: format!("{callbacks}/webhooks/kapso/failed"),
            allowed_connection_types: types,
            provision_phone_number: self.provision_phone_number,
            phone_number_country_isos: countries,
            phone_number_area_code: self.area_code,
            theme_config: settings.theme.clone(),
        })
    }
}

/// Creates a setup link for the caller's workspace. The workspace's Kapso customer is created
/// on its first link and reused by every later one.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create<D: OnboardingStore, P: KapsoPlatform>(
    store: &D,
    platform: &P,
    settings: &SetupLinkSettings,
    workspace_id: &WorkspaceId,
    request: SetupLinkRequest,
) -> Result<SetupLinkCreated, SetupLinkError> {
    let spec = request.spec(settings)?;
    let customer = match store.connection(workspace_id).await?.kapso_customer_id {
        Some(customer) => customer,
        None => {
            let created = platform
                .create_customer(workspace_id.as_str(), workspace_id)
                .await?;
            // Two first requests at once may both create one: the first recorded wins, and
            // both links go to it.
            let kept = store.claim_customer(workspace_id, &created).await?;
            tracing::info!(kapso_customer_id = kept.as_str(), "Kapso customer created");
            kept
        }
    };
    let link = platform.create_setup_link(&customer, &spec).await?;
    store
        .record_setup_link(&SetupLinkRecord {
            id: link.id.clone(),
            workspace_id: workspace_id.clone(),
            customer_id: customer.clone(),
            expires_at: link.expires_at,
            created_at: OffsetDateTime::now_utc(),
            used_by: None,
        })
        .await?;
    tracing::info!(setup_link_id = link.id.as_str(), "setup link created");
    Ok(SetupLinkCreated {
        setup_url: link.url,
        expires_at: link.expires_at,
        kapso_customer_id: customer.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SetupLinkSettings {
        SetupLinkSettings {
            platform_base_url: "https://kapso".into(),
            callback_base_url: Some("https://api.example.com".into()),
            connection_types: vec![ConnectionType::Coexistence, ConnectionType::Dedicated],
            countries: vec!["US".into()],
            theme: Some(serde_json::json!({"primary_color": "#000000"})),
        }
    }

    fn request(body: serde_json::Value) -> SetupLinkRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_request_without_options_takes_the_configured_defaults_and_our_callbacks() {
        let spec = request(serde_json::json!({"provisionPhoneNumber": true}))
            .spec(&settings())
            .unwrap();
        assert_eq!(
            spec.success_redirect_url,
            "https://api.example.com/webhooks/kapso/success"
        );
        assert_eq!(
            spec.failure_redirect_url,
            "https://api.example.com/webhooks/kapso/failed"
        );
        assert_eq!(spec.allowed_connection_types.len(), 2);
        assert_eq!(spec.phone_number_country_isos, ["US"]);
        assert!(spec.provision_phone_number);
        assert!(spec.theme_config.is_some());
    }

    #[test]
    fn each_bad_option_is_refused_naming_its_field() {
        for (body, field) in [
            (
                serde_json::json!({"provisionPhoneNumber": false, "connectionTypes": []}),
                "connectionTypes",
            ),
            (
                serde_json::json!({"provisionPhoneNumber": true, "countries": ["usa"]}),
                "countries",
            ),
            (
                serde_json::json!({"provisionPhoneNumber": true, "areaCode": "41a"}),
                "areaCode",
            ),
            (
                serde_json::json!({"provisionPhoneNumber": true, "areaCode": ""}),
                "areaCode",
            ),
        ] {
            match request(body.clone()).spec(&settings()) {
                Err(SetupLinkError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
