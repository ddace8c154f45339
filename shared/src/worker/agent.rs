//! A queued agent run (`TaskKind::Agent`): the tool-calling loop under the
//! task's claim, and the checkpoint every queued run passes before its
//! paid calls (`StillHeld`).

use async_trait::async_trait;

use super::{Disposition, Worker, transient};
use crate::agent::{Checkpoint, Interrupted, RunError, Step};
use crate::store::{TaskRecord, TaskState, TaskStatus, TaskStore};

impl Worker {
    /// Runs an agent task: the tool-calling loop on its task, its steps
    /// stored as its events.
    pub(super) async fn run_agent(&self, task: TaskRecord) -> Disposition {
        let task_id = task.task_id.clone();
        let attempt = task.attempts;

        // The task's model: the one it asked for, else routed by its text;
        // what the run's calls spent, for a failed outcome to count.
        let tools = self.tools.names().len();
        let model = match &task.model {
            None => self.models.by_rules(&task.task, tools),
            Some(asked) => match self.models.route(&task.task, tools, Some(asked)) {
                Ok(route) => self.models.routed(&route),
                // Checked when it was submitted: refused now only when the
                // allow-list changed since, which no attempt will undo.
                Err(refused) => return self.fail(&task, &refused.to_string(), None).await,
            },
        }
        .with_cache(self.cache.as_ref().filter(|_| task.cache), &task.owner);
        let spent = crate::task::Spent::default();
        let tally = crate::task::Tally::new(&model, &spent);
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task_id,
            attempt,
        };
        let running = self.while_held(&task_id, attempt, |events| async {
            let on_step = move |step: &Step| {
                let _ = events.send(serde_json::to_value(step).unwrap_or_default());
            };
            // A capped max_steps was reported in the 202 answer.
            crate::task::run_checked(&tally, &self.tools, &task, &on_step, &held).await
        });
        let Some(result) = running.await else {
            return self.claim_lost(&task_id, attempt).await;
        };

        match result {
            // Each model's calls under that model (a fallback's too).
            Ok(response) => self.complete(&task, response, spent.charge()).await,
            Err(RunError::Interrupted(why)) => {
                // Whoever took the task (a cancel, another delivery) has
                // written its state; all that may be left to this delivery
                // is a cancel's callback that its request did not send.
                tracing::info!(task_id = %task_id, attempt, %why, "the run stopped before its next call");
                self.count_task("stopped");
                // A cancel's callback, should the cancel not have sent it.
                self.settle(&task_id, format!("task {task_id} stopped: {why}")).await
            }
            Err(RunError::Model(err)) if transient(&err) => self.retry_or_fail(&task, &err, spent.charge()).await,
            Err(RunError::Model(err)) => {
                let message = crate::http::ApiError::from(err).message;
                self.fail(&task, &message, spent.charge()).await
            }
        }
    }
}

/// The [`Checkpoint`] of a queued task's run: the task is still `running`
/// under this attempt. One read of the task before each model call (but
/// the first) and each turn's tool calls: on Firestore a document read, at
/// most one per call the run makes, against a write (read and commit) for
/// a fenced renewal, which the lease keeps to one every third of its length
/// instead. A read that fails lets the run go on: the outcome is fenced by
/// `finish` all the same, and a store that is down should not stop a run
/// whose model answers.
pub(super) struct StillHeld<'a> {
    pub(super) tasks: &'a dyn TaskStore,
    pub(super) task_id: &'a str,
    pub(super) attempt: u32,
}

#[async_trait]
impl Checkpoint for StillHeld<'_> {
    async fn pass(&self) -> Result<(), Interrupted> {
        match self.tasks.get(self.task_id).await {
            Ok(Some(task)) if task.state == TaskState::Running && task.attempts == self.attempt => Ok(()),
            Ok(Some(task)) if task.status() == TaskStatus::Cancelled => {
                Err(Interrupted(format!("task {} was cancelled", self.task_id)))
            }
            Ok(Some(task)) => Err(Interrupted(format!(
                "task {} is {} under attempt {}, no longer this run's (attempt {})",
                self.task_id,
                task.status().as_str(),
                task.attempts,
                self.attempt
            ))),
            Ok(None) => Err(Interrupted(format!("task {} no longer exists", self.task_id))),
            Err(err) => {
                tracing::warn!(%err, task_id = self.task_id, "could not check that the task is still this run's; going on");
                Ok(())
            }
        }
    }
}
