//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use lambda_runtime::service_fn;
use shared::adapters::{aws_config, dynamo::DynamoStore, secrets_cache};
use shared::ai::LlmClient;
use shared::config::{Env, ProcessorConfig};
use shared::conversations::processor::Processor;
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
    let config = ProcessorConfig::from_env(&Env::from_process())?;
    let aws = aws_config().await;
    let processor = Arc::new(Processor::new(
        DynamoStore::new(&aws, &config.table_name),
        WhatsAppClient::new(config.whatsapp, RetryPolicy::default()),
        LlmClient::new(),
        secrets_cache(&aws, &config.common),
        config.settings,
    ));
    lambda_runtime::run(service_fn(|event| {
        message_processor::handle(Arc::clone(&processor), event)
    }))
    .await
}
