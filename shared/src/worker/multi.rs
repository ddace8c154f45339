//! What every orchestrated queued run shares (a multi-agent run's parent,
//! a research): its roles, what earlier attempts left, and running under
//! the task's claim with its events stored and its outcome recorded.

use super::{Disposition, Worker, transient};
use crate::agent::RunError;
use crate::multi::{Earlier, MultiEvent, RoutedRoles, Spent};
use crate::store::{Finished, TaskRecord};

impl Worker {
    /// What earlier attempts of `task` left: the plan they followed and
    /// the subtasks they completed (their `plan` and `subtask_finished`
    /// events), kept by a redelivered run (its worker died, or its planner
    /// or synthesis was unavailable).
    pub(super) async fn earlier_run(&self, task: &TaskRecord) -> Option<Earlier> {
        let mut earlier = Earlier::default();
        for event in self.earlier_as::<MultiEvent>(task).await? {
            match event {
                MultiEvent::Plan(plan) => earlier.plan = Some(plan),
                MultiEvent::SubtaskFinished(result) => earlier.done.push(*result),
                _ => {}
            }
        }
        Some(earlier)
    }

    /// The models of an orchestrated run of `task`: the one it asked for
    /// (checked when it was submitted: refused now only when the
    /// allow-list changed since, which no attempt will undo), else each
    /// role's tier.
    pub(super) fn roles_for<'a>(&'a self, task: &'a TaskRecord) -> Result<RoutedRoles<'a>, String> {
        let requested = match &task.model {
            None => None,
            Some(asked) => Some(
                self.models
                    .route(&task.task, self.tools.names().len(), Some(asked))
                    .map_err(|refused| refused.to_string())?,
            ),
        };
        Ok(RoutedRoles {
            models: &self.models,
            requested,
            cache: self.cache.as_ref().filter(|_| task.cache),
            principal: &task.owner,
        })
    }

    /// Runs an orchestrated run (multi-agent, research) under the task's
    /// claim: `work` reports its events through the sender it is given,
    /// which a writer beside it stores in order as the task's events (as
    /// an agent run's steps are); the lease is kept; the outcome is
    /// recorded with everything `spent`, or the claim released for a retry
    /// after a transient model failure.
    pub(super) async fn run_orchestrated<Fut, T>(
        &self,
        task: &TaskRecord,
        spent: &Spent,
        work: impl FnOnce(tokio::sync::mpsc::UnboundedSender<serde_json::Value>) -> Fut,
    ) -> Disposition
    where
        Fut: std::future::Future<Output = Result<T, RunError>>,
        T: serde::Serialize,
    {
        let (task_id, attempt) = (task.task_id.as_str(), task.attempts);
        let Some(result) = self.while_held(task_id, attempt, work).await else {
            return self.claim_lost(task_id, attempt).await;
        };
        match result {
            Ok(answer) => {
                let result = serde_json::to_value(&answer).unwrap_or_default();
                // Every call of the run, counted with the outcome.
                self.finish(task, Finished::Completed(result), spent.charge().as_ref())
                    .await
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
}
