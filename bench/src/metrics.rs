//! The store's counts from a function's `GET /metrics`
//! (`store_operations_total` and `store_documents_total`, see the README;
//! `store_history_fallbacks_total` where the function has it), read before
//! and after a run, so that what one request asks of the store can be read
//! off; and any other counter by name (`counter`), e.g. the worker's count
//! of finished tasks.

/// Each series reported: its name, what the report calls it, the label
/// that tells its counters apart (none: one counter a store).
const SERIES: [(&str, &str, Option<&str>); 3] = [
    ("store_operations_total", "store calls", Some("op")),
    ("store_documents_total", "documents", Some("kind")),
    ("store_history_fallbacks_total", "history fallbacks", None),
];

/// The response cache's lookups, reported beside the store's counters.
const CACHE_LOOKUPS: &str = "response_cache_lookups_total";

/// The store calls in the order `describe` lists them (Firestore's, as
/// `shared/src/store/firestore/counts.rs` names them; SQLite's `read` and
/// `write` fall in too); others after.
const CALL_ORDER: [&str; 6] = ["get", "query", "begin_transaction", "commit", "write", "read"];

/// One counter: its metric name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The store's counters in a Prometheus text exposition, in its order.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    samples(text)
        .into_iter()
        .filter(|s| SERIES.iter().any(|(series, _, _)| *series == s.name) || s.name == CACHE_LOOKUPS)
        .collect()
}

/// The sum of the counters named `name` whose labels include `labels`
/// (e.g. `worker_tasks_total` with `outcome="completed"`): 0 when none.
pub(crate) fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// Every sample of a Prometheus text exposition, in its order.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            // Label values here are words (`firestore`, `get`): no quotes or
            // commas inside them to unescape.
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// `GET /metrics` of the server at `base`: the store's counters.
pub(crate) async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<Sample>> {
    Ok(parse(&scrape_text(http, base).await?))
}

/// `GET /metrics` of the server at `base`, as text.
pub(crate) async fn scrape_text(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = http.get(format!("{base}/metrics")).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET /metrics answered {}",
        response.status()
    );
    Ok(response.text().await?)
}

