//! A multi-agent run, start to end, in one process: plan, waves, synthesis.
//!
//! The plan is asked for once and repaired at most once: a planner that
//! cannot give a valid plan in two answers will not in three, and each try
//! is a paid call, so the run falls back to the whole task as one subtask
//! and says so. Subtasks run in waves (see [`plan::waves`]), up to
//! `concurrency` at a time; a subtask whose model fails is reported, not
//! fatal, and the subtasks that depend on it are skipped. Only a run in
//! which no subtask completed fails as a whole.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use super::plan::{self, Plan, Subtask};
use super::prompts::{self, SynthesisInput, SynthesisItem};
use super::{
    MultiEvent, MultiFinish, MultiOutcome, OnEvent, PlanOrigin, PlanView, SubtaskResult, SubtaskStatus, SubtaskStep,
    event_json,
};
use crate::agent::{self, Checkpoint, RunError};
use crate::cache::ResponseCache;
use crate::llm::routed::Models;
use crate::llm::routing::{Route, Tier};
use crate::llm::{Model, ModelError, ModelRequest, ModelResponse, Spend};
use crate::task::{Spent, Tally};
use crate::tools::Registry;

/// The part a model call plays in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Planner,
    Executor,
    Synthesis,
    /// A research's subtopic researcher.
    Researcher,
    /// A research's analyst, writer and critic.
    Analyst,
    Writer,
    Critic,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Planner => "planner",
            Role::Executor => "executor",
            Role::Synthesis => "synthesis",
            Role::Researcher => "researcher",
            Role::Analyst => "analyst",
            Role::Writer => "writer",
            Role::Critic => "critic",
        }
    }

    /// The orchestrator's calls (planning, combining, writing, judging)
    /// need the stronger model; the executors' and researchers' narrow
    /// subtasks do not.
    fn tier(self) -> Tier {
        match self {
            Role::Planner | Role::Synthesis | Role::Analyst | Role::Writer | Role::Critic => Tier::Strong,
            Role::Executor | Role::Researcher => Tier::Fast,
        }
    }
}

/// The model for each call of a run: a new one per call site, since a
/// routed model reports the fallback of the calls made through it.
pub trait Roles: Send + Sync {
    fn model(&self, role: Role) -> Box<dyn Model>;
}

/// [`Roles`] from the configured tiers: the client's route for every role
/// when it asked for a model, else each role's tier; through the response
/// cache when there is one.
pub struct RoutedRoles<'a> {
    pub models: &'a Models,
    pub requested: Option<Route>,
    pub cache: Option<&'a Arc<ResponseCache>>,
    /// Whose cache entries the calls use (`Principal::as_str`).
    pub principal: &'a str,
}

impl Roles for RoutedRoles<'_> {
    fn model(&self, role: Role) -> Box<dyn Model> {
        let routed = match &self.requested {
            Some(route) => self.models.routed(route),
            None => self.models.for_role(role.tier(), role.as_str()),
        };
        Box::new(routed.with_cache(self.cache, self.principal))
    }
}

