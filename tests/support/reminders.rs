//! The reminder runner as the `reminders` function builds it, pointed at the test's fakes, and
//! the fast run settings the reminder tests share.

use std::time::Duration;

use shared::adapters::dynamo::DynamoStore;
use shared::adapters::resend::ResendClient;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::reminders::run::{ReminderRunner, RunSettings};
use shared::retry::RetryPolicy;
use shared::secrets::SecretsCache;
use shared::whatsapp::{WhatsAppClient, WhatsAppConfig};

use crate::TestStack;

pub type Runner = ReminderRunner<DynamoStore, SecretsManagerSource, ResendClient>;

/// The WhatsApp client's connect timeout in these tests.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Settings for tests: fast backoff, a short stop-claiming margin.
pub fn fast_run_settings() -> RunSettings {
    RunSettings {
        backoff_first: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        // A send is only attempted with the client's connect timeout plus
        // `shared::whatsapp::MIN_ATTEMPT_TIME` left, after the record margin: claiming stops
        // with room for both (checked by a test in the reminders suite).
        stop_claiming_before: Duration::from_millis(600),
        record_margin: Duration::from_millis(100),
        lease_grace: Duration::from_millis(200),
        ..RunSettings::default()
    }
}

/// A runner on `store` and `stack`'s secret that sends WhatsApp messages to `whatsapp_uri` and
/// email to `resend_uri`, with `settings`.
pub fn reminder_runner(
    stack: &TestStack,
    store: DynamoStore,
    whatsapp_uri: &str,
    resend_uri: &str,
    settings: RunSettings,
) -> Runner {
    let whatsapp = WhatsAppClient::new(
        WhatsAppConfig {
            kapso_base_url: whatsapp_uri.to_owned(),
            meta_base_url: whatsapp_uri.to_owned(),
            graph_version: "v24.0".into(),
            request_timeout: Duration::from_secs(2),
            connect_timeout: CONNECT_TIMEOUT,
        },
        // No retries inside one send: the run's own retry (back to pending) is under test.
        RetryPolicy::new(0, Duration::from_millis(1), Duration::from_millis(1)),
    );
    let secrets = SecretsCache::new(
        SecretsManagerSource::new(&stack.aws, stack.secret_id()),
        Duration::from_secs(300),
    );
    let email = ResendClient::new(
        resend_uri,
        "Shop <reminders@example.com>",
        Duration::from_secs(2),
    );
    ReminderRunner::new(store, whatsapp, email, secrets, settings)
}
