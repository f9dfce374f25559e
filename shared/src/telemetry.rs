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

/// Emits a CloudWatch metric as an Embedded Metric Format log line (no API call: CloudWatch
/// extracts it from the log). Namespace `WhatsAppBackend`.
pub fn count_metric(name: &str, value: u64) {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": "WhatsAppBackend",
                "Dimensions": [[]],
                "Metrics": [{ "Name": name, "Unit": "Count" }]
            }]
        },
        name: value
    });
    println!("{line}");
}

/// An error and its sources, joined: what `error.cause_chain` log fields hold.
pub fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
