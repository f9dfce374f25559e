//! Settings of the `reminders` function, read from the environment once at cold start.

use std::time::Duration;

use crate::config::{CommonConfig, ConfigError, Env, whatsapp_from_env};
use crate::reminders::run::RunSettings;

#[derive(Debug, Clone)]
pub struct RemindersConfig {
    pub common: CommonConfig,
    /// The app table (`TABLE_NAME`).
    pub table_name: String,
    pub whatsapp: crate::whatsapp::WhatsAppConfig,
    /// Resend's API root (`RESEND_BASE_URL`, default `https://api.resend.com`).
    pub resend_base_url: String,
    /// The sender of reminder emails (`EMAIL_FROM`), on a domain verified with Resend.
    pub email_from: String,
    pub settings: RunSettings,
}

impl RemindersConfig {
    /// Also `REMINDER_MAX_ATTEMPTS` (default 5) and `REMINDER_CONCURRENCY` (default 8).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = RunSettings::default();
        let whatsapp = whatsapp_from_env(env)?;
        let settings = RunSettings {
            max_attempts: env.parsed("REMINDER_MAX_ATTEMPTS", defaults.max_attempts)?,
            concurrency: env.parsed("REMINDER_CONCURRENCY", defaults.concurrency)?,
            // One send (its timeout) and its record must fit after the last claim.
            stop_claiming_before: whatsapp.request_timeout + Duration::from_secs(2),
            ..defaults
        };
        if settings.max_attempts == 0 || settings.concurrency == 0 {
            return Err(ConfigError::Invalid {
                name: "REMINDER_MAX_ATTEMPTS",
                reason: "attempts and concurrency must be at least 1".into(),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            table_name: env.required("TABLE_NAME")?.to_owned(),
            resend_base_url: env
                .optional("RESEND_BASE_URL")
                .unwrap_or(crate::adapters::resend::RESEND_BASE_URL)
                .to_owned(),
            email_from: env.required("EMAIL_FROM")?.to_owned(),
            whatsapp,
            settings,
        })
    }
}
