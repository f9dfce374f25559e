//! Telemetry: JSON logs through `tracing`, set up once per function at cold start.
//!
//! Every line is one flat JSON object: the event's own fields plus the fields of every span it
//! happens in. So a line logged deep inside a use case still carries the request id of the
//! invocation (the Lambda runtime's `requestId`, written `request_id`), and CloudWatch Logs
//! Insights can filter every line of one request with `filter request_id = "…"`. Spans at
//! `info` and above are recorded whatever `RUST_LOG` says, so a `warn`-only configuration still
//! knows which request a warning belongs to.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the JSON subscriber on stdout. The level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests that build several handlers) keeps the first subscriber.
    if tracing::subscriber::set_global_default(subscriber(filter, std::io::stdout)).is_err() {
        tracing::debug!("telemetry already initialised");
    }
}

/// The subscriber [`init`] installs, writing to `writer`: tests capture exactly what Lambda
/// would log by handing it a buffer.
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The request's spans (the runtime's, ours) are `info`; they are few per request, and
    // without them a line would not say which request it belongs to.
    let request_spans = filter_fn(|meta| meta.is_span() && *meta.level() <= Level::INFO);
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_filter(filter.or(request_spans));
    tracing_subscriber::registry().with(lines)
}

/// The Lambda runtime names its request id `requestId`; ours is `request_id`. One name lets one
/// query find every line of a request, whichever layer logged it.
fn field_name(name: &str) -> &str {
    match name {
        "requestId" => "request_id",
        other => other,
    }
}

/// Formats an event as one JSON line: time, level, the span fields from the outermost span in,
/// then the event's own fields (an inner value wins over an outer one of the same name).
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), Value::String(now));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().as_str().to_owned()),
        );
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                // JsonFields stores a span's fields as a JSON object in a string.
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    for (name, value) in fields {
                        line.insert(field_name(&name).to_owned(), value);
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), Value::String(name.to_owned()));
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields into the line as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field_name(field.name()).to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(cause_chain(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Instrument;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn lines(buffer: &Buffer) -> Vec<Value> {
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[tokio::test]
    async fn a_line_logged_in_a_nested_span_carries_the_fields_of_every_enclosing_span() {
        let buffer = Buffer::default();
        let _guard =
            tracing::subscriber::set_default(subscriber(EnvFilter::new("info"), buffer.clone()));
        async {
            tracing::info!("outer line");
            async {
                tracing::warn!(bytes = 70_000u64, ok = true, "inner line");
            }
            .instrument(tracing::info_span!("accept", size = 3))
            .await;
        }
        .instrument(tracing::info_span!(
            "Lambda runtime invoke",
            requestId = "req-1"
        ))
        .await;

        let lines = lines(&buffer);
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_eq!(line["request_id"], "req-1", "{line}");
            assert!(
                line.get("requestId").is_none(),
                "one name for the id: {line}"
            );
        }
        assert_eq!(lines[0]["message"], "outer line");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[1]["message"], "inner line");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["bytes"], 70_000);
        assert_eq!(lines[1]["ok"], true);
        assert_eq!(lines[1]["size"], 3);
        assert_eq!(lines[1]["span"], "accept");
    }

    #[tokio::test]
    async fn a_warning_under_a_warn_only_filter_still_carries_the_request_id() {
        let buffer = Buffer::default();
        let _guard =
            tracing::subscriber::set_default(subscriber(EnvFilter::new("warn"), buffer.clone()));
        async {
            tracing::info!("filtered out");
            tracing::warn!("kept");
        }
        .instrument(tracing::info_span!("deliver", request_id = "req-2"))
        .await;
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "kept");
        assert_eq!(lines[0]["request_id"], "req-2");
    }

    #[test]
    fn a_line_outside_any_span_is_still_one_json_object() {
        let buffer = Buffer::default();
        let _guard =
            tracing::subscriber::set_default(subscriber(EnvFilter::new("info"), buffer.clone()));
        let error = std::io::Error::other("multi\nline");
        tracing::error!(error = %error, "failed");
        let raw = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(raw.lines().count(), 1, "{raw}");
        let line: Value = serde_json::from_str(raw.trim()).unwrap();
        assert_eq!(line["error"], "multi\nline");
        assert!(line.get("request_id").is_none());
    }
}
