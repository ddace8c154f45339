//! A queued multi-agent run fanned out across workers: the parent plans,
//! makes each ready subtask a child task of its own and gives up its
//! claim; whichever workers the queue hands the children to run them; the
//! child that ends last (decided in the store, `store::fan`) queues the
//! parent again, which makes the next wave or writes the synthesis.
//!
//! Each child is a task with every guarantee of one: a claim, a lease, its
//! attempts, its own events (which the parent's progress stream follows),
//! and cancellation with its parent. A parent holds no worker while its
//! children run.

use serde::{Deserialize, Serialize};

use super::child::Ran;
use super::{Disposition, StillHeld, Worker, store_retry, transient};
use crate::agent::RunError;
use crate::llm::{ModelError, Spend};
use crate::multi::{
    self, Ended, MultiAgentResponse, MultiEvent, MultiRun, One, Plan, PlanView, RoutedRoles, Spent, Subtask,
    SubtaskResult, SubtaskStatus, event_json,
};
use crate::store::{Charge, FanOut, Finished, StoreError, TaskKind, TaskRecord, child_id};

/// What a queued multi-agent run keeps in its task's `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiInput {
    pub max_subtasks: usize,
    /// Once it has fanned out: what its later claims continue from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanned: Option<Fanned>,
}

/// A fanned-out run's state between its claims, stored with each fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fanned {
    /// The plan it follows; child `i` runs subtask `i`.
    pub plan: PlanView,
    /// What its own calls (the planner's) spent in earlier claims, counted
    /// then: added to the answer's usage.
    #[serde(default)]
    pub spent: Spend,
    /// The subtasks reported skipped so far.
    #[serde(default)]
    pub skipped: Vec<usize>,
}

/// What a child task keeps in its `input`: its subtask, and what it needs
/// of its parent's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildInput {
    /// The parent's whole task, which the executor is told it is part of.
    pub task: String,
    pub subtask: Subtask,
    /// The results of the subtasks it depends on.
    pub inputs: Vec<(Subtask, String)>,
}

/// A fanned-out parent, by kind, with its stored input.
pub(super) enum Parent {
    Multi(MultiInput),
    Research(crate::research::ResearchInput),
}

/// How a claim of a fanned-out parent ended.
pub(super) enum Step {
    /// Children were made (their ids, to publish); the parent waits.
    Waiting(Vec<String>),
    /// Every child ended and the answer is written: the task's result,
    /// and the model of its last answer.
    Answered { result: serde_json::Value, model: String },
    /// The store failed; the claim is given back for a retry.
    Store(StoreError),
}

impl Worker {
    pub(super) async fn run_multi(&self, task: TaskRecord) -> Disposition {
        let input = task
            .input
            .clone()
            .and_then(|input| serde_json::from_value::<MultiInput>(input).ok());
        let Some(input) = input.filter(|i| (1..=multi::MAX_SUBTASKS_CAP).contains(&i.max_subtasks)) else {
            return self
                .fail(
                    &task,
                    "the stored multi-agent run cannot be read; submit it again",
                    None,
                )
                .await;
        };
        self.run_parent(task, Parent::Multi(input)).await
    }

    /// One claim of a parent (`parent` says which kind, with its input),
    /// under the task's claim with its events stored, and what the queue
    /// is told after it.
    pub(super) async fn run_parent(&self, task: TaskRecord, parent: Parent) -> Disposition {
        let roles = match self.roles_for(&task) {
            Ok(roles) => roles,
            Err(refused) => return self.fail(&task, &refused, None).await,
        };
        let spent = Spent::default();
        let (task_id, attempt) = (task.task_id.as_str(), task.attempts);
        let stepping = self.while_held(task_id, attempt, |events| {
            let on_event = move |event: serde_json::Value| {
                let _ = events.send(event);
            };
            // `on_event` is moved in, so the writer ends with the step.
            let (task, roles, spent) = (&task, &roles, &spent);
            async move {
                match parent {
                    Parent::Multi(input) => self.parent_step(task, input, roles, spent, &on_event).await,
                    Parent::Research(input) => self.research_step(task, input, roles, spent, &on_event).await,
                }
            }
        });
        self.parent_stepped(&task, &spent, stepping.await).await
    }

