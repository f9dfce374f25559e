//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::config::{Env, SendApiConfig};
use shared::dashboard::auth::Authenticator;
use shared::onboarding::settings::SetupLinkSettings;

// One thread: Lambda hands a process one request at a time (see webhook-ingest).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let config = SendApiConfig::from_env(&env)?;
    let setup_links = SetupLinkSettings::from_env(&env)?;
    let aws = aws_config().await;
    let secrets = Arc::new(secrets_cache(&aws, &config.common));
    let api = send_api::SendApi {
        auth: Authenticator::new(config.auth, secrets.clone()),
        store: DynamoStore::new(&aws, &config.table_name),
        onboarding: send_api::whatsapp::Onboarding {
            platform: KapsoPlatformClient::new(&setup_links.platform_base_url, secrets),
            settings: setup_links,
        },
    };
    lambda_http::run(send_api::router(Arc::new(api))).await
}
