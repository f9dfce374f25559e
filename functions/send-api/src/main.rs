//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::config::{Env, SendApiConfig};
use shared::dashboard::auth::Authenticator;

// One thread: Lambda hands a process one request at a time (see webhook-ingest).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = SendApiConfig::from_env(&Env::from_process())?;
    let aws = aws_config().await;
    let api = send_api::SendApi {
        auth: Authenticator::new(config.auth, Arc::new(secrets_cache(&aws, &config.common))),
        store: DynamoStore::new(&aws, &config.table_name),
    };
    lambda_http::run(send_api::router(Arc::new(api))).await
}
