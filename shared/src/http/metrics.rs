//! Prometheus metrics, rendered as text at `GET /metrics`.
//!
//! A handful of counters and one latency histogram do not justify a metrics
//! framework. Every series is a few atomics in one table, kept sorted by
//! name and labels so the rendered text has a stable order. Code that counts
//! on every request registers its series once and keeps the handle
//! ([`Counter`], [`Histogram`]): a count is then an atomic add, with no lock
//! and no allocation. [`Metrics::inc`], [`Metrics::inc_by`] and
//! [`Metrics::observe`] find the series by name and labels on each call, under
//! a shared lock and without allocating once the series exists; they suit
//! code that counts rarely.
//!
//! A series is listed from its first count on (a count of 0 included),
//! however it is counted: registering a handle lists nothing.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use http::Method;
use tower_service::Service;

use super::middleware::{Middleware, ResponseFuture, respond};

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
    /// `function="NAME"`, escaped: the first label of every series.
    function_label: String,
    started: Instant,
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    counters: BTreeMap<&'static str, Family<CounterCell>>,
    histograms: BTreeMap<&'static str, Family<HistogramCell>>,
    summaries: BTreeMap<&'static str, Family<SummaryCell>>,
}

struct Family<T> {
    help: &'static str,
    /// What one count is worth when rendered: 1, or 10^-12 for a counter
    /// of dollars counted exactly in pico-dollars.
    scale: Scale,
    /// By the series' labels as rendered (`function="f",route="/x"`).
    series: BTreeMap<String, Arc<T>>,
}

impl<T> Family<T> {
    fn new(help: &'static str, scale: Scale) -> Family<T> {
        Family {
            help,
            scale,
            series: BTreeMap::new(),
        }
    }
}

/// How a counter's integer count is rendered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scale {
    Units,
    /// Counted in pico-dollars, rendered in dollars.
    PicoDollars,
}

/// Marks a series counted, so that `/metrics` lists it. Release: whoever
/// sees the mark sees the count made before it.
fn mark_counted(counted: &AtomicBool) {
    if !counted.load(Ordering::Relaxed) {
        counted.store(true, Ordering::Release);
    }
}

#[derive(Default)]
struct CounterCell {
    value: AtomicU64,
    counted: AtomicBool,
}

impl CounterCell {
    fn add(&self, by: u64) {
        self.value.fetch_add(by, Ordering::Relaxed);
        mark_counted(&self.counted);
    }
}

/// Sums and counts of observations (a Prometheus summary without
/// quantiles), for sizes such as tokens per call.
#[derive(Default)]
struct SummaryCell {
    sum: AtomicU64,
    count: AtomicU64,
    counted: AtomicBool,
}

#[derive(Default)]
struct HistogramCell {
    /// Observations per bucket: `buckets[i]` counts those above
    /// `BUCKETS[i - 1]` and at most `BUCKETS[i]` (rendered cumulated).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// The sum of the observations in seconds, as `f64` bits.
    sum: AtomicU64,
    counted: AtomicBool,
}

impl HistogramCell {
    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        // The count first and the bucket with Release, so that a render,
        // which reads the buckets (Acquire) before the count, never shows a
        // bucket above the count.
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Release);
        }
        let _ = self.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + seconds).to_bits())
        });
        mark_counted(&self.counted);
    }
}

/// A counter series, registered once with [`Metrics::register_counter`]:
/// counting is one atomic add. Clones count into the same series.
#[derive(Clone)]
pub struct Counter {
    cell: Arc<CounterCell>,
}

impl Counter {
    pub fn inc(&self) {
        self.cell.add(1);
    }

    pub fn inc_by(&self, by: u64) {
        self.cell.add(by);
    }

    /// The series' value.
    pub fn get(&self) -> u64 {
        self.cell.value.load(Ordering::Relaxed)
    }
}

/// A summary series: each observation adds to its sum and count.
/// Registered once with [`Metrics::register_summary`].
#[derive(Clone)]
pub struct Summary {
    cell: Arc<SummaryCell>,
}

