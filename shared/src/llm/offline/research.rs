//! The offline model's parts in a research: the subtopic planner, the
//! analyst, the writer and the critic. (A researcher is an agent run whose
//! task asks to search, which the model already plays.)
//!
//! - **subtopics**: each clause of the topic (cut at commas, "and", "y");
//!   a topic of one clause is the topic itself, then the first and the
//!   second half of its words, as narrower searches; at most `maxItems`.
//! - **analyst**: how many subtopics found how many sources.
//! - **writer**: a `# ` title, a `## ` section per subtopic listing the
//!   titles of its sources with their numbers, its findings quoted, and a
//!   conclusion citing every source; a revision says it answers the critique.
//! - **critic**: the report's sections and citations counted, and the
//!   sources it does not cite.

use serde_json::{Value, json};

use super::plan::{CONJUNCTIONS, clean};
use crate::research::WriterInput;
use crate::research::sources::citations;

/// A quote of findings in the report, at most this many characters.
const FINDINGS_CHARS: usize = 240;

/// The planner's answer for `topic`, in the shape of `schema`.
pub(super) fn subtopics(topic: &str, schema: &Value) -> Value {
    let max = schema["properties"]["subtopics"]["maxItems"]
        .as_u64()
        .unwrap_or(3)
        .max(1) as usize;
    let mut phrases: Vec<String> = Vec::new();
    for piece in topic.split([',', ';']) {
        let mut current: Vec<&str> = Vec::new();
        for word in piece.split_whitespace() {
            if CONJUNCTIONS.contains(&word.to_lowercase().as_str()) {
                phrases.push(current.join(" "));
                current.clear();
            } else {
                current.push(word);
            }
        }
        phrases.push(current.join(" "));
    }
    let mut phrases: Vec<String> = phrases.iter().map(|p| clean(p)).filter(|p| !p.is_empty()).collect();
    if phrases.len() == 1 {
        let whole = phrases[0].clone();
        let parts: Vec<&str> = whole.split_whitespace().collect();
        if parts.len() >= 2 {
            let half = parts.len() / 2;
            phrases.push(parts[..half].join(" "));
            phrases.push(parts[half..].join(" "));
        }
    }
    let mut seen = Vec::new();
    phrases.retain(|p| {
        let key = p.to_lowercase();
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    phrases.truncate(max);
    if phrases.is_empty() {
        phrases.push(clean(topic));
    }
    let subtopics: Vec<Value> = phrases.iter().map(|p| json!({"title": p, "query": p})).collect();
    json!({ "subtopics": subtopics })
}

pub(super) fn analysis(input: &WriterInput) -> String {
    let researched = input.subtopics.iter().filter(|s| s.findings.is_some()).count();
    let mut out = format!(
        "[offline model] Analysis of \"{}\": {researched} of {} subtopics researched, {} sources found.",
        input.topic.trim(),
        input.subtopics.len(),
        input.sources.len()
    );
    for subtopic in &input.subtopics {
        match &subtopic.findings {
            Some(_) => out.push_str(&format!("\n- {}: {} sources.", subtopic.title, subtopic.sources.len())),
            None => out.push_str(&format!("\n- {}: could not be researched.", subtopic.title)),
        }
    }
    out
}

pub(super) fn report(input: &WriterInput) -> String {
    let cite = |ids: &[usize]| ids.iter().map(|n| format!("[{n}]")).collect::<String>();
    let mut out = format!("# {}\n", input.topic.trim());
    if input.critique.is_some() {
        out.push_str("\n*Revised to answer the critique.*\n");
    }
    for subtopic in &input.subtopics {
        out.push_str(&format!("\n## {}\n\n", subtopic.title));
        let Some(findings) = &subtopic.findings else {
            out.push_str("This subtopic could not be researched.\n");
            continue;
        };
        if subtopic.sources.is_empty() {
            out.push_str("The searches found no source on this.\n");
        }
        for id in &subtopic.sources {
            if let Some(source) = input.sources.iter().find(|s| s.id == *id) {
                out.push_str(&format!("- {} [{id}]\n", source.title));
            }
        }
        let quoted: String = findings.chars().take(FINDINGS_CHARS).collect();
        let more = if findings.chars().count() > FINDINGS_CHARS {
            "…"
        } else {
            ""
        };
        out.push_str(&format!(
            "\nFound: {}{more} {}\n",
            quoted.trim(),
            cite(&subtopic.sources)
        ));
    }
    let all: Vec<usize> = input.sources.iter().map(|s| s.id).collect();
    out.push_str(&format!(
        "\n## Conclusion\n\n\"{}\" was researched in {} subtopics, from {} sources {}.\n",
        input.topic.trim(),
        input.subtopics.len(),
        all.len(),
        cite(&all)
    ));
    out
}

pub(super) fn critique(input: &WriterInput) -> String {
    let report = input.report.as_deref().unwrap_or_default();
    let cited = citations(report);
    let sections = report.lines().filter(|l| l.starts_with("## ")).count();
    let uncited: Vec<String> = input
        .sources
        .iter()
        .filter(|s| !cited.contains(&s.id))
        .map(|s| s.id.to_string())
        .collect();
    let mut out = format!(
        "[offline model] The report has {sections} sections and cites {} of {} sources.",
        cited.len(),
        input.sources.len()
    );
    if uncited.is_empty() {
        out.push_str(" Every source is cited.");
    } else {
        out.push_str(&format!(" Not cited: {}.", uncited.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::{Source, WriterSubtopic};

    fn titles(topic: &str, max: usize) -> Vec<String> {
        let schema = json!({"properties": {"subtopics": {"maxItems": max}}});
        subtopics(topic, &schema)["subtopics"]
            .as_array()
            .expect("subtopics")
            .iter()
            .map(|s| s["title"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn a_topic_is_cut_at_its_clauses_or_into_narrower_searches() {
        assert_eq!(
            titles("serverless cold start", 5),
            ["serverless cold start", "serverless", "cold start"]
        );
        assert_eq!(titles("serverless cold start", 1), ["serverless cold start"]);
        assert_eq!(
            titles("Cloud Run pricing, Lambda pricing and Firestore costs", 5),
            ["Cloud Run pricing", "Lambda pricing", "Firestore costs"]
        );
    }

    #[test]
    fn the_report_cites_each_subtopics_sources_and_the_critic_counts_them() {
        let input = WriterInput {
            topic: "cold starts".into(),
            subtopics: vec![
                WriterSubtopic {
                    title: "cold starts".into(),
                    findings: Some("They are short.".into()),
                    sources: vec![1, 2],
                },
                WriterSubtopic {
                    title: "costs".into(),
                    findings: None,
                    sources: vec![],
                },
            ],
            sources: (1..=3)
                .map(|id| Source {
                    id,
                    title: format!("T{id}"),
                    source: "README.md".into(),
                    snippet: String::new(),
                })
                .collect(),
            analysis: None,
            report: None,
            critique: None,
        };
        let report = report(&input);
        assert!(report.starts_with("# cold starts\n"), "{report}");
        assert!(report.contains("- T1 [1]\n- T2 [2]\n"), "{report}");
        assert!(report.contains("This subtopic could not be researched."), "{report}");
        assert_eq!(citations(&report), vec![1, 2, 3]);
        let review = critique(&WriterInput {
            report: Some("## a\n[1] and [3]".into()),
            ..input
        });
        assert_eq!(
            review,
            "[offline model] The report has 1 sections and cites 2 of 3 sources. Not cited: 2."
        );
    }
}