    /// What the queue is told after a claim of a parent (`None`: the claim
    /// was lost while it ran): its children published, its answer recorded
    /// (the request once, with this claim's calls: the other claims' and
    /// the children's were counted as they ended), or its failure.
    async fn parent_stepped(
        &self,
        task: &TaskRecord,
        spent: &Spent,
        stepped: Option<Result<Step, RunError>>,
    ) -> Disposition {
        let (task_id, attempt) = (task.task_id.as_str(), task.attempts);
        let Some(result) = stepped else {
            return self.claim_lost(task_id, attempt).await;
        };
        match result {
            Ok(Step::Waiting(children)) => self.publish_all(task_id, &children).await,
            Ok(Step::Answered { result, model }) => {
                let charge = spent.charge().unwrap_or_else(|| Charge::now(&model, Spend::default()));
                self.finish(task, Finished::Completed(result), Some(&charge)).await
            }
            Ok(Step::Store(err)) => {
                let _ = self
                    .tasks
                    .release_charged(task_id, attempt, spent.charge().as_ref())
                    .await;
                store_retry(&err)
            }
            Err(RunError::Interrupted(why)) => {
                tracing::info!(task_id, attempt, %why, "the run stopped before its next call");
                self.count_task("stopped");
                self.settle(task_id, format!("task {task_id} stopped: {why}")).await
            }
            Err(RunError::Model(err)) if transient(&err) => self.retry_or_fail(task, &err, spent.charge()).await,
            Err(RunError::Model(err)) => {
                let message = crate::http::ApiError::from(err).message;
                self.fail(task, &message, spent.charge()).await
            }
        }
    }

    /// One claim of a parent: plan (the first time), then look at the
    /// children and make the next wave, or conclude once all have ended.
    pub(super) async fn parent_step(
        &self,
        task: &TaskRecord,
        input: MultiInput,
        roles: &RoutedRoles<'_>,
        spent: &Spent,
        on_event: &(dyn Fn(serde_json::Value) + Send + Sync),
    ) -> Result<Step, RunError> {
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task.task_id,
            attempt: task.attempts,
        };
        let run = MultiRun {
            task: task.task.clone(),
            session_key: crate::owned::session_key(&task.owner, &task.session_id),
            max_subtasks: input.max_subtasks,
            max_steps: task.max_steps,
            concurrency: multi::CONCURRENCY,
            kept_plan: None,
        };
        let mut fanned = match input.fanned {
            Some(fanned) => fanned,
            None => {
                let run = MultiRun {
                    kept_plan: self.kept_plan(task).await,
                    ..run.clone()
                };
                let view = multi::plan_for(roles, &self.tools, &run, spent, Some(&held)).await?;
                on_event(event_json(&MultiEvent::Plan(view.clone())));
                Fanned {
                    plan: view,
                    spent: Spend::default(),
                    skipped: Vec::new(),
                }
            }
        };
        let plan = Plan {
            subtasks: fanned.plan.subtasks.clone(),
        };
        loop {
            let (mut results, started) = match self.children_of(task, &plan).await {
                Ok(found) => found,
                Err(err) => return Ok(Step::Store(err)),
            };
            let (ready, skipped) = multi::next_wave(&plan, &mut results, &started);
            for i in skipped {
                if !fanned.skipped.contains(&i)
                    && let Some(result) = &results[i]
                {
                    on_event(event_json(&MultiEvent::SubtaskFinished(Box::new(result.clone()))));
                    fanned.skipped.push(i);
                }
            }
            let in_flight = (0..plan.subtasks.len()).any(|i| started[i] && results[i].is_none());
            if !ready.is_empty() || in_flight {
                crate::agent::pass(Some(&held)).await?;
                let children: Vec<TaskRecord> = ready
                    .into_iter()
                    .map(|(i, inputs)| child(task, &run.task, &plan.subtasks[i], i, inputs))
                    .collect();
                let mut next = fanned.clone();
                next.spent += spent.total();
                let stored = MultiInput {
                    max_subtasks: input.max_subtasks,
                    fanned: Some(next),
                };
                let stored = serde_json::to_value(&stored).unwrap_or_default();
                match self.wave(task, &stored, children, spent).await {
                    Some(step) => return step,
                    // The last child ended meanwhile: look again.
                    None => continue,
                }
            }
            let results: Vec<SubtaskResult> = results.into_iter().flatten().collect();
            let mut kept_usage = fanned.spent;
            for result in &results {
                kept_usage += result.usage;
            }
            let first_failure =
                results
                    .iter()
                    .find(|r| r.status == SubtaskStatus::Failed)
                    .map(|r| ModelError::Upstream {
                        status: None,
                        message: r.error.clone().unwrap_or_default(),
                    });
            let ended = Ended {
                view: fanned.plan.clone(),
                results,
                first_failure,
                kept_usage,
            };
            let outcome = multi::conclude(roles, spent, &run.task, ended, Some(&held), on_event).await?;
            let model = outcome.model.clone();
            let answer = MultiAgentResponse {
                task_id: task.task_id.clone(),
                session_id: task.session_id.clone(),
                outcome,
            };
            let result = serde_json::to_value(&answer).unwrap_or_default();
            return Ok(Step::Answered { result, model });
        }
    }

    /// Makes `children` and lets the parent wait for them, with `input`
    /// (its state for its next claim) and this claim's calls: the step
    /// that ends this claim, or `None` when no child was asked for and
    /// every child has ended (the claim goes on).
    pub(super) async fn wave(
        &self,
        task: &TaskRecord,
        input: &serde_json::Value,
        children: Vec<TaskRecord>,
        spent: &Spent,
    ) -> Option<Result<Step, RunError>> {
        let made = self
            .tasks
            .fan_out(&task.task_id, task.attempts, input, &children, spent.charge().as_ref())
            .await;
        Some(match made {
            Ok(FanOut::Waiting) => Ok(Step::Waiting(children.into_iter().map(|c| c.task_id).collect())),
            Ok(FanOut::AllDone) => return None,
            Ok(FanOut::Lost) => Err(RunError::Interrupted(crate::agent::Interrupted(format!(
                "task {} is no longer this run's",
                task.task_id
            )))),
            Err(err) => Ok(Step::Store(err)),
        })
    }

    /// The parent's `n` children as stored, by place: `None` for one not
    /// made yet.
    pub(super) async fn child_records(
        &self,
        parent: &TaskRecord,
        n: usize,
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut found = vec![None; n];
        if parent.children.created == 0 {
            return Ok(found);
        }
        for (i, slot) in found.iter_mut().enumerate() {
            *slot = self.tasks.get(&child_id(&parent.task_id, i)).await?;
        }
        Ok(found)
    }

    /// The parent's children as stored: each subtask's result once its
    /// child has ended, and which have been made.
    async fn children_of(
        &self,
        parent: &TaskRecord,
        plan: &Plan,
    ) -> Result<(Vec<Option<SubtaskResult>>, Vec<bool>), StoreError> {
        let records = self.child_records(parent, plan.subtasks.len()).await?;
        let started = records.iter().map(Option::is_some).collect();
        let results = plan
            .subtasks
            .iter()
            .zip(&records)
            .map(|(subtask, child)| child.as_ref().and_then(|child| child_result(subtask, child)))
            .collect();
        Ok((results, started))
    }

    /// Runs a child: one subtask, as the in-process run runs it.
    pub(super) async fn run_subtask(&self, task: TaskRecord) -> Disposition {
        let input = task
            .input
            .clone()
            .and_then(|input| serde_json::from_value::<ChildInput>(input).ok());
        let Some(input) = input else {
            return self.cannot_run(&task, "the stored subtask cannot be read").await;
        };
        let roles = match self.roles_for(&task) {
            Ok(roles) => roles,
            Err(refused) => return self.cannot_run(&task, &refused).await,
        };
        let run = MultiRun {
            task: input.task.clone(),
            session_key: crate::owned::session_key(&task.owner, &task.session_id),
            max_subtasks: 1,
            max_steps: task.max_steps,
            concurrency: 1,
            kept_plan: None,
        };
        let spent = Spent::default();
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task.task_id,
            attempt: task.attempts,
        };
        let (roles, run, spent_ref, held, input) = (&roles, &run, &spent, &held, &input);
        self.run_child(&task, &spent, |events| async move {
            let on_event = move |event: serde_json::Value| {
                let _ = events.send(event);
            };
            let one = One {
                roles,
                tools: &self.tools,
                run,
                spent: spent_ref,
                checkpoint: Some(held),
                on_event: &on_event,
            };
            let (result, failure) = multi::execute_one(one, &input.subtask, input.inputs.clone()).await?;
            Ok(Ran {
                finished: event_json(&MultiEvent::SubtaskFinished(Box::new(result.clone()))),
                result: serde_json::to_value(&result).unwrap_or_default(),
                failure,
            })
        })
        .await
    }
}