/// What a stretch of requests asked of the store: each store counter's
/// increase (store calls by `op`, documents by `kind`, history fallbacks).
/// Counts are whole numbers, so
/// costs compare exactly; sums, differences and averages of them are what
/// `bench costs` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Cost {
    /// (series, store, the label that tells the series' counters apart, or
    /// "" for none) and the increase.
    counters: Vec<((&'static str, String, String), f64)>,
}

impl Cost {
    /// The increase of each store counter from `before` to `after`.
    pub(crate) fn between(before: &[Sample], after: &[Sample]) -> Cost {
        let mut cost = Cost::default();
        for sample in after {
            let Some((series, _, key)) = SERIES.iter().find(|(series, _, _)| *series == sample.name) else {
                continue;
            };
            let was = before
                .iter()
                .find(|b| b.name == sample.name && b.labels == sample.labels)
                .map_or(0.0, |b| b.value);
            let store = sample.label("store").unwrap_or("?").to_string();
            let which = key.and_then(|k| sample.label(k)).unwrap_or_default().to_string();
            cost.add((series, store, which), sample.value - was);
        }
        cost
    }

    /// A count of 1 on one counter: `series` (one of the store's), `store`,
    /// and its `op` or `kind`.
    pub(crate) fn one(series: &str, store: &str, which: &str) -> Cost {
        let mut cost = Cost::default();
        if let Some((series, _, _)) = SERIES.iter().find(|(s, _, _)| *s == series) {
            cost.add((series, store.to_string(), which.to_string()), 1.0);
        }
        cost
    }

    fn add(&mut self, key: (&'static str, String, String), value: f64) {
        match self.counters.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += value,
            None => self.counters.push((key, value)),
        }
    }

    /// `self + factor * other`, counter by counter.
    pub(crate) fn plus(&self, factor: f64, other: &Cost) -> Cost {
        let mut sum = self.clone();
        for (key, value) in &other.counters {
            sum.add(key.clone(), factor * value);
        }
        sum
    }

    /// Each counter multiplied by `factor` (an average: 1 / operations).
    pub(crate) fn scaled(&self, factor: f64) -> Cost {
        Cost::default().plus(factor, self)
    }

    /// One line: store calls that are not zero, both document counts, and
    /// history fallbacks where the function counts them, e.g. `get 1.00,
    /// commit 2.00; documents read 1.00, written 4.00; history fallbacks
    /// 0.00`; a store's name first when there are several.
    pub(crate) fn describe(&self) -> String {
        // `+ 0.0` turns a -0.00 (a difference of equal counts) into 0.00.
        let number = |v: f64| format!("{:.2}", v + 0.0);
        let mut stores: Vec<&str> = Vec::new();
        for ((_, store, _), _) in &self.counters {
            if !stores.contains(&store.as_str()) {
                stores.push(store);
            }
        }
        let per_store: Vec<String> = stores
            .iter()
            .map(|store| {
                let of = |series: &'static str| {
                    self.counters
                        .iter()
                        .filter(move |((s, st, _), _)| *s == series && st == store)
                        .map(|((_, _, which), v)| (which.as_str(), *v))
                };
                let mut calls: Vec<(&str, f64)> = of(SERIES[0].0).filter(|(_, v)| v.abs() > 1e-9).collect();
                // In the order of a request's life, whatever the function's.
                calls.sort_by_key(|(op, _)| CALL_ORDER.iter().position(|o| o == op).unwrap_or(CALL_ORDER.len()));
                let calls: Vec<String> = calls.iter().map(|(op, v)| format!("{op} {}", number(*v))).collect();
                let mut parts = vec![if calls.is_empty() {
                    "no store calls".to_string()
                } else {
                    calls.join(", ")
                }];
                let documents: Vec<String> = of(SERIES[1].0)
                    .map(|(kind, v)| format!("{kind} {}", number(v)))
                    .collect();
                if !documents.is_empty() {
                    parts.push(format!("documents {}", documents.join(", ")));
                }
                if let Some((_, v)) = of(SERIES[2].0).next() {
                    parts.push(format!("history fallbacks {}", number(v)));
                }
                let line = parts.join("; ");
                if stores.len() > 1 {
                    format!("{store}: {line}")
                } else {
                    line
                }
            })
            .collect();
        if per_store.is_empty() {
            return "no store counters".to_string();
        }
        per_store.join(" | ")
    }
}

/// Report lines: each counter's increase from `before` to `after` divided
/// by `requests`, store calls on one line, documents on the next, e.g.
/// `firestore get 1.00, query 1.00, begin_transaction 1.00, commit 1.00`.
pub(crate) fn per_request(before: &[Sample], after: &[Sample], requests: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if requests == 0 {
        return lines;
    }
    for (name, what, key) in SERIES {
        // Grouped by store, in the order the function lists its series.
        let mut stores: Vec<(&str, Vec<String>)> = Vec::new();
        for sample in after.iter().filter(|s| s.name == name) {
            let was = before
                .iter()
                .find(|b| b.name == sample.name && b.labels == sample.labels)
                .map_or(0.0, |b| b.value);
            let store = sample.label("store").unwrap_or("?");
            let increase = (sample.value - was) / requests as f64;
            let part = match key {
                Some(key) => format!("{} {increase:.2}", sample.label(key).unwrap_or("?")),
                None => format!("{increase:.2}"),
            };
            match stores.iter_mut().find(|(s, _)| *s == store) {
                Some((_, parts)) => parts.push(part),
                None => stores.push((store, vec![part])),
            }
        }
        if !stores.is_empty() {
            let stores: Vec<String> = stores
                .iter()
                .map(|(s, parts)| format!("{s} {}", parts.join(", ")))
                .collect();
            lines.push(format!("{what} per request ({name}): {}", stores.join("; ")));
        }
    }
    lines
}