/// One call of `role`, counted into `spent`: a role's model is made per
/// call site, so each reports its own fallback.
pub(crate) async fn ask(
    roles: &dyn Roles,
    role: Role,
    spent: &Spent,
    request: &ModelRequest,
) -> Result<ModelResponse, ModelError> {
    let model = roles.model(role);
    Tally::new(model.as_ref(), spent).generate(request).await
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MultiRun {
    pub task: String,
    /// The session whose memory the subtasks' memory tools use.
    pub session_key: String,
    /// Checked by the caller: 1 to [`plan::MAX_SUBTASKS_CAP`].
    pub max_subtasks: usize,
    /// Each subtask's own `max_steps`.
    pub max_steps: u32,
    /// Subtasks of one wave run at once, at most.
    pub concurrency: usize,
    /// The plan an earlier claim of a queued run made (its `plan` event):
    /// kept, not paid for again.
    pub kept_plan: Option<PlanView>,
}

/// Runs `run` to its end, in one process (a synchronous run): everything
/// it spent is in `spent`, whether it ends with an outcome or an error.
/// `checkpoint`, when given, is asked
/// before the planner's repair, each wave, the synthesis, and inside each
/// subtask's run: before every paid call but the first.
pub async fn run(
    roles: &dyn Roles,
    tools: &Registry,
    run: &MultiRun,
    spent: &Spent,
    checkpoint: Option<&dyn Checkpoint>,
    on_event: OnEvent<'_>,
) -> Result<MultiOutcome, RunError> {
    let view = plan_for(roles, tools, run, spent, checkpoint).await?;
    let plan = Plan {
        subtasks: view.subtasks.clone(),
    };
    on_event(event_json(&MultiEvent::Plan(view.clone())));
    // `parse` and `single` only give plans that have waves.
    let waves = plan::waves(&plan).unwrap_or_else(|| vec![(0..plan.subtasks.len()).collect()]);
    let context = Context {
        roles,
        tools,
        run,
        spent,
        checkpoint,
        on_event,
    };
    let context = &context;
    let mut results: Vec<Option<SubtaskResult>> = vec![None; plan.subtasks.len()];
    let mut failures: Vec<ModelError> = Vec::new();
    for wave in waves {
        agent::pass(checkpoint).await?;
        let jobs: Vec<_> = wave
            .into_iter()
            .map(|i| {
                let subtask = &plan.subtasks[i];
                let inputs = inputs_of(&plan, subtask, &results);
                async move {
                    let outcome = execute(context, subtask, inputs).await;
                    if let Ok((result, _)) = &outcome {
                        on_event(event_json(&MultiEvent::SubtaskFinished(Box::new(result.clone()))));
                    }
                    (i, outcome)
                }
            })
            .collect();
        let done: Vec<_> = futures_util::stream::iter(jobs)
            .buffer_unordered(run.concurrency.max(1))
            .collect()
            .await;
        for (i, outcome) in done {
            let (result, failure) = outcome?;
            failures.extend(failure);
            results[i] = Some(result);
        }
    }
    let results: Vec<SubtaskResult> = results.into_iter().flatten().collect();
    let ended = Ended {
        view,
        results,
        first_failure: failures.into_iter().next(),
        kept_usage: Spend::default(),
    };
    conclude(roles, spent, &run.task, ended, checkpoint, on_event).await
}

/// The plan a run follows: the one an earlier attempt kept, else the
/// planner's.
pub(crate) async fn plan_for(
    roles: &dyn Roles,
    tools: &Registry,
    run: &MultiRun,
    spent: &Spent,
    checkpoint: Option<&dyn Checkpoint>,
) -> Result<PlanView, RunError> {
    match run.kept_plan.clone() {
        Some(view) => Ok(view),
        None => Ok(make_plan(roles, tools, run, spent, checkpoint).await?.1),
    }
}

/// A run whose subtasks have all ended, to conclude.
pub(crate) struct Ended {
    pub view: PlanView,
    /// One per subtask, in plan order.
    pub results: Vec<SubtaskResult>,
    /// Why the first failed subtask failed: the run's error when none
    /// completed.
    pub first_failure: Option<ModelError>,
    /// What calls counted elsewhere spent (the children, the
    /// planner in an earlier attempt): added to the answer's `usage`.
    pub kept_usage: Spend,
}

/// The end of a run whose subtasks have ended: its answer (a synthesis
/// of their results, or a single subtask's own), `partial` when some did
/// not complete, an error when none did.
pub(crate) async fn conclude(
    roles: &dyn Roles,
    spent: &Spent,
    task: &str,
    ended: Ended,
    checkpoint: Option<&dyn Checkpoint>,
    on_event: OnEvent<'_>,
) -> Result<MultiOutcome, RunError> {
    let Ended {
        view,
        results,
        first_failure,
        kept_usage,
    } = ended;
    if !results.iter().any(|r| r.status == SubtaskStatus::Completed) {
        let first = first_failure.unwrap_or_else(|| ModelError::Upstream {
            status: None,
            message: "no subtask completed".to_string(),
        });
        return Err(RunError::Model(first));
    }
    let finish_reason = if results.iter().all(|r| r.status == SubtaskStatus::Completed) {
        MultiFinish::Answered
    } else {
        MultiFinish::Partial
    };
    let (response, model) = match results.as_slice() {
        // One subtask's answer is the answer: a synthesis would only
        // restate it, at the price of another call.
        [only] if only.status == SubtaskStatus::Completed => (
            only.response.clone().unwrap_or_default(),
            only.model.clone().unwrap_or_default(),
        ),
        _ => {
            agent::pass(checkpoint).await?;
            on_event(event_json(&MultiEvent::Synthesis {
                subtasks: results.len(),
            }));
            synthesise(roles, spent, task, &results).await?
        }
    };
    let mut usage = spent.total();
    usage += kept_usage;
    Ok(MultiOutcome {
        response,
        plan: view,
        subtasks: results,
        finish_reason,
        tokens_used: usage.tokens(),
        usage,
        model,
    })
}

/// What every subtask of a run shares.
#[derive(Clone, Copy)]
struct Context<'a> {
    roles: &'a dyn Roles,
    tools: &'a Registry,
    run: &'a MultiRun,
    spent: &'a Spent,
    checkpoint: Option<&'a dyn Checkpoint>,
    on_event: OnEvent<'a>,
}

