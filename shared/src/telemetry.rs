//! Traces: every request, model call, tool call, store call and queued hop
//! as an OpenTelemetry span, exported over OTLP when the standard
//! `OTEL_EXPORTER_OTLP_*` settings name an endpoint, and free otherwise.
//!
//! The spans are tracing's own: the request span of the HTTP layer, and
//! `DEBUG` spans around model calls (with the GenAI semantic conventions),
//! tool calls, store calls and the queue. Without an endpoint nothing is
//! installed but the log layer, whose filter (`RUST_LOG`, `info` by
//! default) turns the `DEBUG` spans off where they are written: they cost
//! a check of a cached flag. With one, `layer` gives them to
//! `tracing-opentelemetry`, whose spans a batch processor exports from a
//! thread of its own, off the request path.
//!
//! A trace crosses functions: a request continues the caller's W3C
//! `traceparent` (or Cloud Run's `X-Cloud-Trace-Context`), and what a
//! function calls carries its own span on: [`inject`] adds `traceparent` to
//! the requests to remote tools, MCP servers and A2A agents, and
//! [`attributes`] to a Pub/Sub message, which the worker continues with
//! [`continue_from_message`]. One agent run is one trace, from the
//! agent function through the queue to the worker and the tool functions.
//!
//! The log lines keep their trace: with export on, the request span's
//! `trace` and `span_id` fields are the exported ids (a request that came
//! without a trace starts one), so Cloud Logging shows a trace's lines
//! beside its spans.

use std::sync::OnceLock;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::TraceExport;

/// The provider while traces are exported; unset, every function here does
/// nothing.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The Pub/Sub attribute a message's trace travels in: the name Google's
/// Pub/Sub client libraries use, so their subscribers continue it too.
pub const PUBSUB_ATTRIBUTE: &str = "googclient_traceparent";

/// Whether spans are exported (an OTLP endpoint is set).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// The tracing layer that turns spans into OpenTelemetry spans, exporting
/// them over OTLP/HTTP to `export` (its endpoint and headers), with the
/// timeout, the sampler (`OTEL_TRACES_SAMPLER`) and the batch settings
/// (`OTEL_BSP_*`) as the OpenTelemetry SDK reads them. `service` names the
/// function unless `OTEL_SERVICE_NAME` does. Spans down to `DEBUG` are
/// exported, and log events from `WARN` up as events of their span.
pub(crate) fn layer<S>(service: &'static str, export: &TraceExport) -> Result<impl Layer<S>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(export.endpoint.clone())
        .with_headers(export.headers.iter().cloned().collect())
        .build()
        .map_err(|err| format!("cannot export traces over OTLP (OTEL_EXPORTER_OTLP_*): {err}"))?;
    let mut resource =
        opentelemetry_sdk::Resource::builder().with_attribute(KeyValue::new("service.version", crate::http::VERSION));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("serverless-agent");
    // A second start in one process (tests) keeps the first provider.
    let _ = PROVIDER.set(provider);
    let filter = tracing_subscriber::filter::filter_fn(|meta| {
        if meta.is_span() {
            *meta.level() <= tracing::Level::DEBUG
        } else {
            *meta.level() <= tracing::Level::WARN
        }
    });
    Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_filter(filter))
}

/// Exports what is left and stops exporting: at the end of the drain, so
/// the spans of the last requests are not lost with the process.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(err) = provider.force_flush() {
            tracing::warn!("traces not all exported at shutdown: {err}");
        }
        let _ = provider.shutdown();
    }
}

