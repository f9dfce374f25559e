//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use lambda_runtime::service_fn;
use shared::adapters::resend::ResendClient;
use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::config::Env;
use shared::reminders::config::RemindersConfig;
use shared::reminders::run::ReminderRunner;
use shared::retry::RetryPolicy;
use shared::whatsapp::WhatsAppClient;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let config = RemindersConfig::from_env(&Env::from_process())?;
    let aws = aws_config().await;
    let email = ResendClient::new(
        config.resend_base_url.clone(),
        config.email_from.clone(),
        config.whatsapp.request_timeout,
    );
    let runner = Arc::new(ReminderRunner::new(
        DynamoStore::new(&aws, &config.table_name),
        WhatsAppClient::new(config.whatsapp, RetryPolicy::default()),
        email,
        secrets_cache(&aws, &config.common),
        config.settings,
    ));
    lambda_runtime::run(service_fn(|event| {
        reminders::handle(Arc::clone(&runner), event)
    }))
    .await
}