/// The child task that runs subtask `index` of `parent`: the parent's
/// owner, session, step limit, model and cache choice.
fn child(
    parent: &TaskRecord,
    task: &str,
    subtask: &Subtask,
    index: usize,
    inputs: Vec<(Subtask, String)>,
) -> TaskRecord {
    let input = ChildInput {
        task: task.to_string(),
        subtask: subtask.clone(),
        inputs,
    };
    TaskRecord {
        kind: TaskKind::Subtask,
        model: parent.model.clone(),
        input: Some(serde_json::to_value(&input).unwrap_or_default()),
        cache: parent.cache,
        parent: Some(parent.task_id.clone()),
        ..TaskRecord::queued(
            child_id(&parent.task_id, index),
            parent.owner.clone(),
            subtask.description.clone(),
            parent.session_id.clone(),
            parent.max_steps,
        )
    }
}

/// A child's subtask result once it has ended: its own (it completed, or
/// its model failed), else one that says why it did not finish.
fn child_result(subtask: &Subtask, child: &TaskRecord) -> Option<SubtaskResult> {
    let ended = child.state.finished()?;
    let result = ended
        .result()
        .and_then(|result| serde_json::from_value::<SubtaskResult>(result.clone()).ok());
    Some(result.unwrap_or_else(|| {
        let why = match ended {
            Finished::Failed(error) => error.clone(),
            Finished::Cancelled => "cancelled".to_string(),
            Finished::Completed(_) => "its result cannot be read".to_string(),
        };
        multi::not_run(subtask, SubtaskStatus::Failed, Some(why))
    }))
}
