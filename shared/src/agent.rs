//! The tool-calling loop and its step trace.
//!
//! Ask the model; run every function call it returns (the calls of one turn
//! concurrently); send the results back; repeat until the model answers in
//! text or the run has made `max_steps` calls. A tool that fails, is
//! unknown, or gets bad arguments produces an error result the model sees
//! and can correct: only the model itself failing ends a run with an error.
//! Every call is recorded as a [`Step`], and the run's tokens are summed.
//! A [`Checkpoint`] can stop a run between its calls (a cancelled task).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::llm::routing::RouteInfo;
use crate::llm::{Content, FunctionCall, FunctionResponse, Model, ModelError, ModelRequest, Part, Role, Spend};
use crate::tools::{Registry, ToolContext, ToolError};

/// `max_steps` when a request names none.
pub const DEFAULT_MAX_STEPS: u32 = 10;
/// The most steps any run may take, whatever it asks for: each step can be
/// a paid model call.
pub const MAX_STEPS_CAP: u32 = 20;
/// A tool call that takes longer is abandoned with an error result.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Told to real models so they use the tools; the offline model ignores it.
pub const SYSTEM_INSTRUCTION: &str = "You are a helpful agent. Use the tools you are given when they help: \
    `calculate` for any arithmetic (never compute in your head), `search_web` to look information up, \
    `store_memory` when the user asks you to remember something and `recall_memory` when they ask what you \
    remember. Call several tools at once when the task asks for several things. When a tool returns an \
    error, correct the call or explain the problem. Answer in the language of the task.";

/// One tool call of a run, as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    /// Always `tool_call`; room for other kinds of steps.
    #[serde(rename = "type")]
    pub kind: String,
    pub tool: String,
    pub args: Value,
    /// What the model was sent: the tool's result, or `{"error": ...}`.
    pub result: Value,
    /// Set when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model answered in text.
    Answered,
    /// The run made `max_steps` calls before the model answered.
    MaxSteps,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    pub response: String,
    pub steps: Vec<Step>,
    pub total_steps: usize,
    /// Input and output tokens of every model call: `usage`'s two totals.
    pub tokens_used: u64,
    /// Tokens, model calls and cost of the run.
    #[serde(default)]
    pub usage: Spend,
    pub model: String,
    /// The tier the run was routed to and why (the task text is routed
    /// once, for every step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteInfo>,
    /// The model that failed (after its retries) when another answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<String>,
    pub finish_reason: FinishReason,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Run {
    pub task: String,
    /// The store key of the run's session (`owned::session_key`), under
    /// which its memory is kept.
    pub session_key: String,
    /// Already capped by the caller (see [`effective_max_steps`]).
    pub max_steps: u32,
    pub system_instruction: Option<String>,
}

/// The steps a run may take: the default when none is asked, never more
/// than the cap; `None` in the second place when the cap applied.
pub fn effective_max_steps(asked: Option<u32>) -> (u32, Option<String>) {
    match asked {
        None => (DEFAULT_MAX_STEPS, None),
        Some(n) if n > MAX_STEPS_CAP => (
            MAX_STEPS_CAP,
            Some(format!(
                "max_steps {n} is over the cap of {MAX_STEPS_CAP}; the run used {MAX_STEPS_CAP}"
            )),
        ),
        Some(n) => (n, None),
    }
}

/// Asked whether a run may go on, before each model call but the first
/// and before each turn's tool calls: the points where a run spends money
/// or acts. A queued task's run asks the store whether its task is still
/// its own (`worker`), so a cancelled task stops before its next call.
#[async_trait]
pub trait Checkpoint: Send + Sync {
    /// `Err` with why the run must stop.
    async fn pass(&self) -> Result<(), Interrupted>;
}

/// Asks `checkpoint`, when a run has one, whether it may go on: the one
/// way every run (an agent loop, a multi-agent run, a research) asks.
pub async fn pass(checkpoint: Option<&dyn Checkpoint>) -> Result<(), RunError> {
    match checkpoint {
        Some(checkpoint) => checkpoint.pass().await.map_err(RunError::Interrupted),
        None => Ok(()),
    }
}

/// Why a [`Checkpoint`] stopped a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// Why a checked run ended without an outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the run was stopped: {0}")]
    Interrupted(Interrupted),
}

/// Runs `run` to its end. `on_step` sees each step as it completes (the
/// async path publishes progress with it).
pub async fn run(
    model: &dyn Model,
    tools: &Registry,
    run: &Run,
    on_step: &(dyn Fn(&Step) + Send + Sync),
) -> Result<Outcome, ModelError> {
    match run_checked(model, tools, run, on_step, None).await {
        Ok(outcome) => Ok(outcome),
        Err(RunError::Model(err)) => Err(err),
        // Nothing checks this run, so nothing stops it; said as an error
        // rather than a panic all the same.
        Err(RunError::Interrupted(why)) => Err(ModelError::Upstream {
            status: None,
            message: format!("the run was stopped: {why}"),
        }),
    }
}

