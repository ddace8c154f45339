//! The store's counts from a function's `GET /metrics`
//! (`store_operations_total` and `store_documents_total`, see the README;
//! `store_history_fallbacks_total` where the function has it), read before
//! and after a run, so that what one request asks of the store can be read
//! off.

/// Each series reported: its name, what the report calls it, the label
/// that tells its counters apart (none: one counter a store).
const SERIES: [(&str, &str, Option<&str>); 3] = [
    ("store_operations_total", "store calls", Some("op")),
    ("store_documents_total", "documents", Some("kind")),
    ("store_history_fallbacks_total", "history fallbacks", None),
];

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
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if !SERIES.iter().any(|(series, _, _)| *series == name) {
                return None;
            }
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
    let response = http.get(format!("{base}/metrics")).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET /metrics answered {}",
        response.status()
    );
    Ok(parse(&response.text().await?))
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
