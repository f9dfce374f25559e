//! Typed configuration, read from the environment once at cold start.
//! A missing or malformed variable fails init, never a request.

use std::{collections::HashMap, time::Duration};

/// Why the environment does not make a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A view of environment variables. Tests build one from a map instead of mutating the process env.
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                }),
        }
    }
}

/// Settings every function shares.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// Name or ARN of the Secrets Manager secret holding [`crate::secrets::AppSecrets`] (`APP_SECRET_ID`).
    pub app_secret_id: String,
    /// How long fetched secrets are trusted before they are fetched again (`SECRETS_TTL_SECONDS`, default 300).
    pub secrets_ttl: Duration,
}

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            app_secret_id: env.required("APP_SECRET_ID")?.to_owned(),
            secrets_ttl: Duration::from_secs(env.parsed("SECRETS_TTL_SECONDS", 300u64)?),
        })
    }
}

/// Settings of the webhook ingest function.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub common: CommonConfig,
    /// URL of the FIFO queue envelopes go to (`EVENTS_QUEUE_URL`).
    pub queue_url: String,
    /// Largest accepted body in bytes (`MAX_BODY_BYTES`, default 4 MiB; Meta sends up to 3 MB).
    pub max_body_bytes: usize,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

impl IngestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_body_bytes = env.parsed("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes < 3 * 1024 * 1024 {
            return Err(ConfigError::Invalid {
                name: "MAX_BODY_BYTES",
                reason: "must be at least 3 MiB: Meta deliveries can reach 3 MB".into(),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            queue_url: env.required("EVENTS_QUEUE_URL")?.to_owned(),
            max_body_bytes,
        })
    }
}

/// Settings of the message processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub common: CommonConfig,
    /// The app table (`TABLE_NAME`).
    pub table_name: String,
    pub settings: crate::conversations::processor::ProcessorSettings,
    pub whatsapp: crate::whatsapp::WhatsAppConfig,
}

impl ProcessorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = crate::conversations::processor::ProcessorSettings::default();
        let seconds = |name, default: Duration| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(env.parsed(name, default.as_secs())?))
        };
        let sealion = env
            .optional("SEALION_URL")
            .or_else(|| env.optional("OLLAMA_BASE_URL"))
            .map(str::to_owned);
        let settings = crate::conversations::processor::ProcessorSettings {
            max_message_age: seconds("MAX_MESSAGE_AGE_SECONDS", defaults.max_message_age)?,
            conversation_inactivity: Duration::from_secs(
                60 * env.parsed(
                    "CONVERSATION_INACTIVITY_MINUTES",
                    defaults.conversation_inactivity.as_secs() / 60,
                )?,
            ),
            tenant_cache_ttl: seconds("TENANT_CACHE_SECONDS", defaults.tenant_cache_ttl)?,
            grok_base_url: env
                .optional("GROK_BASE_URL")
                .unwrap_or(&defaults.grok_base_url)
                .to_owned(),
            sealion_base_url: sealion,
            ..defaults
        };
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            table_name: env.required("TABLE_NAME")?.to_owned(),
            settings,
            whatsapp: whatsapp_from_env(env)?,
        })
    }
}

/// The WhatsApp API settings every sending function shares: `KAPSO_BASE_URL`,
/// `META_GRAPH_BASE_URL`, `META_GRAPH_VERSION`, `WHATSAPP_TIMEOUT_SECONDS` (default 10).
pub fn whatsapp_from_env(env: &Env) -> Result<crate::whatsapp::WhatsAppConfig, ConfigError> {
    Ok(crate::whatsapp::WhatsAppConfig {
        kapso_base_url: env
            .optional("KAPSO_BASE_URL")
            .unwrap_or("https://api.kapso.ai")
            .to_owned(),
        meta_base_url: env
            .optional("META_GRAPH_BASE_URL")
            .unwrap_or("https://graph.facebook.com")
            .to_owned(),
        graph_version: env
            .optional("META_GRAPH_VERSION")
            .unwrap_or("v24.0")
            .to_owned(),
        request_timeout: Duration::from_secs(env.parsed("WHATSAPP_TIMEOUT_SECONDS", 10u64)?),
        connect_timeout: crate::whatsapp::DEFAULT_CONNECT_TIMEOUT,
    })
}

