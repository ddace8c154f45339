//! A queued multi-agent run (`TaskKind::MultiAgent`): the synchronous
//! run's plan, waves and synthesis (`multi::run`), on this worker, with
//! its progress stored as the task's events and the same claim, lease,
//! cancellation and outcome as an agent task.

use super::{Disposition, StillHeld, Worker, transient};
use crate::agent::RunError;
use crate::multi::{self, MultiAgentResponse, MultiRun, RoutedRoles, Spent};
use crate::store::{Finished, TaskEvent, TaskRecord};

/// What a queued multi-agent run keeps in its task's `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MultiInput {
    pub max_subtasks: usize,
}

impl Worker {
    pub(super) async fn run_multi(&self, task: TaskRecord) -> Disposition {
        let task_id = task.task_id.clone();
        let attempt = task.attempts;
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
        let requested = match &task.model {
            None => None,
            Some(asked) => match self.models.route(&task.task, self.tools.names().len(), Some(asked)) {
                Ok(route) => Some(route),
                // Checked at submission: refused now only when the
                // allow-list changed since, which no attempt will undo.
                Err(refused) => return self.fail(&task, &refused.to_string(), None).await,
            },
        };
        let roles = RoutedRoles {
            models: &self.models,
            requested,
            cache: self.cache.as_ref().filter(|_| task.cache),
            principal: &task.owner,
        };
        let run = MultiRun {
            task: task.task.clone(),
            session_key: crate::owned::session_key(&task.owner, &task.session_id),
            max_subtasks: input.max_subtasks,
            max_steps: task.max_steps,
            concurrency: multi::CONCURRENCY,
        };
        let spent = Spent::default();
        // Events are stored in the order they happen, by a writer beside
        // the run, as an agent run's steps are.
        let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task_id,
            attempt,
        };
        let running = async {
            let on_event = move |event: serde_json::Value| {
                let _ = events_tx.send(event);
            };
            multi::run(&roles, &self.tools, &run, &spent, Some(&held), &on_event).await
        };
        let record_events = async {
            let mut index = 0;
            while let Some(data) = events_rx.recv().await {
                let event = TaskEvent {
                    attempt,
                    index,
                    data,
                    created_at: String::new(),
                };
                if let Err(err) = self.tasks.add_event(&task_id, &event).await {
                    tracing::warn!(%err, task_id = %task_id, "a progress event could not be stored");
                }
                index += 1;
            }
        };
        let work = async { tokio::join!(running, record_events).0 };
        let result = tokio::select! {
            result = work => result,
            () = self.keep_claim(&task_id, attempt) => {
                tracing::warn!(task_id = %task_id, attempt, "the run's claim was lost (cancelled or taken over) while it ran; stopped");
                return self.settle(&task_id, format!("task {task_id} is no longer this delivery's to run")).await;
            }
        };
        match result {
            Ok(outcome) => {
                let response = MultiAgentResponse {
                    task_id: task_id.clone(),
                    session_id: task.session_id.clone(),
                    outcome,
                };
                let result = serde_json::to_value(&response).unwrap_or_default();
                // Every call of the run, counted with the outcome.
                self.finish(&task, Finished::Completed(result), spent.charge().as_ref())
                    .await
            }
            Err(RunError::Interrupted(why)) => {
                tracing::info!(task_id = %task_id, attempt, %why, "the run stopped before its next call");
                self.count_task("stopped");
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