/// The response cache's lookups per request, by tier and result
/// (`response_cache_lookups_total`), when the function counted any.
pub(crate) fn cache_per_request(before: &[Sample], after: &[Sample], requests: usize) -> Option<String> {
    const NAME: &str = CACHE_LOOKUPS;
    let parts: Vec<String> = after
        .iter()
        .filter(|s| s.name == NAME && requests > 0)
        .map(|sample| {
            let was = before
                .iter()
                .find(|b| b.name == sample.name && b.labels == sample.labels)
                .map_or(0.0, |b| b.value);
            format!(
                "{} {} {:.2}",
                sample.label("tier").unwrap_or("?"),
                sample.label("result").unwrap_or("?"),
                (sample.value - was) / requests as f64
            )
        })
        .collect();
    (!parts.is_empty()).then(|| format!("response cache per request ({NAME}): {}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP store_operations_total Calls.\n\
        # TYPE store_operations_total counter\n\
        store_operations_total{function=\"chat\",store=\"firestore\",op=\"get\"} 1\n\
        store_operations_total{function=\"chat\",store=\"firestore\",op=\"commit\"} 0\n\
        store_documents_total{function=\"chat\",store=\"firestore\",kind=\"read\"} 0\n\
        store_history_fallbacks_total{function=\"chat\",store=\"firestore\"} 0\n\
        http_requests_total{function=\"chat\",route=\"/health\",method=\"GET\",status=\"200\"} 3\n";

    const AFTER: &str = "store_operations_total{function=\"chat\",store=\"firestore\",op=\"get\"} 11\n\
        store_operations_total{function=\"chat\",store=\"firestore\",op=\"commit\"} 20\n\
        store_documents_total{function=\"chat\",store=\"firestore\",kind=\"read\"} 215\n\
        store_history_fallbacks_total{function=\"chat\",store=\"firestore\"} 1\n";

    #[test]
    fn only_the_store_counters_are_kept() {
        let samples = parse(BEFORE);
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].label("op"), Some("get"));
        assert_eq!(samples[0].value, 1.0);
    }

    #[test]
    fn a_cost_is_the_increase_of_each_counter() {
        let cost = Cost::between(&parse(BEFORE), &parse(AFTER));
        assert_eq!(
            cost.describe(),
            "get 10.00, commit 20.00; documents read 215.00; history fallbacks 1.00"
        );
        assert_eq!(
            cost.scaled(0.1).describe(),
            "get 1.00, commit 2.00; documents read 21.50; history fallbacks 0.10"
        );
        let none = cost.plus(-1.0, &cost);
        assert_eq!(
            none.describe(),
            "no store calls; documents read 0.00; history fallbacks 0.00"
        );
        assert_ne!(none, cost);
        assert_eq!(Cost::default().describe(), "no store counters");
        // Calls in a fixed order, whatever the function's.
        let reversed = "store_operations_total{store=\"firestore\",op=\"commit\"} 2\n\
            store_operations_total{store=\"firestore\",op=\"get\"} 1\n";
        assert_eq!(
            Cost::between(&[], &parse(reversed))
                .plus(1.0, &Cost::one("store_operations_total", "firestore", "write"))
                .describe(),
            "get 1.00, commit 2.00, write 1.00"
        );
    }

    #[test]
    fn other_counters_are_read_by_name_and_labels() {
        let text = "worker_tasks_total{function=\"agent\",outcome=\"claimed\"} 3\n\
            worker_tasks_total{function=\"agent\",outcome=\"completed\"} 2\n";
        assert_eq!(counter(text, "worker_tasks_total", &[("outcome", "completed")]), 2.0);
        assert_eq!(counter(text, "worker_tasks_total", &[]), 5.0);
        assert_eq!(counter(text, "worker_tasks_total", &[("outcome", "failed")]), 0.0);
    }

    #[test]
    fn increases_are_divided_by_the_requests() {
        let lines = per_request(&parse(BEFORE), &parse(AFTER), 10);
        assert_eq!(
            lines,
            [
                "store calls per request (store_operations_total): firestore get 1.00, commit 2.00",
                "documents per request (store_documents_total): firestore read 21.50",
                "history fallbacks per request (store_history_fallbacks_total): firestore 0.10",
            ]
        );
    }
}