/// Asks for a plan, and once more with what was wrong; falls back to the
/// whole task as one subtask.
async fn make_plan(
    roles: &dyn Roles,
    tools: &Registry,
    run: &MultiRun,
    spent: &Spent,
    checkpoint: Option<&dyn Checkpoint>,
) -> Result<(Plan, PlanView), RunError> {
    let names = tools.names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let request = prompts::planner_request(&run.task, &tools.specs(), run.max_subtasks);
    let mut rejected = Vec::new();
    let first = ask(roles, Role::Planner, spent, &request).await?;
    let why = match plan::parse(&first.text(), &names, run.max_subtasks) {
        Ok(plan) => return Ok(view(plan, PlanOrigin::Planned, rejected)),
        Err(why) => why,
    };
    rejected.push(why.0.clone());
    agent::pass(checkpoint).await?;
    let repair = prompts::repair_request(request, first.content, &why.0);
    let second = ask(roles, Role::Planner, spent, &repair).await?;
    match plan::parse(&second.text(), &names, run.max_subtasks) {
        Ok(plan) => Ok(view(plan, PlanOrigin::Repaired, rejected)),
        Err(why) => {
            rejected.push(why.0);
            Ok(view(plan::single(&run.task, &names), PlanOrigin::Fallback, rejected))
        }
    }
}

fn view(plan: Plan, origin: PlanOrigin, rejected: Vec<String>) -> (Plan, PlanView) {
    let view = PlanView {
        subtasks: plan.subtasks.clone(),
        origin,
        rejected,
    };
    (plan, view)
}

/// The finished subtasks `subtask` depends on, with their answers; a
/// dependency that did not complete gives `Err` with its id.
fn inputs_of(
    plan: &Plan,
    subtask: &Subtask,
    results: &[Option<SubtaskResult>],
) -> Result<Vec<(Subtask, String)>, String> {
    subtask
        .depends_on
        .iter()
        .map(|id| {
            let found = plan
                .subtasks
                .iter()
                .zip(results)
                .find(|(s, _)| &s.id == id)
                .and_then(|(s, r)| r.as_ref().map(|r| (s, r)));
            match found {
                Some((s, r)) if r.status == SubtaskStatus::Completed => {
                    Ok((s.clone(), r.response.clone().unwrap_or_default()))
                }
                _ => Err(id.clone()),
            }
        })
        .collect()
}

/// The result of a subtask that ended without running (`status`, and
/// `error` saying why), to be filled in by a run.
pub(crate) fn not_run(subtask: &Subtask, status: SubtaskStatus, error: Option<String>) -> SubtaskResult {
    SubtaskResult {
        subtask: subtask.clone(),
        status,
        response: None,
        error,
        steps: Vec::new(),
        usage: Spend::default(),
        model: None,
        route: None,
        finish_reason: None,
        duration_ms: 0.0,
    }
}

/// A subtask not run because `missing`, a subtask it depends on, did not
/// complete.
fn skipped(subtask: &Subtask, missing: &str) -> SubtaskResult {
    let why = format!("not run: the subtask {missing:?} it depends on did not complete");
    not_run(subtask, SubtaskStatus::Skipped, Some(why))
}

/// What a run of one subtask needs from its run.
pub(crate) struct One<'a> {
    pub roles: &'a dyn Roles,
    pub tools: &'a Registry,
    pub run: &'a MultiRun,
    pub spent: &'a Spent,
    pub checkpoint: Option<&'a dyn Checkpoint>,
    pub on_event: OnEvent<'a>,
}

/// One subtask run on its own (a queued run's child task), with the
/// results of the subtasks it depends on.
pub(crate) async fn execute_one(
    one: One<'_>,
    subtask: &Subtask,
    inputs: Vec<(Subtask, String)>,
) -> Result<(SubtaskResult, Option<ModelError>), RunError> {
    let context = Context {
        roles: one.roles,
        tools: one.tools,
        run: one.run,
        spent: one.spent,
        checkpoint: one.checkpoint,
        on_event: one.on_event,
    };
    execute(&context, subtask, Ok(inputs)).await
}

/// A subtask ready to run (its place in the plan), with the results of
/// the subtasks it depends on.
pub(crate) type Ready = (usize, Vec<(Subtask, String)>);

