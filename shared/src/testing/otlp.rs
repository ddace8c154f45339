//! A local OTLP receiver: what a collector or Cloud Trace's OTLP endpoint
//! receives, kept for a test to read. It takes `POST /v1/traces` in
//! OTLP/HTTP's protobuf encoding, decoded with the OpenTelemetry project's
//! own message types, and answers as a collector does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use super::TestServer;

/// One exported span, as the receiver read it.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// The `service.name` of the process that exported it.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5
    /// consumer.
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
}

/// The receiver, on a loopback port; `OTEL_EXPORTER_OTLP_ENDPOINT` is its
/// `url`.
pub struct OtlpReceiver {
    pub url: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    _server: TestServer,
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

async fn export(State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>, body: Bytes) -> Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| attributes(&r.attributes).remove("service.name"))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push(ExportedSpan {
                    service: service.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    spans.lock().unwrap_or_else(|p| p.into_inner()).extend(received);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let spans: Arc<Mutex<Vec<ExportedSpan>>> = Arc::default();
        let server = TestServer::start(
            Router::new()
                .route("/v1/traces", axum::routing::post(export))
                .with_state(spans.clone()),
        )
        .await;
        OtlpReceiver {
            url: server.url.clone(),
            spans,
            _server: server,
        }
    }

    /// Every span of `trace_id` received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<ExportedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Waits (30 s at most) until the spans of `trace_id` satisfy `done`.
    pub async fn wait_for(&self, trace_id: &str, done: impl Fn(&[ExportedSpan]) -> bool) -> Vec<ExportedSpan> {
        for _ in 0..300 {
            let spans = self.trace(trace_id);
            if done(&spans) {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let spans = self.trace(trace_id);
        let names: Vec<String> = spans.iter().map(|s| format!("{}: {}", s.service, s.name)).collect();
        panic!("the spans of trace {trace_id} did not arrive in 30 s; received: {names:#?}");
    }
}