impl Summary {
    pub fn observe(&self, value: u64) {
        self.cell.sum.fetch_add(value, Ordering::Relaxed);
        self.cell.count.fetch_add(1, Ordering::Relaxed);
        mark_counted(&self.cell.counted);
    }
}

/// A histogram series (the latency buckets), registered once with
/// [`Metrics::register_histogram`]: an observation is a few atomic adds.
#[derive(Clone)]
pub struct Histogram {
    cell: Arc<HistogramCell>,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        self.cell.observe(value);
    }
}

/// The series of `family` counted so far, after the family's HELP and TYPE
/// lines; nothing at all (no lines) when none was.
fn listed<'a, T>(
    out: &mut String,
    name: &str,
    kind: &str,
    family: &'a Family<T>,
    counted: fn(&T) -> &AtomicBool,
) -> Vec<(&'a String, &'a Arc<T>)> {
    let series: Vec<_> = family
        .series
        .iter()
        .filter(|(_, cell)| counted(cell).load(Ordering::Acquire))
        .collect();
    if !series.is_empty() {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
    }
    series
}

thread_local! {
    /// The labels of the series being looked up, rendered into a buffer that
    /// is reused, so that a lookup allocates nothing.
    static LABELS: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Metrics {
    /// `function` becomes the `function` label of every series.
    pub fn new(function: &str) -> Metrics {
        let mut function_label = String::from("function=\"");
        escape_into(&mut function_label, function);
        function_label.push('"');
        Metrics {
            inner: Arc::new(Inner {
                function: function.to_string(),
                function_label,
                started: Instant::now(),
                table: RwLock::new(Table::default()),
            }),
        }
    }

    pub fn function(&self) -> &str {
        &self.inner.function
    }

    /// The counter series `name{labels}`, for code that counts it often:
    /// registered (or found) once, then counted without a lock. Label values
    /// are escaped when rendered. Like every series, it is listed from its
    /// first count on.
    pub fn register_counter(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        Counter {
            cell: self.with_counter(name, help, Scale::Units, labels, Arc::clone),
        }
    }

    /// A counter of US dollars, counted exactly in pico-dollars
    /// (`Usd::pico`) and rendered in dollars.
    pub fn register_dollars(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        Counter {
            cell: self.with_counter(name, help, Scale::PicoDollars, labels, Arc::clone),
        }
    }

    /// The summary series `name{labels}` (rendered `name_sum` and
    /// `name_count`), as [`Metrics::register_counter`].
    pub fn register_summary(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Summary {
        let cell = LABELS.with_borrow_mut(|key| {
            self.write_labels(key, labels);
            let mut table = self.write();
            let family = table
                .summaries
                .entry(name)
                .or_insert_with(|| Family::new(help, Scale::Units));
            Arc::clone(family.series.entry(key.clone()).or_default())
        });
        Summary { cell }
    }

    /// The histogram series `name{labels}`, as [`Metrics::register_counter`].
    pub fn register_histogram(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Histogram {
        Histogram {
            cell: self.with_histogram(name, help, labels, Arc::clone),
        }
    }

    /// Adds `by` to a counter. Label values are escaped when rendered.
    pub fn inc_by(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: u64) {
        self.with_counter(name, help, Scale::Units, labels, |cell| cell.add(by));
    }

    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) {
        self.inc_by(name, help, labels, 1);
    }

    pub fn observe(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: Duration) {
        self.with_histogram(name, help, labels, |cell| cell.observe(value));
    }

    /// The value of one counter series, for tests and the bench tool.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        LABELS.with_borrow_mut(|key| {
            self.write_labels(key, labels);
            self.read()
                .counters
                .get(name)
                .and_then(|f| f.series.get(key.as_str()))
                .map_or(0, |cell| cell.value.load(Ordering::Relaxed))
        })
    }

    /// Runs `f` on the counter series `name{labels}`, created if new.
    fn with_counter<R>(
        &self,
        name: &'static str,
        help: &'static str,
        scale: Scale,
        labels: &[(&str, &str)],
        f: impl FnOnce(&Arc<CounterCell>) -> R,
    ) -> R {
        LABELS.with_borrow_mut(|key| {
            self.write_labels(key, labels);
            if let Some(cell) = self.read().counters.get(name).and_then(|f| f.series.get(key.as_str())) {
                return f(cell);
            }
            let mut table = self.write();
            let family = table.counters.entry(name).or_insert_with(|| Family::new(help, scale));
            f(family.series.entry(key.clone()).or_default())
        })
    }

    /// Runs `f` on the histogram series `name{labels}`, created if new.
    fn with_histogram<R>(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl FnOnce(&Arc<HistogramCell>) -> R,
    ) -> R {
        LABELS.with_borrow_mut(|key| {
            self.write_labels(key, labels);
            if let Some(cell) = self
                .read()
                .histograms
                .get(name)
                .and_then(|f| f.series.get(key.as_str()))
            {
                return f(cell);
            }
            let mut table = self.write();
            let family = table
                .histograms
                .entry(name)
                .or_insert_with(|| Family::new(help, Scale::Units));
            f(family.series.entry(key.clone()).or_default())
        })
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let table = self.read();
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP process_uptime_seconds Seconds since the process started.");
        let _ = writeln!(out, "# TYPE process_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "process_uptime_seconds{{{}}} {:.3}",
            self.inner.function_label,
            self.inner.started.elapsed().as_secs_f64()
        );
        for (name, family) in &table.counters {
            let series = listed(&mut out, name, "counter", family, |cell| &cell.counted);
            for (labels, cell) in series {
                let value = cell.value.load(Ordering::Relaxed);
                let _ = match family.scale {
                    Scale::Units => writeln!(out, "{name}{{{labels}}} {value}"),
                    Scale::PicoDollars => writeln!(out, "{name}{{{labels}}} {}", value as f64 / 1e12),
                };
            }
        }
        for (name, family) in &table.summaries {
            let series = listed(&mut out, name, "summary", family, |cell| &cell.counted);
            for (labels, cell) in series {
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", cell.sum.load(Ordering::Relaxed));
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", cell.count.load(Ordering::Relaxed));
            }
        }
        for (name, family) in &table.histograms {
            let series = listed(&mut out, name, "histogram", family, |cell| &cell.counted);
            for (labels, h) in series {
                let mut cumulative = 0;
                for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                    cumulative += bucket.load(Ordering::Acquire);
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let count = h.count.load(Ordering::Relaxed);
                let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
                let _ = writeln!(out, "{name}_sum{{{labels}}} {sum:.6}");
                let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
            }
        }
        out
    }

    // A panic while holding the lock leaves counters that are still
    // meaningful; keep serving them.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.inner.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The labels of a series as rendered: `function="f",k="v",...`.
    fn write_labels(&self, key: &mut String, labels: &[(&str, &str)]) {
        key.clear();
        key.push_str(&self.inner.function_label);
        for (k, v) in labels {
            key.push(',');
            key.push_str(k);
            key.push_str("=\"");
            escape_into(key, v);
            key.push('"');
        }
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_into(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The series every request is counted in, by route: registered at the
/// route's first request (and its first of each method and status), then
/// found under shared locks, with no allocation.
pub(crate) struct RequestSeries {
    metrics: Metrics,
    routes: RwLock<HashMap<Box<str>, RouteSeries>>,
}

struct RouteSeries {
    latency: Histogram,
    /// By method and status: a handful per route.
    requests: RwLock<Vec<(Method, u16, Counter)>>,
}

impl RouteSeries {
    fn count(&self, metrics: &Metrics, route: &str, method: &Method, status: u16) {
        let is = |(m, s, _): &&(Method, u16, Counter)| *s == status && m == method;
        if let Some((_, _, counter)) = self
            .requests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(is)
        {
            return counter.inc();
        }
        let mut requests = self.requests.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, counter)) = requests.iter().find(is) {
            return counter.inc();
        }
        let counter = metrics.register_counter(
            "http_requests_total",
            "HTTP requests by route, method and status.",
            &[
                ("route", route),
                ("method", method.as_str()),
                ("status", &status.to_string()),
            ],
        );
        counter.inc();
        requests.push((method.clone(), status, counter));
    }
}