/// Of the subtasks not started (`started`) and not ended (`results`):
/// those whose dependencies all completed, ready to run with their
/// results, and those that will never run because one did not (their
/// results, also put in `results`, skipping what depends on them in turn).
pub(crate) fn next_wave(
    plan: &Plan,
    results: &mut [Option<SubtaskResult>],
    started: &[bool],
) -> (Vec<Ready>, Vec<usize>) {
    let mut newly_skipped = Vec::new();
    loop {
        let mut changed = false;
        for (i, subtask) in plan.subtasks.iter().enumerate() {
            if started[i] || results[i].is_some() {
                continue;
            }
            let failed = subtask.depends_on.iter().find(|id| {
                let position = plan.subtasks.iter().position(|s| &s.id == *id);
                position
                    .and_then(|p| results[p].as_ref())
                    .is_some_and(|r| r.status != SubtaskStatus::Completed)
            });
            if let Some(missing) = failed {
                results[i] = Some(skipped(subtask, missing));
                newly_skipped.push(i);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let ready = plan
        .subtasks
        .iter()
        .enumerate()
        .filter(|(i, _)| !started[*i] && results[*i].is_none())
        .filter_map(|(i, subtask)| inputs_of(plan, subtask, results).ok().map(|inputs| (i, inputs)))
        .collect();
    (ready, newly_skipped)
}

/// One subtask as an agent run of its own: its description as the task,
/// only its tools, the results it depends on in its instruction. A model
/// failure becomes a failed result (and the error, for a run in which
/// nothing completes); only an interruption ends the whole run.
async fn execute(
    context: &Context<'_>,
    subtask: &Subtask,
    inputs: Result<Vec<(Subtask, String)>, String>,
) -> Result<(SubtaskResult, Option<ModelError>), RunError> {
    let Context {
        roles,
        tools,
        run,
        spent,
        checkpoint,
        on_event,
    } = *context;
    let started = Instant::now();
    let mut result = not_run(subtask, SubtaskStatus::Skipped, None);
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(missing) => return Ok((skipped(subtask, &missing), None)),
    };
    on_event(event_json(&MultiEvent::SubtaskStarted(subtask.clone())));
    let borrowed: Vec<(&Subtask, &str)> = inputs.iter().map(|(s, r)| (s, r.as_str())).collect();
    let agent_run = agent::Run {
        task: subtask.description.clone(),
        session_key: run.session_key.clone(),
        max_steps: run.max_steps,
        system_instruction: Some(prompts::executor_instruction(&run.task, &borrowed)),
    };
    let executor = roles.model(Role::Executor);
    let own = Spent::default();
    let counted = Tally::new(executor.as_ref(), spent).also(&own);
    let on_step = |step: &agent::Step| {
        let step = SubtaskStep {
            subtask: subtask.id.clone(),
            step: step.clone(),
        };
        on_event(serde_json::to_value(&step).unwrap_or_default());
    };
    let outcome = agent::run_checked(&counted, &tools.only(&subtask.tools), &agent_run, &on_step, checkpoint).await;
    result.duration_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    result.usage = own.total();
    match outcome {
        Ok(outcome) => {
            result.status = SubtaskStatus::Completed;
            result.response = Some(outcome.response);
            result.steps = outcome.steps;
            result.model = Some(outcome.model);
            result.route = outcome.route;
            result.finish_reason = Some(outcome.finish_reason);
            Ok((result, None))
        }
        Err(RunError::Model(err)) => {
            result.status = SubtaskStatus::Failed;
            result.error = Some(err.to_string());
            result.route = executor.routing().map(|r| r.route);
            Ok((result, Some(err)))
        }
        Err(interrupted) => Err(interrupted),
    }
}

/// The final answer from every subtask's result: (its text, its model).
async fn synthesise(
    roles: &dyn Roles,
    spent: &Spent,
    task: &str,
    results: &[SubtaskResult],
) -> Result<(String, String), RunError> {
    let input = SynthesisInput {
        task: task.to_string(),
        subtasks: results
            .iter()
            .map(|r| SynthesisItem {
                id: r.subtask.id.clone(),
                description: r.subtask.description.clone(),
                status: match r.status {
                    SubtaskStatus::Completed => "completed",
                    SubtaskStatus::Failed => "failed",
                    SubtaskStatus::Skipped => "skipped",
                }
                .to_string(),
                result: r.response.clone(),
                error: r.error.clone(),
            })
            .collect(),
    };
    let answer = ask(roles, Role::Synthesis, spent, &prompts::synthesis_request(&input)).await?;
    Ok((answer.text(), answer.model))
}
