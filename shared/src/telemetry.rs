//! Telemetry: JSON logs through `tracing`, set up once per function at cold start.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the JSON subscriber. The level comes from `RUST_LOG` (default `info`).
/// Lambda adds its own timestamps, so ours are kept for local runs only.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .with_ansi(false);
    // A second init (tests that build several handlers) keeps the first subscriber.
    if builder.try_init().is_err() {
        tracing::debug!("telemetry already initialised");
    }
}
