//! The message processor function: turns an SQS event into a batch for the processor use case
//! and its failures into an `SqsBatchResponse` (with `ReportBatchItemFailures`).

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use shared::conversations::processor::{Processor, QueueRecord};
use shared::conversations::store::ProcessorStore;
use shared::deadline::deadline_of;
use shared::secrets::SecretSource;

/// Handles one SQS event. It never fails as a whole: failures are per record.
pub async fn handle<S, X>(
    processor: Arc<Processor<S, X>>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error>
where
    S: ProcessorStore,
    X: SecretSource,
{
    let deadline = deadline_of(event.context.deadline);
    tracing::debug!(deadline_ms = event.context.deadline, "invocation deadline");
    let records = event
        .payload
        .records
        .into_iter()
        .map(|r| QueueRecord {
            group_id: r.attributes.get("MessageGroupId").cloned(),
            message_id: r.message_id.unwrap_or_default(),
            body: r.body.unwrap_or_default(),
        })
        .collect();
    let failed = processor.process_batch(records, deadline).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    Ok(response)
}
