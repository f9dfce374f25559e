//! The reminders function: one EventBridge scheduled event is one run of the reminders use
//! case, until shortly before the invocation's deadline.

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::conversations::store::TenantStore;
use shared::deadline::deadline_of;
use shared::reminders::email::EmailSender;
use shared::reminders::run::{ReminderRunner, RunSummary};
use shared::reminders::store::ReminderQueue;
use shared::secrets::SecretSource;

/// A run that could not read or write some reminders.
#[derive(Debug, thiserror::Error)]
#[error("{errors} reminder reads or writes failed; the rest were handled (run {run_id})")]
pub struct Incomplete {
    pub run_id: String,
    pub errors: u32,
}

/// Handles one scheduled event. A run with store errors fails, so the schedule's retry policy
/// runs it again: claims make a repeated run send nothing twice.
#[tracing::instrument(skip_all, fields(event_id = event.payload.id.as_deref().unwrap_or_default()))]
pub async fn handle<S, X, E>(
    runner: Arc<ReminderRunner<S, X, E>>,
    event: LambdaEvent<EventBridgeEvent<Value>>,
) -> Result<RunSummary, lambda_runtime::Error>
where
    S: ReminderQueue + TenantStore,
    X: SecretSource,
    E: EmailSender,
{
    let deadline = deadline_of(event.context.deadline);
    let summary = runner.run(deadline).await;
    if summary.errors > 0 {
        return Err(Box::new(Incomplete {
            run_id: summary.run_id,
            errors: summary.errors,
        }));
    }
    Ok(summary)
}
