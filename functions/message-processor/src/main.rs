//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use lambda_runtime::service_fn;
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::ai::LlmClient;
use shared::config::{Env, ProcessorConfig};
use shared::conversations::processor::Processor;
use shared::onboarding::project_events::ProjectEvents;
use shared::onboarding::settings::platform_base_url;
use shared::retry::RetryPolicy;
use shared::whatsapp::WhatsAppClient;

// The same allocator as webhook-ingest (see its main.rs): 9 % less CPU per record here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread, as in webhook-ingest: the conversations of a batch run concurrently on it (they wait
// on DynamoDB and WhatsApp, not on the CPU), without waking worker threads for every response.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let config = ProcessorConfig::from_env(&env)?;
    let aws = aws_config().await;
    let store = DynamoStore::new(&aws, &config.table_name);
    let secrets = secrets_cache(&aws, &config.common);
    // Kapso project webhooks (a number connected through a setup link) are confirmed with the
    // platform API and activated through onboarding's one activation path.
    let project_events = ProjectEvents {
        store: store.clone(),
        platform: KapsoPlatformClient::new(platform_base_url(&env)?, Arc::new(secrets.clone())),
    };
    let processor = Arc::new(
        Processor::new(
            store,
            WhatsAppClient::new(config.whatsapp, RetryPolicy::default()),
            LlmClient::new(),
            secrets,
            config.settings,
        )
        .with_account_events(Arc::new(project_events)),
    );
    lambda_runtime::run(service_fn(|event| {
        message_processor::handle(Arc::clone(&processor), event)
    }))
    .await
}
