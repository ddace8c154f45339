//! Prometheus metrics, rendered as text at `GET /metrics`.
//!
//! A handful of counters and one latency histogram do not justify a metrics
//! framework: one mutex-guarded table is cheap next to a request, and keeps
//! the rendered text in a stable, sorted order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Upper bounds, in seconds, of the request latency histogram.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// The process's metrics; clones share one table.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    function: String,
    started: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    counters: BTreeMap<&'static str, Family<u64>>,
    histograms: BTreeMap<&'static str, Family<Histogram>>,
}

struct Family<T> {
    help: &'static str,
    series: BTreeMap<String, T>,
}

#[derive(Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// `function` becomes the `function` label of every series.
    pub fn new(function: &str) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                function: function.to_string(),
                started: Instant::now(),
                table: Mutex::new(Table::default()),
            }),
        }
    }

    pub fn function(&self) -> &str {
        &self.inner.function
    }

    /// Adds `by` to a counter. Label values are escaped when rendered.
    pub fn inc_by(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: u64) {
        let key = self.label_key(labels);
        let mut table = self.table();
        let family = table.counters.entry(name).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        *family.series.entry(key).or_default() += by;
    }

    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) {
        self.inc_by(name, help, labels, 1);
    }

    pub fn observe(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: Duration) {
        let key = self.label_key(labels);
        let seconds = value.as_secs_f64();
        let mut table = self.table();
        let family = table.histograms.entry(name).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        let h = family.series.entry(key).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    /// The value of one counter series, for tests and the bench tool.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let key = self.label_key(labels);
        let table = self.table();
        table
            .counters
            .get(name)
            .and_then(|f| f.series.get(&key))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let table = self.table();
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP process_uptime_seconds Seconds since the process started.");
        let _ = writeln!(out, "# TYPE process_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "process_uptime_seconds{{function=\"{}\"}} {:.3}",
            escape(&self.inner.function),
            self.inner.started.elapsed().as_secs_f64()
        );
        for (name, family) in &table.counters {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, value) in &family.series {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        for (name, family) in &table.histograms {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, h) in &family.series {
                for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {:.6}", h.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
        out
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves counters that are still
        // meaningful; keep serving them.
        self.inner.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn label_key(&self, labels: &[(&str, &str)]) -> String {
        let mut key = format!("function=\"{}\"", escape(&self.inner.function));
        for (k, v) in labels {
            let _ = write!(key, ",{k}=\"{}\"", escape(v));
        }
        key
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts every request by route template (never the raw path, whose ids
/// would make the series unbounded), method and status, and times it.
pub(crate) async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics.inc(
        "http_requests_total",
        "HTTP requests by route, method and status.",
        &[("route", &route), ("method", &method), ("status", &status)],
    );
    metrics.observe(
        "http_request_duration_seconds",
        "Time to the response head, by route.",
        &[("route", &route)],
        started.elapsed(),
    );
    response
}

/// `GET /metrics`.
pub(crate) async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new("chat");
        m.inc("x_total", "An x.", &[("route", "/a\"b")]);
        m.inc_by("x_total", "An x.", &[("route", "/a\"b")], 2);
        m.observe("lat_seconds", "Latency.", &[("route", "/a")], Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("x_total{function=\"chat\",route=\"/a\\\"b\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{function=\"chat\",route=\"/a\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{function=\"chat\",route=\"/a\",le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_count{function=\"chat\",route=\"/a\"} 1"),
            "{text}"
        );
        assert_eq!(m.counter("x_total", &[("route", "/a\"b")]), 3);
    }
}
