//! Multi-agent runs: a planner cuts a task into subtasks, executors run
//! them (each an agent run of its own), and a synthesis writes the answer.
//!
//! The orchestrator's calls (the plan and the synthesis) go to the strong
//! tier and the executors' to the fast one when `MODEL_ROUTING=auto`
//! ([`Router::for_role`](crate::llm::routing::Router::for_role)); a client's
//! `model` applies to every call. A subtask sees only its own tools, its own
//! description and the results of the subtasks it depends on: its context is
//! its own, so parallel subtasks cannot disturb one another.
//!
//! - `plan`: the plan's schema, and the checks a planner's answer must pass.
//! - `prompts`: what each role is told, and how results reach the next role.
//! - `run`: planning (with one repair), the waves of subtasks, synthesis.

pub mod plan;
mod prompts;
mod run;
#[cfg(test)]
mod tests;

pub use crate::task::Spent;
pub use plan::{MAX_SUBTASKS_CAP, Plan, Subtask};
pub use prompts::{PLANNER_INSTRUCTION, SYNTHESIS_INSTRUCTION, SynthesisInput, SynthesisItem};
pub(crate) use run::{Ended, One, ask, conclude, execute_one, next_wave, not_run, plan_for};
pub use run::{MultiRun, Role, Roles, RoutedRoles, run};

/// The JSON a run reports an event as: its `type` and its fields.
pub fn event_json(event: &MultiEvent) -> serde_json::Value {
    serde_json::to_value(event).unwrap_or_default()
}

use serde::{Deserialize, Serialize};

use crate::agent::{FinishReason, Step};
use crate::llm::Spend;
use crate::llm::routing::RouteInfo;

/// `max_subtasks` when a request names none.
pub const DEFAULT_MAX_SUBTASKS: usize = 5;

/// How many subtasks of one wave a synchronous run runs at once.
pub const CONCURRENCY: usize = 4;

/// Where the plan a run followed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanOrigin {
    /// The planner's first answer.
    Planned,
    /// Its answer to the one repair request, the first being invalid.
    Repaired,
    /// Both answers were invalid: the whole task became one subtask.
    Fallback,
}

/// The plan as the answer reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanView {
    pub subtasks: Vec<Subtask>,
    pub origin: PlanOrigin,
    /// Why the planner's answers were refused, when they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

/// How a subtask ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskStatus {
    Completed,
    /// Its model failed (after retries and fallback).
    Failed,
    /// Not run: a subtask it depends on did not complete.
    Skipped,
}

/// One subtask's part of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubtaskResult {
    #[serde(flatten)]
    pub subtask: Subtask,
    pub status: SubtaskStatus,
    /// The executor's answer, when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<Step>,
    /// What its model calls spent (a failed subtask's calls included).
    pub usage: Spend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    pub duration_ms: f64,
}

/// Why a multi-agent run ended as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MultiFinish {
    /// Every subtask completed.
    Answered,
    /// Some failed or were skipped; the answer says which and why.
    Partial,
}

/// A finished multi-agent run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MultiOutcome {
    /// The final answer (the synthesis; a single subtask's own answer).
    pub response: String,
    pub plan: PlanView,
    /// One per subtask, in plan order.
    pub subtasks: Vec<SubtaskResult>,
    pub finish_reason: MultiFinish,
    /// Input and output tokens of every call: `usage`'s two totals.
    pub tokens_used: u64,
    /// Every model call of the run: plan, repair, subtasks, synthesis.
    pub usage: Spend,
    /// The model that wrote the final answer.
    pub model: String,
}

/// What a queued run reports as it goes, stored as the task's events and
/// sent by its progress stream under the event name of its `type`. (A
/// subtask's steps are `step` events: the step, with its `subtask`.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MultiEvent {
    /// The plan the run follows.
    Plan(PlanView),
    /// A subtask is about to run.
    SubtaskStarted(Subtask),
    /// A subtask ended: completed, failed or skipped.
    SubtaskFinished(Box<SubtaskResult>),
    /// The synthesis is about to be asked for the answer.
    Synthesis {
        /// The subtasks whose results it is given.
        subtasks: usize,
    },
}

/// The event names of [`MultiEvent`]s, as the progress stream sends them.
pub const EVENT_NAMES: [&str; 4] = ["plan", "subtask_started", "subtask_finished", "synthesis"];

/// The `data` of a multi-agent run's `step` event: a subtask's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubtaskStep {
    /// The id of the subtask that took it.
    pub subtask: String,
    #[serde(flatten)]
    pub step: Step,
}

/// What a run tells whoever follows it, as the JSON of its events.
pub type OnEvent<'a> = &'a (dyn Fn(serde_json::Value) + Send + Sync);

/// `POST /api/v1/multi-agent`'s answer, and its task's `result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MultiAgentResponse {
    pub task_id: String,
    pub session_id: String,
    #[serde(flatten)]
    pub outcome: MultiOutcome,
}

/// The subtasks a run may plan: the default when none is asked; 1 to
/// [`MAX_SUBTASKS_CAP`], else a 400 that says so.
pub fn max_subtasks(asked: Option<u32>) -> Result<usize, crate::http::ApiError> {
    match asked {
        None => Ok(DEFAULT_MAX_SUBTASKS),
        Some(n) if (1..=MAX_SUBTASKS_CAP as u32).contains(&n) => Ok(n as usize),
        Some(n) => Err(crate::http::ApiError::invalid_argument(format!(
            "max_subtasks must be 1 to {MAX_SUBTASKS_CAP}, not {n}; omit it for the default of {DEFAULT_MAX_SUBTASKS}"
        ))),
    }
}
