//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;
use std::time::Duration;

use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::config::{Env, SendApiConfig};
use shared::onboarding::settings::SetupLinkSettings;
use shared::retry::RetryPolicy;
use shared::whatsapp::WhatsAppClient;

// One thread: Lambda hands a process one request at a time (see webhook-ingest).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let config = SendApiConfig::from_env(&env)?;
    let setup_links = SetupLinkSettings::from_env(&env)?;
    let aws = aws_config().await;
    let secrets = Arc::new(secrets_cache(&aws, &config.common));
    let onboarding = send_api::whatsapp::Onboarding {
        platform: KapsoPlatformClient::new(&setup_links.platform_base_url, Arc::clone(&secrets)),
        settings: setup_links,
    };
    let api = send_api::SendApi::new(
        config.auth,
        secrets,
        // One quick retry at most: a person is waiting for the answer.
        WhatsAppClient::new(
            config.whatsapp,
            RetryPolicy::new(1, Duration::from_millis(200), Duration::from_millis(500)),
        ),
        DynamoStore::new(&aws, &config.table_name),
        onboarding,
    );
    lambda_http::run(send_api::router(Arc::new(api))).await
}
