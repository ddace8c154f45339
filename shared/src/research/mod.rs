//! The research flow: a topic cut into subtopics, a researcher per
//! subtopic searching in parallel, an analyst combining what they found, a
//! writer turning it into a Markdown report that cites its sources by
//! number, and a critic reviewing it (at `deep`, the writer revises once).
//!
//! It runs as a queued task (kind `research`) on the worker, on the same
//! roles, spend and checkpoint as a multi-agent run (`multi`). A report
//! only cites sources a search returned: they are numbered as the
//! researchers' searches found them, and a citation of any other number is
//! taken out of the report before it is stored.
//!
//! - `prompts`: what each role is told and given.
//! - `sources`: the sources the searches returned, and the report's citations.
//! - `run`: subtopics, researchers, analyst, writer, critic.

mod prompts;
mod run;
pub mod sources;
#[cfg(test)]
mod tests;

pub use prompts::{
    ANALYST_INSTRUCTION, CRITIC_INSTRUCTION, Planned, SUBTOPICS_SCHEMA_NAME, WRITER_INSTRUCTION, WriterInput,
    WriterSubtopic,
};
pub use run::{EVENT_NAMES, ResearchEvent, ResearchRun, sections};
pub(crate) use run::{Researched, plan_for, research_one, write};
pub use sources::Source;

use serde::{Deserialize, Serialize};

use crate::agent::Step;
use crate::http::ApiError;
use crate::llm::Spend;

/// The shortest and longest topic, in characters.
pub const TOPIC_CHARS: std::ops::RangeInclusive<usize> = 5..=1000;
/// `max_subtopics` when a request names none.
pub const DEFAULT_MAX_SUBTOPICS: usize = 5;
/// The most subtopics any research may have.
pub const MAX_SUBTOPICS_CAP: usize = 10;

/// How thoroughly each subtopic is researched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    /// One search a subtopic.
    Quick,
    /// Up to two searches a subtopic.
    #[default]
    Standard,
    /// Up to three searches a subtopic, and one revision after the critique.
    Deep,
}

impl Depth {
    /// The searches (tool calls) a researcher may make.
    pub fn searches(self) -> u32 {
        match self {
            Depth::Quick => 1,
            Depth::Standard => 2,
            Depth::Deep => 3,
        }
    }

    /// A researcher's `max_steps`: one more than its searches. The agent
    /// loop stops, without a final answer, once it has made `max_steps`
    /// tool calls; a researcher told to make at most `searches` must still
    /// get to write its findings after the last of them. (A model that
    /// ignores the instruction can search once more, never more.)
    pub fn max_steps(self) -> u32 {
        self.searches() + 1
    }

    /// Revisions of the report after the critique.
    pub fn revisions(self) -> u32 {
        match self {
            Depth::Quick | Depth::Standard => 0,
            Depth::Deep => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Depth::Quick => "quick",
            Depth::Standard => "standard",
            Depth::Deep => "deep",
        }
    }
}

/// What a research task keeps in its `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResearchInput {
    pub depth: Depth,
    pub max_subtopics: usize,
    /// Once its researchers were made child tasks: what its next claim
    /// continues from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanned: Option<FannedResearch>,
}

/// A fanned-out research's state between its claims, stored with its
/// fan-out: child `i` researches subtopic `i`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FannedResearch {
    pub subtopics: Vec<Planned>,
    /// What its planner's calls spent, counted then: added to the usage.
    #[serde(default)]
    pub spent: Spend,
}

/// Checks a request's topic and `max_subtopics`: the research it asks
/// for, or a 400 that says what to change.
pub fn check(topic: &str, asked_max: Option<u32>) -> Result<usize, ApiError> {
    let chars = topic.trim().chars().count();
    if !TOPIC_CHARS.contains(&chars) {
        return Err(ApiError::invalid_argument(format!(
            "topic must be {} to {} characters (not blank), not {chars}",
            TOPIC_CHARS.start(),
            TOPIC_CHARS.end()
        )));
    }
    match asked_max {
        None => Ok(DEFAULT_MAX_SUBTOPICS),
        Some(n) if (1..=MAX_SUBTOPICS_CAP as u32).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid_argument(format!(
            "max_subtopics must be 1 to {MAX_SUBTOPICS_CAP}, not {n}; omit it for the default of {DEFAULT_MAX_SUBTOPICS}"
        ))),
    }
}

/// A section of the report: a `## ` heading and what follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Section {
    pub title: String,
    pub content: String,
}

/// One subtopic and what its researcher found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubtopicResult {
    pub title: String,
    /// What the researcher searched for first.
    pub query: String,
    /// `completed`, or `failed` when its model failed.
    pub status: crate::multi::SubtaskStatus,
    /// The researcher's summary of what it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The numbers of the sources its searches returned.
    pub sources: Vec<usize>,
    pub steps: Vec<Step>,
    pub usage: Spend,
}

/// A finished research: the `result` of its task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResearchResult {
    /// The report, in Markdown, citing sources as `[n]`.
    pub report: String,
    /// The report's `## ` sections.
    pub sections: Vec<Section>,
    /// Every source the searches returned, numbered from 1 as cited.
    pub sources: Vec<Source>,
    pub subtopics: Vec<SubtopicResult>,
    /// The critic's review of the (first) draft.
    pub critique: String,
    /// Whether the report was revised after the critique (`deep`).
    pub revised: bool,
    /// Every model call: subtopics, researchers, analyst, writer, critic.
    pub usage: Spend,
    /// The model that wrote the report.
    pub model: String,
}
