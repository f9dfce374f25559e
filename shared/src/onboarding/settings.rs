//! Onboarding configuration, read once at cold start: where the Kapso platform API is, where
//! Kapso sends the browser back to, and the setup-link defaults.

use crate::config::{ConfigError, Env};

use super::ConnectionType;

pub const DEFAULT_PLATFORM_BASE_URL: &str = "https://api.kapso.ai/platform/v1";

/// What the send API creates setup links with.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupLinkSettings {
    /// Kapso's platform API (`KAPSO_PLATFORM_BASE_URL`, default [`DEFAULT_PLATFORM_BASE_URL`]).
    pub platform_base_url: String,
    /// Our public base URL, where the setup-callbacks routes are (`SETUP_CALLBACK_BASE_URL`):
    /// the links' redirect URLs are `{it}/webhooks/kapso/success` and `…/failed`. Unset, setup
    /// links are off (the route answers 503), like a feature whose secret is absent.
    pub callback_base_url: Option<String>,
    /// `SETUP_LINK_CONNECTION_TYPES`, comma-separated (default `coexistence,dedicated`).
    pub connection_types: Vec<ConnectionType>,
    /// `SETUP_LINK_COUNTRIES`, comma-separated ISO codes for provisioned numbers (default none).
    pub countries: Vec<String>,
    /// `SETUP_LINK_THEME`: Kapso's `theme_config` as a JSON object (default Kapso's theme).
    pub theme: Option<serde_json::Value>,
}

impl SetupLinkSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let connection_types = list(env, "SETUP_LINK_CONNECTION_TYPES")
            .unwrap_or_else(|| vec!["coexistence".into(), "dedicated".into()])
            .iter()
            .map(|t| {
                ConnectionType::parse(t).ok_or_else(|| ConfigError::Invalid {
                    name: "SETUP_LINK_CONNECTION_TYPES",
                    reason: format!("{t:?} is neither coexistence nor dedicated"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let countries = list(env, "SETUP_LINK_COUNTRIES").unwrap_or_default();
        if let Some(bad) = countries.iter().find(|c| !is_country(c)) {
            return Err(ConfigError::Invalid {
                name: "SETUP_LINK_COUNTRIES",
                reason: format!("{bad:?} is not a two-letter ISO country code"),
            });
        }
        let theme = match env.optional("SETUP_LINK_THEME") {
            None => None,
            Some(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SETUP_LINK_THEME",
                        reason: "must be a JSON object".into(),
                    });
                }
            },
        };
        Ok(Self {
            platform_base_url: platform_base_url(env)?,
            callback_base_url: match env.optional("SETUP_CALLBACK_BASE_URL") {
                Some(_) => Some(base_url(env, "SETUP_CALLBACK_BASE_URL", "")?),
                None => None,
            },
            connection_types,
            countries,
            theme,
        })
    }
}

/// What the setup-callbacks function needs besides the table.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackSettings {
    pub platform_base_url: String,
    /// The dashboard (`DASHBOARD_URL`): the only place a callback ever redirects to.
    pub dashboard_url: String,
}

impl CallbackSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            platform_base_url: platform_base_url(env)?,
            dashboard_url: base_url(env, "DASHBOARD_URL", "")?,
        })
    }
}

/// Kapso's platform API root (`KAPSO_PLATFORM_BASE_URL`, default [`DEFAULT_PLATFORM_BASE_URL`]),
/// as every function that calls it reads it.
pub fn platform_base_url(env: &Env) -> Result<String, ConfigError> {
    base_url(env, "KAPSO_PLATFORM_BASE_URL", DEFAULT_PLATFORM_BASE_URL)
}

/// Whether `raw` is a two-letter ISO 3166 country code (upper case).
pub fn is_country(raw: &str) -> bool {
    raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_uppercase())
}

fn list(env: &Env, name: &str) -> Option<Vec<String>> {
    env.optional(name).map(|raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// An absolute http(s) URL without a trailing slash; required when `default` is empty.
fn base_url(env: &Env, name: &'static str, default: &str) -> Result<String, ConfigError> {
    let raw = match env.optional(name) {
        Some(raw) => raw.trim(),
        None if default.is_empty() => return Err(ConfigError::Missing(name)),
        None => default,
    };
    let url = reqwest::Url::parse(raw).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be an absolute http(s) URL".into(),
        });
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_link_settings_default_everything_and_are_off_without_a_callback_base() {
        let env = Env::from_pairs([("SETUP_CALLBACK_BASE_URL", "https://api.example.com/")]);
        let s = SetupLinkSettings::from_env(&env).unwrap();
        assert_eq!(s.platform_base_url, DEFAULT_PLATFORM_BASE_URL);
        assert_eq!(
            s.callback_base_url.as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(
            s.connection_types,
            [ConnectionType::Coexistence, ConnectionType::Dedicated]
        );
        assert!(s.countries.is_empty() && s.theme.is_none());
        let off = SetupLinkSettings::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(off.callback_base_url, None);
        assert!(
            SetupLinkSettings::from_env(&Env::from_pairs([("SETUP_CALLBACK_BASE_URL", "/x")]))
                .is_err()
        );
    }

    #[test]
    fn malformed_setup_link_defaults_fail_init_naming_the_variable() {
        for (name, value) in [
            ("SETUP_LINK_CONNECTION_TYPES", "coexistence,shared"),
            ("SETUP_LINK_COUNTRIES", "US,col"),
            ("SETUP_LINK_THEME", "[1]"),
            ("KAPSO_PLATFORM_BASE_URL", "ftp://kapso"),
        ] {
            let env = Env::from_pairs([
                ("SETUP_CALLBACK_BASE_URL", "https://api.example.com"),
                (name, value),
            ]);
            match SetupLinkSettings::from_env(&env) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_callbacks_need_an_absolute_dashboard_url() {
        assert_eq!(
            CallbackSettings::from_env(&Env::from_pairs([])).unwrap_err(),
            ConfigError::Missing("DASHBOARD_URL")
        );
        assert!(
            CallbackSettings::from_env(&Env::from_pairs([("DASHBOARD_URL", "/relative")])).is_err()
        );
        let s = CallbackSettings::from_env(&Env::from_pairs([(
            "DASHBOARD_URL",
            "https://app.example.com/",
        )]))
        .unwrap();
        assert_eq!(s.dashboard_url, "https://app.example.com");
    }
}
