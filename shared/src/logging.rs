//! Logs: JSON lines for Cloud Logging, or pretty lines for a terminal.
//!
//! Cloud Logging reads `severity` and `message` from a JSON line, and groups
//! lines under a trace when they carry `logging.googleapis.com/trace` as
//! `projects/PROJECT/traces/TRACE_ID`. tracing-subscriber's JSON format
//! writes `level` and nests span fields, so this module formats the line
//! itself, flattening the request span's fields (request id, trace) into it.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogFormat, TraceExport};

/// Installs the global subscriber. `RUST_LOG` filters the log lines
/// (default `info`), from the environment or the `.env` file, which tracing
/// would not read. `project` turns trace ids into the resource names Cloud
/// Logging expects. With `traces_of` (the function's name and where to
/// export, when an OTLP endpoint is set) spans are exported too (see
/// [`crate::telemetry`]); each layer has its own filter, so the spans
/// exported never widen what is logged, and without export the `DEBUG`
/// spans stay off.
pub(crate) fn init(
    format: LogFormat,
    project: Option<String>,
    traces_of: Option<(&'static str, &TraceExport)>,
) -> Result<(), String> {
    use tracing_subscriber::prelude::*;

    let filter = crate::config::dotenv::var("RUST_LOG")
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging { project })
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_target(false).boxed(),
    }
    .with_filter(filter);
    let traces = traces_of
        .map(|(service, export)| crate::telemetry::layer(service, export))
        .transpose()?;
    // A second init (tests, `local` building several functions) keeps the first.
    drop(tracing_subscriber::registry().with(logs).with(traces).try_init());
    Ok(())
}

pub(crate) struct CloudLogging {
    pub project: Option<String>,
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = Map::new();
        line.insert("severity".into(), severity(event.metadata().level()).into());
        line.insert(
            "time".into(),
            crate::store::rfc3339(std::time::SystemTime::now()).into(),
        );
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields.as_str())
                {
                    // `otel.*` fields name and kind the exported span; a log
                    // line has no use for them.
                    line.extend(map.into_iter().filter(|(k, _)| !k.starts_with("otel.")));
                }
            }
        }
        event.record(&mut Fields(&mut line));
        line.insert("target".into(), event.metadata().target().into());
        if let Some(Value::String(trace)) = line.remove("trace") {
            let trace = match &self.project {
                Some(p) => format!("projects/{p}/traces/{trace}"),
                None => trace,
            };
            line.insert("logging.googleapis.com/trace".into(), trace.into());
        }
        if let Some(span_id) = line.remove("span_id") {
            line.insert("logging.googleapis.com/spanId".into(), span_id);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}