/// [`run`], asking `checkpoint` before each model call but the first (the
/// caller has just decided to run) and before each turn's tool calls (run
/// together, so one question covers them): at most one question per call
/// the run makes.
pub async fn run_checked(
    model: &dyn Model,
    tools: &Registry,
    run: &Run,
    on_step: &(dyn Fn(&Step) + Send + Sync),
    checkpoint: Option<&dyn Checkpoint>,
) -> Result<Outcome, RunError> {
    let mut outcome = run_loop(model, tools, run, on_step, checkpoint).await?;
    if let Some(routing) = model.routing() {
        outcome.route = Some(routing.route);
        outcome.fallback_from = routing.fallback_from;
    }
    Ok(outcome)
}

async fn run_loop(
    model: &dyn Model,
    tools: &Registry,
    run: &Run,
    on_step: &(dyn Fn(&Step) + Send + Sync),
    checkpoint: Option<&dyn Checkpoint>,
) -> Result<Outcome, RunError> {
    let context = ToolContext {
        session_key: run.session_key.clone(),
    };
    let mut request = ModelRequest {
        system_instruction: Some(
            run.system_instruction
                .clone()
                .unwrap_or_else(|| SYSTEM_INSTRUCTION.to_string()),
        ),
        contents: vec![Content::user_text(run.task.clone())],
        tools: tools.specs(),
        response_schema: None,
    };
    let max_steps = run.max_steps as usize;
    let mut steps: Vec<Step> = Vec::new();
    let mut usage = Spend::default();

    let mut first = true;
    loop {
        if !first {
            pass(checkpoint).await?;
        }
        first = false;
        let answer = model.generate(&request).await?;
        usage.add(&answer);
        let calls: Vec<FunctionCall> = answer.content.function_calls().cloned().collect();
        if calls.is_empty() {
            return Ok(finish(
                answer.text(),
                steps,
                usage,
                answer.model,
                FinishReason::Answered,
            ));
        }

        let room = max_steps.saturating_sub(steps.len());
        let runnable = &calls[..calls.len().min(room)];
        if !runnable.is_empty() {
            pass(checkpoint).await?;
        }
        let results = join_all(runnable.iter().map(|call| call_tool(tools, call, &context))).await;
        let mut responses = Vec::with_capacity(results.len());
        for (call, step) in runnable.iter().zip(results) {
            on_step(&step);
            responses.push(Part::FunctionResponse(FunctionResponse {
                id: call.id.clone(),
                name: call.name.clone(),
                response: step.result.clone(),
            }));
            steps.push(step);
        }
        if runnable.len() < calls.len() || steps.len() >= max_steps {
            let text = answer.text();
            let note = format!(
                "The run stopped after {} tool calls (max_steps {max_steps}) before the model gave a final answer.",
                steps.len()
            );
            let response = if text.trim().is_empty() {
                note
            } else {
                format!("{text}\n\n{note}")
            };
            return Ok(finish(response, steps, usage, answer.model, FinishReason::MaxSteps));
        }
        request.contents.push(answer.content);
        request.contents.push(Content {
            role: Some(Role::User),
            parts: responses,
            raw: None,
        });
    }
}

fn finish(response: String, steps: Vec<Step>, usage: Spend, model: String, reason: FinishReason) -> Outcome {
    Outcome {
        response,
        total_steps: steps.len(),
        steps,
        tokens_used: usage.tokens(),
        usage,
        model,
        route: None,
        fallback_from: None,
        finish_reason: reason,
    }
}

/// Runs one call; every failure becomes an error result.
async fn call_tool(tools: &Registry, call: &FunctionCall, context: &ToolContext) -> Step {
    // The tool call's span (GenAI conventions): a remote tool's request,
    // and the tool function's own spans, come under it.
    let span = tracing::debug_span!(
        "execute_tool",
        otel.name = %format_args!("execute_tool {}", call.name),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = call.name.as_str(),
    );
    let step = call_tool_in(tools, call, context).instrument(span.clone()).await;
    if step.error.is_some() {
        crate::telemetry::failed(&span, "tool_error");
    }
    step
}

async fn call_tool_in(tools: &Registry, call: &FunctionCall, context: &ToolContext) -> Step {
    let started = Instant::now();
    let outcome = match tools.get(&call.name) {
        None => Err(ToolError::InvalidArguments(format!(
            "there is no tool named {:?}; the tools are: {}",
            call.name,
            tools.names().join(", ")
        ))),
        Some(tool) => {
            let limit = tool.timeout().unwrap_or(TOOL_TIMEOUT);
            match tokio::time::timeout(limit, tool.call(call.args.clone(), context)).await {
                Ok(result) => result,
                Err(_) => Err(ToolError::Failed(format!(
                    "the tool did not finish within {} s",
                    limit.as_secs()
                ))),
            }
        }
    };
    let duration_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let (result, error) = match outcome {
        Ok(result) => (result, None),
        Err(err) => {
            let message = err.to_string();
            (json!({ "error": message }), Some(message))
        }
    };
    Step {
        kind: "tool_call".to_string(),
        tool: call.name.clone(),
        args: call.args.clone(),
        result,
        error,
        duration_ms,
    }
}
