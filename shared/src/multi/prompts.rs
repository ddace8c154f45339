//! What each role of a multi-agent run is told.
//!
//! The user's task always travels alone in the last user turn, and what a
//! role needs besides (the tools, the larger task, other subtasks' results)
//! in its system instruction or as JSON: a model reads either, and the
//! offline model, which plans from the task's words, is not misled by text
//! that is not the task.

use serde::{Deserialize, Serialize};

use super::plan::{self, Subtask};
use crate::llm::{Content, ModelRequest, ToolSpec};

/// The planner's system instruction; the tools follow it.
pub const PLANNER_INSTRUCTION: &str = "You are the planner of a team of agents. Cut the user's task into \
    subtasks that agents can carry out on their own, as few as the task needs (one when it asks for one \
    thing). Give each an id, a description complete enough to act on without the others, the tools it may \
    use (only tools listed below; none when it needs none), and in depends_on the ids of the subtasks whose \
    results it needs. Do not add a subtask that only combines the results: that is done after the \
    subtasks. Answer only with the JSON plan.";

/// The synthesis's system instruction; the results come as JSON.
pub const SYNTHESIS_INSTRUCTION: &str = "You write the final answer to a user's task from the results of \
    the subtasks done for it, given as JSON. Combine them into one answer, in the language of the task, \
    keeping every figure and fact they found. If a subtask failed or was skipped, say plainly which part \
    could not be done and why. Do not mention subtasks, ids or JSON.";

/// The planner's request: the task, the tools (name and description), and
/// the schema of a plan of at most `max` subtasks.
pub(super) fn planner_request(task: &str, tools: &[ToolSpec], max: usize) -> ModelRequest {
    let mut system = String::from(PLANNER_INSTRUCTION);
    system.push_str(&format!("\n\nAt most {max} subtasks. The tools:"));
    if tools.is_empty() {
        system.push_str(" none.");
    }
    for tool in tools {
        system.push_str(&format!("\n- {}: {}", tool.name, tool.description));
    }
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    ModelRequest {
        system_instruction: Some(system),
        contents: vec![Content::user_text(task)],
        tools: Vec::new(),
        response_schema: Some(plan::schema(&names, max)),
    }
}

/// The one repair request: the planner's own answer, then why it cannot
/// be used.
pub(super) fn repair_request(mut first: ModelRequest, answer: Content, why: &str) -> ModelRequest {
    first.contents.push(answer);
    first.contents.push(Content::user_text(format!(
        "That plan cannot be used: {why}. Answer again with only the JSON plan, following the schema."
    )));
    first
}

/// An executor's system instruction: the agent's own, the larger task it
/// is part of, and the results it depends on.
pub(super) fn executor_instruction(task: &str, inputs: &[(&Subtask, &str)]) -> String {
    let mut out = String::from(crate::agent::SYSTEM_INSTRUCTION);
    out.push_str("\n\nYou are doing one part of a larger task, which was: ");
    out.push_str(task);
    out.push_str("\nDo only your part, which is the user's message; others do the rest.");
    if !inputs.is_empty() {
        out.push_str("\nResults of the parts yours depends on:");
        for (subtask, result) in inputs {
            out.push_str(&format!("\n- {} ({}): {}", subtask.id, subtask.description, result));
        }
    }
    out
}

/// What the synthesis is given, as JSON in its user turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisInput {
    pub task: String,
    pub subtasks: Vec<SynthesisItem>,
}

/// One subtask's result for the synthesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisItem {
    pub id: String,
    pub description: String,
    /// `completed`, `failed` or `skipped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) fn synthesis_request(input: &SynthesisInput) -> ModelRequest {
    ModelRequest {
        system_instruction: Some(SYNTHESIS_INSTRUCTION.to_string()),
        // Serialising strings into JSON cannot fail.
        contents: vec![Content::user_text(serde_json::to_string(input).unwrap_or_default())],
        tools: Vec::new(),
        response_schema: None,
    }
}
