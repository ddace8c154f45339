//! The sources a research's searches returned, numbered, and the report's
//! citations of them.
//!
//! Sources are numbered once every researcher has finished, in subtopic
//! order and then in the order each researcher's searches returned them,
//! so the same research numbers them the same way however its researchers
//! interleaved. A source found twice keeps its first number.

use serde::{Deserialize, Serialize};

use crate::agent::Step;
use crate::tools::search::TOOL_NAME as SEARCH;

/// One search result, as the report cites it: `[id]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Source {
    /// From 1, in the order found.
    pub id: usize,
    pub title: String,
    /// Where it comes from (a document and section of the corpus).
    pub source: String,
    pub snippet: String,
}

/// The sources found so far.
#[derive(Debug, Default)]
pub struct Sources(Vec<Source>);

impl Sources {
    /// Numbers the results of `steps`' searches: the ids of the sources
    /// they returned, in order, each once.
    pub fn add(&mut self, steps: &[Step]) -> Vec<usize> {
        let mut ids = Vec::new();
        let results = steps
            .iter()
            .filter(|step| step.tool == SEARCH && step.error.is_none())
            .filter_map(|step| step.result["results"].as_array())
            .flatten();
        for result in results {
            let text = |field: &str| result[field].as_str().unwrap_or_default().to_string();
            let (title, source) = (text("title"), text("source"));
            if title.is_empty() && source.is_empty() {
                continue;
            }
            let id = match self.0.iter().find(|s| s.title == title && s.source == source) {
                Some(known) => known.id,
                None => {
                    let id = self.0.len() + 1;
                    self.0.push(Source {
                        id,
                        title,
                        source,
                        snippet: text("snippet"),
                    });
                    id
                }
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    pub fn all(&self) -> &[Source] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Source> {
        self.0
    }
}

/// The citations in `report`: every number in `[n]` or `[n, m]`, in order
/// of first appearance, each once.
pub fn citations(report: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (inside, _) in brackets(report) {
        for n in inside {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// `report` without citations of sources that do not exist (0, or over
/// `known`): a bracket citing only such numbers is taken out, one citing
/// some keeps the others. The report cites nothing the searches did not
/// return.
pub fn keep_known(report: &str, known: usize) -> String {
    let mut out = String::with_capacity(report.len());
    let mut last = 0;
    for (numbers, range) in brackets(report) {
        out.push_str(&report[last..range.start]);
        let kept: Vec<String> = numbers
            .iter()
            .filter(|n| (1..=known).contains(*n))
            .map(|n| n.to_string())
            .collect();
        if !kept.is_empty() {
            out.push('[');
            out.push_str(&kept.join(", "));
            out.push(']');
        }
        last = range.end;
    }
    out.push_str(&report[last..]);
    out
}

/// Every `[n]` or `[n, m, ...]` in `text`: its numbers and its byte range.
/// A bracket holding anything else (a link's text, `[x]`) is not a citation.
fn brackets(text: &str) -> Vec<(Vec<usize>, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('[').map(|i| from + i) {
        let Some(close) = text[open..].find(']').map(|i| open + i) else {
            break;
        };
        let inside = &text[open + 1..close];
        let numbers: Option<Vec<usize>> = inside.split(',').map(|n| n.trim().parse().ok()).collect();
        match numbers {
            Some(numbers) if !numbers.is_empty() && !inside.trim().is_empty() => {
                // A Markdown link `[1](url)` is a link, not a citation.
                if !text[close + 1..].starts_with('(') {
                    out.push((numbers, open..close + 1));
                }
                from = close + 1;
            }
            _ => from = open + 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn search(results: &[(&str, &str)]) -> Step {
        Step {
            kind: "tool_call".into(),
            tool: SEARCH.into(),
            args: json!({"query": "q"}),
            result: json!({"query": "q", "results": results.iter().map(|(t, s)| json!({"title": t, "source": s, "snippet": "…", "score": 1.0})).collect::<Vec<_>>()}),
            error: None,
            duration_ms: 0.1,
        }
    }

    #[test]
    fn sources_are_numbered_once_in_the_order_found() {
        let mut sources = Sources::default();
        assert_eq!(sources.add(&[search(&[("A", "a.md"), ("B", "b.md")])]), vec![1, 2]);
        assert_eq!(
            sources.add(&[search(&[("B", "b.md"), ("C", "c.md")]), search(&[("A", "a.md")])]),
            vec![2, 3, 1]
        );
        let titles: Vec<&str> = sources.all().iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["A", "B", "C"]);
    }

    #[test]
    fn citations_are_read_and_unknown_ones_taken_out() {
        let report = "Cold starts are short [1]. Costs [2, 7] differ [9]; see [the docs](http://x) and [x].";
        assert_eq!(citations(report), vec![1, 2, 7, 9]);
        assert_eq!(
            keep_known(report, 3),
            "Cold starts are short [1]. Costs [2] differ ; see [the docs](http://x) and [x]."
        );
        assert_eq!(citations(&keep_known(report, 3)), vec![1, 2]);
        assert_eq!(keep_known("[0] and [1](url)", 3), " and [1](url)");
    }
}