/// Exports the spans ended so far, now: where a process may be frozen
/// between requests (AWS Lambda), so a batch does not wait for the next
/// one.
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.force_flush()
    {
        tracing::debug!("traces not exported: {err}");
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// A message's one trace attribute, read as `traceparent`.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The trace a request continues: W3C `traceparent` (with `tracestate`)
/// through the propagator, else Cloud Run's `X-Cloud-Trace-Context` as the
/// request context reads it for the log lines.
fn parent(headers: &HeaderMap) -> Option<Context> {
    let propagated = TraceContextPropagator::new().extract(&Headers(headers));
    if propagated.span().span_context().is_valid() {
        return Some(propagated);
    }
    let trace = crate::http::request_context::trace_context(headers)?;
    let trace_id = TraceId::from_hex(&trace.trace_id)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(trace.span_id.as_deref()?).ok()?;
    let flags = if trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    Some(Context::new().with_remote_span_context(context))
}

/// Makes `span` (not yet entered) continue the trace of `headers`: W3C
/// `traceparent` (with `tracestate`), else `X-Cloud-Trace-Context`; without
/// either it starts a trace. Then records the span's own ids in its
/// `trace` and `span_id` fields, for the log lines.
pub(crate) fn continue_from(span: &Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    if let Some(parent) = parent(headers) {
        let _ = span.set_parent(parent);
    }
    record_ids(span);
}

/// As `continue_from` does for a request, from the trace a queued message carries (a
/// Pub/Sub message's `googclient_traceparent`): the queued hop's consumer
/// continues the producer's span.
pub fn continue_from_message(span: &Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(traceparent) = traceparent {
        let parent = TraceContextPropagator::new().extract(&Traceparent(traceparent));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    record_ids(span);
}

fn record_ids(span: &Span) {
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// Adds the current span's `traceparent` (and `tracestate`) to a request
/// this function makes to another service of the run.
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut HeadersMut(headers));
}

/// `request` with the current span's `traceparent`, for a call to another
/// service of the run (a remote tool, an A2A agent).
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if !enabled() {
        return request;
    }
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    request.headers(headers)
}

/// The current span's `traceparent`, for a protocol that carries it in its
/// messages (MCP's `params._meta`, as OpenTelemetry's MCP conventions put
/// it), since an SDK may send the request from a task of its own.
pub fn traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The current span's trace, as the attributes of a Pub/Sub message.
pub fn attributes() -> Vec<(&'static str, String)> {
    if !enabled() {
        return Vec::new();
    }
    traceparent().map(|v| vec![(PUBSUB_ATTRIBUTE, v)]).unwrap_or_default()
}

/// Marks `span` failed, with `error.type`, as the conventions name a
/// failed operation.
pub fn failed(span: &Span, kind: &str) {
    if enabled() {
        span.set_attribute("error.type", kind.to_string());
        span.set_status(opentelemetry::trace::Status::error(kind.to_string()));
    }
}

/// Sets an attribute of `span` that only the exported span needs (not the
/// log lines): a status code, a count.
pub fn attribute(span: &Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if enabled() {
        span.set_attribute(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent_of(name: &'static str, value: &'static str) -> Option<SpanContext> {
        let mut headers = HeaderMap::new();
        headers.insert(name, http::HeaderValue::from_static(value));
        parent(&headers).map(|cx| cx.span().span_context().clone())
    }

    #[test]
    fn either_trace_header_becomes_a_remote_parent() {
        let ids = parent_of("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=1").expect("valid");
        assert_eq!(ids.trace_id().to_string(), "105445aa7843bc8bf206b12000100000");
        assert_eq!(ids.span_id().to_string(), "0000000000000001");
        assert!(ids.is_sampled() && ids.is_remote());
        let unsampled = parent_of("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=0").expect("valid");
        assert!(!unsampled.is_sampled());
        let ids = parent_of("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").expect("w3c");
        assert_eq!(ids.span_id().to_string(), "b7ad6b7169203331");
        assert!(ids.is_sampled() && ids.is_remote());
        for bad in [
            "",
            "xyz/1",
            "105445aa7843bc8bf206b12000100000",
            "00000000000000000000000000000000/1;o=1",
            "105445aa7843bc8bf206b12000100000/abc",
        ] {
            assert!(parent_of("x-cloud-trace-context", bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_endpoint_nothing_is_sent_on() {
        assert!(!enabled());
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
        assert!(attributes().is_empty());
    }
}
