//! The dashboard's use cases, served by the `send-api` function under `/v1/`: who is calling
//! (`auth`), and what they may read and change in their own workspace. Every use case takes the
//! caller's [`WorkspaceId`](crate::ids::WorkspaceId) from the verified token, never from the
//! request, so one workspace can never reach another's data.

pub mod ai_settings;
pub mod auth;
pub mod contacts;
pub mod inbox;
pub mod jwks;
pub mod notes;
pub mod page;
pub mod quick_replies;
pub mod send;
pub mod settings;

use crate::conversations::store::StoreError;

/// Why a dashboard request failed. The `send-api` function maps each variant to one HTTP status,
/// in one place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Unauthenticated(#[from] auth::AuthError),
    /// The request is malformed or a value is out of range; `field` names it (a JSON path).
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("not found")]
    NotFound,
    /// The change does not fit the item's current state; the message says why.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DashboardError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses a JSON request body. A body that does not fit the shape names the offending field
/// (a JSON path such as `providers.grok.model`) and says what is wrong, never how Rust saw it.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DashboardError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // A missing field is reported at its parent: name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split_once('`'));
        let field = match missing {
            Some((name, _)) if path == "." => name.to_owned(),
            Some((name, _)) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        DashboardError::invalid(field, message)
    })?;
    deserializer
        .end()
        .map_err(|e| DashboardError::invalid("body", e.to_string()))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai_settings::AiSettings;

    fn field(body: &str) -> String {
        match from_json::<AiSettings>(body.as_bytes()) {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn valid() -> serde_json::Value {
        serde_json::to_value(AiSettings::from(
            crate::conversations::model::AiConfig::default(),
        ))
        .unwrap()
    }

    #[test]
    fn a_body_of_the_wrong_type_names_the_field() {
        let mut body = valid();
        body["grokWeight"] = "fifty".into();
        assert_eq!(field(&body.to_string()), "grokWeight");
        let mut body = valid();
        body["providers"]["grok"]["model"] = 5.into();
        assert_eq!(field(&body.to_string()), "providers.grok.model");
    }

    #[test]
    fn a_missing_field_is_named_with_its_path() {
        let mut body = valid();
        body.as_object_mut().unwrap().remove("systemPrompt");
        assert_eq!(field(&body.to_string()), "systemPrompt");
        let mut body = valid();
        body["providers"].as_object_mut().unwrap().remove("sealion");
        assert_eq!(field(&body.to_string()), "providers.sealion");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let mut body = valid();
        body["grok_weight"] = 5.into();
        assert_eq!(field(&body.to_string()), "grok_weight");
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_as_the_body() {
        assert_eq!(field("{\"enabled\": tru"), "enabled");
        assert_eq!(field("not json"), "body");
        assert_eq!(field(""), "body");
        assert_eq!(field(&format!("{} trailing", valid())), "body");
    }
}
