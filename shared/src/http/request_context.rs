//! Request ids and trace correlation.
//!
//! Every request gets an id (the client's `X-Request-Id` when it sent a sane
//! one) that is echoed in the response and attached to every log line of
//! the request, together with the Cloud Trace id from
//! `X-Cloud-Trace-Context` or W3C `traceparent`, so Cloud Logging groups a
//! request's lines under its trace.

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use tower_service::Service;
use tracing::Instrument;

use super::middleware::{Middleware, ResponseFuture, respond};

pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The trace a request belongs to, borrowed from its headers when they
/// already spell it as Cloud Logging wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext<'a> {
    /// 32 lowercase hex digits.
    pub trace_id: Cow<'a, str>,
    /// 16 lowercase hex digits, as Cloud Logging's `spanId` wants.
    pub span_id: Option<Cow<'a, str>>,
    /// The caller sampled it (`o=1`, or the W3C flags' sampled bit), which
    /// an exported trace keeps (see [`crate::telemetry`]).
    pub sampled: bool,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn lowercase(hex: &str) -> Cow<'_, str> {
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(hex.to_ascii_lowercase())
    } else {
        Cow::Borrowed(hex)
    }
}

/// `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` (span id in decimal).
fn cloud_trace(value: &str) -> Option<TraceContext<'_>> {
    let (trace_id, rest) = value.split_once('/').unwrap_or((value, ""));
    let trace_id = trace_id.trim();
    if !is_hex(trace_id, 32) {
        return None;
    }
    let (span, options) = rest.split_once(';').unwrap_or((rest, ""));
    let span = span.trim().parse::<u64>().ok();
    Some(TraceContext {
        trace_id: lowercase(trace_id),
        span_id: span.map(|s| Cow::Owned(format!("{s:016x}"))),
        sampled: options.trim() == "o=1",
    })
}

/// `traceparent: 00-TRACE_ID-SPAN_ID-FLAGS`.
fn traceparent(value: &str) -> Option<TraceContext<'_>> {
    let mut parts = value.trim().split('-');
    let (_version, trace_id, span_id) = (parts.next()?, parts.next()?, parts.next()?);
    if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || trace_id.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = parts.next().and_then(|f| u8::from_str_radix(f, 16).ok()).unwrap_or(0);
    Some(TraceContext {
        trace_id: lowercase(trace_id),
        span_id: Some(lowercase(span_id)),
        sampled: flags & 1 == 1,
    })
}

pub(crate) fn trace_context(headers: &HeaderMap) -> Option<TraceContext<'_>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("traceparent")
        .and_then(traceparent)
        .or_else(|| header("x-cloud-trace-context").and_then(cloud_trace))
}

/// The client's request id if it is short and printable, else a new one;
/// as the header value it is echoed in.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic))
        .cloned()
        .unwrap_or_else(|| {
            let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
            HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
}

/// Gives each request its id and span, logs how it ended, and echoes the
/// id in the response.
#[derive(Clone)]
pub(crate) struct TraceRequests;

impl Middleware for TraceRequests {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let started = Instant::now();
        let id = request_id(request.headers());
        // Every field at once: recording the trace afterwards made the JSON
        // log format parse and write the span's fields again, twice, on
        // every request Cloud Run traces (all of them).
        let exported = crate::telemetry::enabled();
        let span = if exported {
            // The exported server span, continuing the caller's trace; its
            // ids are recorded in `trace` and `span_id` for the log lines.
            // It is named by the route's template, never the raw path, whose
            // ids would make every span a name of its own (the layers run
            // after routing, so the template is known).
            let route = request.extensions().get::<axum::extract::MatchedPath>();
            let name = match route {
                Some(route) => format!("{} {}", request.method(), route.as_str()),
                None => request.method().to_string(),
            };
            let span = tracing::info_span!(
                "request",
                otel.name = name.as_str(),
                http.route = route.map(|r| r.as_str()),
                otel.kind = "server",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id.to_str().unwrap_or_default(),
                trace = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            crate::telemetry::continue_from(&span, request.headers());
            span
        } else {
            let trace = trace_context(request.headers());
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id.to_str().unwrap_or_default(),
                trace = trace.as_ref().map(|t| t.trace_id.as_ref()),
                span_id = trace.as_ref().and_then(|t| t.span_id.as_deref()),
            )
        };
        // The layers and the handler below run in the request's span, their
        // synchronous part included.
        let response = span.in_scope(|| inner.call(request));
        Box::pin(async move {
            let mut response = respond(response).instrument(span.clone()).await;
            let status = response.status().as_u16();
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            if exported {
                crate::telemetry::attribute(&span, "http.response.status_code", i64::from(status));
                if status >= 500 {
                    crate::telemetry::failed(&span, &status.to_string());
                }
            }
            span.in_scope(|| {
                // Cloud Run already logs every request; ours add the request id and
                // matter most when something failed.
                if status >= 500 {
                    tracing::warn!(status, latency_ms, "request failed");
                } else {
                    tracing::debug!(status, latency_ms, "request finished");
                }
            });
            response.headers_mut().insert(REQUEST_ID, id);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_trace_headers() {
        let t = cloud_trace("105445aa7843bc8bf206b12000100000/1;o=1").expect("cloud trace");
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("0000000000000001"));
        assert!(t.sampled);
        assert!(
            !cloud_trace("105445aa7843bc8bf206b12000100000/1;o=0")
                .expect("cloud trace")
                .sampled
        );
        let t = traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").expect("w3c");
        assert_eq!(t.span_id.as_deref(), Some("b7ad6b7169203331"));
        assert!(t.sampled);
        assert!(
            !traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
                .expect("w3c")
                .sampled
        );
        assert!(cloud_trace("nothex/1").is_none());
        assert!(traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none());
    }

    #[test]
    fn request_ids_are_the_clients_when_sane_else_new() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-1_X"));
        assert_eq!(request_id(&headers), "abc-1_X");
        for bad in ["a b", "", "\u{e9}t\u{e9}", &"x".repeat(129)] {
            headers.insert(REQUEST_ID, HeaderValue::from_str(bad).expect("a header value"));
            let id = request_id(&headers);
            let id = id.to_str().expect("ascii");
            assert!(
                uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4),
                "{bad:?} -> {id}"
            );
            assert_eq!(id, id.to_ascii_lowercase());
        }
        headers.remove(REQUEST_ID);
        assert_ne!(request_id(&headers), request_id(&headers));
    }
}
