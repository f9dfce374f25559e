//! Lambda entry point: telemetry, config, clients built once, run.

use std::sync::Arc;

use shared::adapters::{aws_config, secrets_cache, sqs::SqsQueue};
use shared::config::{Env, IngestConfig};
use shared::ingest::Ingest;
use shared::ingest::queue::RetryPolicy;

// mimalloc, not glibc's malloc: a webhook is many small, short-lived allocations (the SDK's
// request pipeline, hyper, JSON), and with mimalloc it takes 2 to 10 % less CPU (infra/bench
// --compare), for 0.6 MB more peak RSS and no slower cold start. Built without transparent huge
// pages (the workspace's `no_thp`), which would have touched 2 MiB pages: +7 MB of RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: Lambda hands a process one request at a time, and a multi-threaded runtime spends
// more CPU waking its workers (hyper's connection tasks, timers) than the request itself takes.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = IngestConfig::from_env(&Env::from_process())?;
    let aws = aws_config().await;
    let ingest = Ingest::new(
        SqsQueue::new(&aws, &config.queue_url),
        secrets_cache(&aws, &config.common),
        config.max_body_bytes,
        RetryPolicy::default(),
    );
    lambda_http::run(webhook_ingest::router(Arc::new(ingest))).await
}
