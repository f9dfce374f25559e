//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::config::{CommonConfig, Env};
use shared::onboarding::settings::CallbackSettings;

// One thread: Lambda hands a process one request at a time (see webhook-ingest).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let common = CommonConfig::from_env(&env)?;
    let table = env.required("TABLE_NAME")?.to_owned();
    let settings = CallbackSettings::from_env(&env)?;
    let aws = aws_config().await;
    let callbacks = setup_callbacks::Callbacks {
        store: DynamoStore::new(&aws, table),
        platform: KapsoPlatformClient::new(
            &settings.platform_base_url,
            Arc::new(secrets_cache(&aws, &common)),
        ),
        dashboard_url: settings.dashboard_url,
    };
    lambda_http::run(setup_callbacks::router(Arc::new(callbacks))).await
}
