//! What each role of a research is told and given: instructions as
//! system text, material as JSON in the user turn (the offline model reads
//! the same JSON a real model does).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Depth;
use super::sources::Source;
use crate::llm::{Content, ModelRequest, ResponseSchema};

/// The name of the subtopics' schema; the offline model knows the
/// planner's call by it.
pub const SUBTOPICS_SCHEMA_NAME: &str = "subtopics";

const PLANNER_INSTRUCTION: &str = "You plan a piece of research. Cut the user's topic into distinct \
    subtopics that together cover it, as few as it needs, each with a short title and the search query \
    that would find material on it. Answer only with the JSON.";

/// The researcher's system instruction; its task is the subtopic.
pub(super) fn researcher_instruction(topic: &str, depth: Depth) -> String {
    format!(
        "You research one subtopic of a larger topic, which is: {topic}\n\
         Use `search_web` (at most {} searches) to find material on the subtopic in the user's message, \
         then summarise what the results say, in a few sentences, naming the results you used by title. \
         Say so plainly if the results do not cover it.",
        depth.searches()
    )
}

/// The analyst's system instruction; its material is the findings.
pub const ANALYST_INSTRUCTION: &str = "You are an analyst. From the findings of the researchers, given as \
    JSON, write a short analysis of the topic: what the findings agree on, where they differ, and what is \
    missing. Keep every figure they give.";

/// The writer's system instruction; its material is [`WriterInput`].
pub const WRITER_INSTRUCTION: &str = "You are a writer. From the analysis, the findings and the numbered \
    sources given as JSON, write a report in Markdown: a `# ` title, then one `## ` section per subtopic \
    and a `## Conclusion`. Cite sources by their number in square brackets, like [2], right after what \
    they support; cite only the numbers given. If a critique is given, revise the previous report to \
    answer it.";

/// The critic's system instruction; its material is the report and sources.
pub const CRITIC_INSTRUCTION: &str = "You are a critic. Review the report given as JSON against its \
    sources: claims without a citation, citations that do not support their claim, gaps, and unclear \
    passages. Answer with a short list of concrete improvements.";

/// The planner's request: the topic alone, at most `max` subtopics.
pub(super) fn planner_request(topic: &str, max: usize) -> ModelRequest {
    ModelRequest {
        system_instruction: Some(format!("{PLANNER_INSTRUCTION}\n\nAt most {max} subtopics.")),
        contents: vec![Content::user_text(topic)],
        tools: Vec::new(),
        response_schema: Some(ResponseSchema {
            name: SUBTOPICS_SCHEMA_NAME.to_string(),
            schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "subtopics": {
                        "type": "array",
                        "description": format!("1 to {max} subtopics"),
                        "maxItems": max,
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "properties": {
                                "title": {"type": "string"},
                                "query": {"type": "string", "description": "what to search for"},
                            },
                            "required": ["title", "query"],
                        },
                    },
                },
                "required": ["subtopics"],
            }),
        }),
    }
}

/// A subtopic as the planner gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Planned {
    pub title: String,
    pub query: String,
}

/// The planner's answer, checked: 1 to `max` subtopics, each with a title
/// and a query; `Err` says what is wrong.
pub(super) fn parse_subtopics(text: &str, max: usize) -> Result<Vec<Planned>, String> {
    #[derive(Deserialize)]
    struct Answer {
        subtopics: Vec<Planned>,
    }
    let text = text.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .map_or(text, |t| t.strip_suffix("```").unwrap_or(t).trim());
    let answer: Answer =
        serde_json::from_str(text).map_err(|e| format!("the answer is not the JSON of the schema ({e})"))?;
    let n = answer.subtopics.len();
    if n == 0 || n > max {
        return Err(format!("give 1 to {max} subtopics, not {n}"));
    }
    if let Some(bad) = answer
        .subtopics
        .iter()
        .find(|s| s.title.trim().is_empty() || s.query.trim().is_empty())
    {
        return Err(format!("subtopic {:?} has an empty title or query", bad.title));
    }
    Ok(answer.subtopics)
}

/// The researcher's task: for a model that plans from words (the offline
/// one), a request to search.
pub(super) fn researcher_task(planned: &Planned) -> String {
    format!("Search for {}", planned.query.trim())
}

/// One subtopic's findings, as the analyst and the writer get them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterSubtopic {
    pub title: String,
    /// `None` when its researcher failed.
    pub findings: Option<String>,
    /// The numbers of its sources.
    pub sources: Vec<usize>,
}

/// What the analyst, the writer and the critic are given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterInput {
    pub topic: String,
    pub subtopics: Vec<WriterSubtopic>,
    pub sources: Vec<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    /// For the critic and a revision: the report so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// For a revision: what the critic asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critique: Option<String>,
}

pub(super) fn request(instruction: &str, input: &WriterInput) -> ModelRequest {
    ModelRequest {
        system_instruction: Some(instruction.to_string()),
        // Serialising strings and numbers into JSON cannot fail.
        contents: vec![Content::user_text(serde_json::to_string(input).unwrap_or_default())],
        tools: Vec::new(),
        response_schema: None,
    }
}