impl RequestSeries {
    pub(crate) fn new(metrics: Metrics) -> RequestSeries {
        RequestSeries {
            metrics,
            routes: RwLock::new(HashMap::new()),
        }
    }

    /// Counts a request to `route` (its template, never the raw path, whose
    /// ids would make the series unbounded) by method and status, and its
    /// time to the response head.
    pub(crate) fn record(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        if let Some(series) = self.routes.read().unwrap_or_else(PoisonError::into_inner).get(route) {
            series.count(&self.metrics, route, method, status);
            series.latency.observe(elapsed);
            return;
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let series = routes.entry(route.into()).or_insert_with(|| RouteSeries {
            latency: self.metrics.register_histogram(
                "http_request_duration_seconds",
                "Time to the response head, by route.",
                &[("route", route)],
            ),
            requests: RwLock::new(Vec::new()),
        });
        series.count(&self.metrics, route, method, status);
        series.latency.observe(elapsed);
    }
}

/// Counts every request by route template, method and status, and times it.
#[derive(Clone)]
pub(crate) struct Track(pub(crate) Arc<RequestSeries>);

impl Middleware for Track {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let response = inner.call(request);
        let series = self.0.clone();
        Box::pin(async move {
            let response = respond(response).await;
            series.record(
                route.as_ref().map_or("unmatched", MatchedPath::as_str),
                &method,
                response.status().as_u16(),
                started.elapsed(),
            );
            response
        })
    }
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

