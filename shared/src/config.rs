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
            whatsapp: crate::whatsapp::WhatsAppConfig {
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
                request_timeout: seconds("WHATSAPP_TIMEOUT_SECONDS", Duration::from_secs(10))?,
                connect_timeout: crate::whatsapp::DEFAULT_CONNECT_TIMEOUT,
            },
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
}