/// Settings of the send API (the dashboard's HTTP API).
#[derive(Debug, Clone)]
pub struct SendApiConfig {
    pub common: CommonConfig,
    /// The app table (`TABLE_NAME`).
    pub table_name: String,
    pub auth: crate::dashboard::auth::AuthConfig,
    pub whatsapp: crate::whatsapp::WhatsAppConfig,
}

impl SendApiConfig {
    /// Bearer token settings: `JWT_ISSUER` and `JWT_AUDIENCE` (required), `JWT_WORKSPACE_CLAIM`
    /// (default `org_id`), `JWKS_URL` (keys from the identity provider; unset: the HS256
    /// `dashboard_jwt_secret` of the app secret), `JWT_ALGORITHMS` (comma-separated; default
    /// `RS256` with a JWKS URL, `HS256` without).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        use crate::dashboard::auth::{
            AuthConfig, DEFAULT_WORKSPACE_CLAIM, JwksSettings, KeySource,
        };
        use jsonwebtoken::{Algorithm, AlgorithmFamily};

        let keys = match env.optional("JWKS_URL") {
            Some(url) => KeySource::Jwks(JwksSettings::new(url.trim())),
            None => KeySource::AppSecret,
        };
        let default_algorithms = match keys {
            KeySource::Jwks(_) => "RS256",
            KeySource::AppSecret => "HS256",
        };
        let algorithms = env
            .optional("JWT_ALGORITHMS")
            .unwrap_or(default_algorithms)
            .split(',')
            .map(|a| {
                a.trim()
                    .parse::<Algorithm>()
                    .map_err(|_| ConfigError::Invalid {
                        name: "JWT_ALGORITHMS",
                        reason: format!("unknown algorithm {a:?}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A JWKS holds public keys and the app secret one shared key: accepting the other family
        // would let a public key be used as an HMAC secret (algorithm confusion).
        let hmac = |a: &Algorithm| a.family() == AlgorithmFamily::Hmac;
        let mismatched = match keys {
            KeySource::Jwks(_) => algorithms.iter().any(hmac),
            KeySource::AppSecret => !algorithms.iter().all(hmac),
        };
        if mismatched {
            return Err(ConfigError::Invalid {
                name: "JWT_ALGORITHMS",
                reason: "HS* algorithms go with the app secret (no JWKS_URL), RS*/ES*/PS*/EdDSA with JWKS_URL".into(),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            table_name: env.required("TABLE_NAME")?.to_owned(),
            auth: AuthConfig {
                issuer: env.required("JWT_ISSUER")?.trim().to_owned(),
                audience: env.required("JWT_AUDIENCE")?.trim().to_owned(),
                algorithms,
                workspace_claim: env
                    .optional("JWT_WORKSPACE_CLAIM")
                    .unwrap_or(DEFAULT_WORKSPACE_CLAIM)
                    .trim()
                    .to_owned(),
                keys,
            },
            whatsapp: whatsapp_from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_config_reads_required_variables_and_defaults_the_rest() {
        let env = Env::from_pairs([("APP_SECRET_ID", "app"), ("EVENTS_QUEUE_URL", "http://q")]);
        let config = IngestConfig::from_env(&env).unwrap();
        assert_eq!(config.queue_url, "http://q");
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.common.secrets_ttl, Duration::from_secs(300));
    }

    #[test]
    fn a_missing_queue_url_fails_init() {
        let env = Env::from_pairs([("APP_SECRET_ID", "app")]);
        assert_eq!(
            IngestConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("EVENTS_QUEUE_URL")
        );
    }

    #[test]
    fn a_body_limit_below_metas_maximum_is_refused() {
        let env = Env::from_pairs([
            ("APP_SECRET_ID", "app"),
            ("EVENTS_QUEUE_URL", "http://q"),
            ("MAX_BODY_BYTES", "1024"),
        ]);
        assert!(matches!(
            IngestConfig::from_env(&env),
            Err(ConfigError::Invalid {
                name: "MAX_BODY_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn processor_config_reads_sealion_from_either_variable_and_defaults_the_rest() {
        let env = Env::from_pairs([
            ("APP_SECRET_ID", "app"),
            ("TABLE_NAME", "t"),
            ("OLLAMA_BASE_URL", "http://ollama:11434/v1"),
            ("CONVERSATION_INACTIVITY_MINUTES", "30"),
        ]);
        let config = ProcessorConfig::from_env(&env).unwrap();
        assert_eq!(
            config.settings.sealion_base_url.as_deref(),
            Some("http://ollama:11434/v1")
        );
        assert_eq!(
            config.settings.conversation_inactivity,
            Duration::from_secs(1800)
        );
        assert_eq!(config.settings.max_message_age, Duration::from_secs(600));
        assert_eq!(config.whatsapp.graph_version, "v24.0");
    }

    #[test]
    fn a_non_numeric_ttl_is_invalid() {
        let env = Env::from_pairs([("APP_SECRET_ID", "app"), ("SECRETS_TTL_SECONDS", "soon")]);
        assert!(matches!(
            CommonConfig::from_env(&env),
            Err(ConfigError::Invalid {
                name: "SECRETS_TTL_SECONDS",
                ..
            })
        ));
    }

    fn send_api_env<'a>(extra: &[(&'a str, &'a str)]) -> Env {
        let mut pairs = vec![
            ("APP_SECRET_ID", "app"),
            ("TABLE_NAME", "t"),
            ("JWT_ISSUER", "https://clerk.example.com"),
            ("JWT_AUDIENCE", "send-api"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn send_api_config_without_a_jwks_url_verifies_hs256_with_the_app_secret() {
        use crate::dashboard::auth::KeySource;
        let config = SendApiConfig::from_env(&send_api_env(&[])).unwrap();
        assert_eq!(config.auth.keys, KeySource::AppSecret);
        assert_eq!(config.auth.algorithms, [jsonwebtoken::Algorithm::HS256]);
        assert_eq!(config.auth.workspace_claim, "org_id");
    }

    #[test]
    fn send_api_config_with_a_jwks_url_defaults_to_rs256_and_reads_the_claim_name() {
        use crate::dashboard::auth::KeySource;
        let env = send_api_env(&[
            (
                "JWKS_URL",
                "https://clerk.example.com/.well-known/jwks.json",
            ),
            ("JWT_WORKSPACE_CLAIM", "custom:org_id"),
        ]);
        let config = SendApiConfig::from_env(&env).unwrap();
        assert!(matches!(config.auth.keys, KeySource::Jwks(ref s) if s.url.ends_with("jwks.json")));
        assert_eq!(config.auth.algorithms, [jsonwebtoken::Algorithm::RS256]);
        assert_eq!(config.auth.workspace_claim, "custom:org_id");
    }

    #[test]
    fn send_api_config_refuses_algorithms_of_the_wrong_family_for_its_keys() {
        for extra in [
            vec![
                ("JWKS_URL", "https://idp/jwks"),
                ("JWT_ALGORITHMS", "RS256,HS256"),
            ],
            vec![("JWT_ALGORITHMS", "RS256")],
            vec![("JWT_ALGORITHMS", "none")],
        ] {
            assert!(
                matches!(
                    SendApiConfig::from_env(&send_api_env(&extra)),
                    Err(ConfigError::Invalid {
                        name: "JWT_ALGORITHMS",
                        ..
                    })
                ),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn send_api_config_requires_issuer_and_audience() {
        let env = Env::from_pairs([
            ("APP_SECRET_ID", "app"),
            ("TABLE_NAME", "t"),
            ("JWT_AUDIENCE", "a"),
        ]);
        assert_eq!(
            SendApiConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("JWT_ISSUER")
        );
    }
}