    /// The text the table-under-a-mutex implementation rendered for the same
    /// counts, byte for byte (after the uptime line).
    const RENDERED: &str = r#"# HELP a_total A things.
# TYPE a_total counter
a_total{function="ch\"at\\fn\n"} 0
# HELP b_total B things.
# TYPE b_total counter
b_total{function="ch\"at\\fn\n",route="/a",method="GET",status="404"} 5
b_total{function="ch\"at\\fn\n",route="/a\"b",method="POST",status="200"} 2
# HELP c_total C things.
# TYPE c_total counter
c_total{function="ch\"at\\fn\n",k="v\\x\ny"} 7
# HELP b_lat_seconds Other latency.
# TYPE b_lat_seconds histogram
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.0005"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.001"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.0025"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.005"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.01"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.025"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.05"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.1"} 0
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.25"} 1
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="0.5"} 1
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="1"} 1
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="2.5"} 1
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="10"} 1
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="60"} 1
b_lat_seconds_bucket{function="ch\"at\\fn\n",le="+Inf"} 1
b_lat_seconds_sum{function="ch\"at\\fn\n"} 0.123457
b_lat_seconds_count{function="ch\"at\\fn\n"} 1
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.0005"} 0
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.001"} 0
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.0025"} 0
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.005"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.01"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.025"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.05"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.1"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.25"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="0.5"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="1"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="2.5"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="10"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="60"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/a\"b",le="+Inf"} 1
lat_seconds_sum{function="ch\"at\\fn\n",route="/a\"b"} 0.003000
lat_seconds_count{function="ch\"at\\fn\n",route="/a\"b"} 1
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.0005"} 3
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.001"} 4
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.0025"} 4
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.005"} 5
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.01"} 5
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.025"} 6
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.05"} 6
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.1"} 7
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.25"} 7
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="0.5"} 7
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="1"} 8
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="2.5"} 8
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="10"} 9
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="60"} 9
lat_seconds_bucket{function="ch\"at\\fn\n",route="/x",le="+Inf"} 10
lat_seconds_sum{function="ch\"at\\fn\n",route="/x"} 67.614210
lat_seconds_count{function="ch\"at\\fn\n",route="/x"} 10
"#;

    #[test]
    fn renders_as_before() {
        let m = Metrics::new("ch\"at\\fn\n");
        m.inc(
            "b_total",
            "B things.",
            &[("route", "/a\"b"), ("method", "POST"), ("status", "200")],
        );
        m.inc_by(
            "b_total",
            "B things.",
            &[("route", "/a"), ("method", "GET"), ("status", "404")],
            5,
        );
        m.inc_by("a_total", "A things.", &[], 0);
        m.inc_by("c_total", "C things.", &[("k", "v\\x\ny")], 7);
        m.inc(
            "b_total",
            "B things.",
            &[("route", "/a\"b"), ("method", "POST"), ("status", "200")],
        );
        for tenths_of_ms in [0u64, 1, 3, 7, 30, 200, 900, 5000, 70000, 600001] {
            m.observe(
                "lat_seconds",
                "Latency.",
                &[("route", "/x")],
                Duration::from_micros(tenths_of_ms * 100 + 1),
            );
        }
        m.observe(
            "lat_seconds",
            "Latency.",
            &[("route", "/a\"b")],
            Duration::from_millis(3),
        );
        m.observe(
            "b_lat_seconds",
            "Other latency.",
            &[],
            Duration::from_nanos(123_456_789),
        );
        let text = m.render();
        let (uptime, rest) = text.split_at(text.match_indices('\n').nth(2).map_or(0, |(i, _)| i + 1));
        assert!(
            uptime.contains("process_uptime_seconds{function=\"ch\\\"at\\\\fn\\n\"} "),
            "{uptime}"
        );
        assert_eq!(rest, RENDERED);
        assert_eq!(
            m.counter("b_total", &[("route", "/a\"b"), ("method", "POST"), ("status", "200")]),
            2
        );
        assert_eq!(m.counter("nope", &[]), 0);
    }

    #[test]
    fn handles_count_into_the_series_and_list_it_from_its_first_count() {
        let m = Metrics::new("f");
        let handle = m.register_counter("h_total", "H.", &[("k", "v")]);
        let latency = m.register_histogram("h_seconds", "H latency.", &[("k", "v")]);
        assert!(!m.render().contains("h_total"), "registered, not counted: not listed");
        assert!(!m.render().contains("h_seconds"));
        handle.inc_by(0);
        assert!(m.render().contains("h_total{function=\"f\",k=\"v\"} 0\n"));
        handle.inc();
        m.inc("h_total", "H.", &[("k", "v")]);
        assert_eq!((handle.get(), m.counter("h_total", &[("k", "v")])), (2, 2));
        assert_eq!(
            m.register_counter("h_total", "H.", &[("k", "v")]).get(),
            2,
            "the same series"
        );
        latency.observe(Duration::from_millis(2));
        m.observe("h_seconds", "H latency.", &[("k", "v")], Duration::from_millis(20));
        let text = m.render();
        assert!(
            text.contains("h_seconds_bucket{function=\"f\",k=\"v\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{function=\"f\",k=\"v\",le=\"0.025\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_count{function=\"f\",k=\"v\"} 2\n"), "{text}");
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let m = Metrics::new("f");
        let series = RequestSeries::new(m.clone());
        for status in [200, 200, 404] {
            series.record("/a", &Method::POST, status, Duration::from_millis(1));
        }
        series.record("/a", &Method::GET, 200, Duration::from_millis(1));
        series.record("unmatched", &Method::GET, 404, Duration::from_millis(1));
        let count = |route, method, status| {
            m.counter(
                "http_requests_total",
                &[("route", route), ("method", method), ("status", status)],
            )
        };
        assert_eq!(count("/a", "POST", "200"), 2);
        assert_eq!(count("/a", "POST", "404"), 1);
        assert_eq!(count("/a", "GET", "200"), 1);
        assert_eq!(count("unmatched", "GET", "404"), 1);
        let text = m.render();
        assert!(
            text.contains("http_request_duration_seconds_count{function=\"f\",route=\"/a\"} 4\n"),
            "{text}"
        );
    }
}
