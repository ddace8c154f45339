//! A fanned-out run's children, from the child's side and the queue's:
//! running one under its claim, counting it in its parent as it ends (the
//! store tells the last one, which queues the parent), and publishing
//! children and parents again when a first publish may have failed.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::{Disposition, Worker, store_retry, transient};
use crate::agent::RunError;
use crate::llm::ModelError;
use crate::multi::Spent;
use crate::store::{Charge, Finish, Finished, TaskKind, TaskRecord, TaskState, child_id};

/// What a child's work gives: the task's result (its subtask's or
/// subtopic's), the model error that failed it if one did, and its last
/// event (`subtask_finished`, `subtopic_finished`).
pub(super) struct Ran {
    pub result: serde_json::Value,
    pub failure: Option<ModelError>,
    pub finished: serde_json::Value,
}

impl Worker {
    /// Runs a child's `work` under its claim (its events stored as it
    /// reports them, its last one unless it is to be tried again), then
    /// records its outcome with what it `spent`: completed with its result
    /// (a subtask whose model failed for good is a result too), retried
    /// after a transient failure, or stopped by a cancel.
    pub(super) async fn run_child<Fut>(
        &self,
        task: &TaskRecord,
        spent: &Spent,
        work: impl FnOnce(tokio::sync::mpsc::UnboundedSender<serde_json::Value>) -> Fut,
    ) -> Disposition
    where
        Fut: Future<Output = Result<Ran, RunError>>,
    {
        let (task_id, attempt) = (task.task_id.as_str(), task.attempts);
        let running = self.while_held(task_id, attempt, |events| {
            let last = events.clone();
            let work = work(events);
            async move {
                let ran = work.await;
                if let Ok(ran) = &ran
                    && !ran.failure.as_ref().is_some_and(|err| self.retried(task, err))
                {
                    let _ = last.send(ran.finished.clone());
                }
                ran
            }
        });
        let Some(result) = running.await else {
            return self.claim_lost(task_id, attempt).await;
        };
        match result {
            Ok(ran) => match ran.failure {
                Some(err) if self.retried(task, &err) => self.retry_or_fail(task, &err, spent.charge()).await,
                _ => {
                    self.finish_child(task, Finished::Completed(ran.result), spent.charge())
                        .await
                }
            },
            Err(RunError::Interrupted(why)) => {
                tracing::info!(task_id, attempt, %why, "the child stopped before its next call");
                self.count_task("stopped");
                Disposition::Done(format!("task {task_id} stopped: {why}"))
            }
            Err(RunError::Model(err)) => {
                let message = crate::http::ApiError::from(err).message;
                self.finish_child(task, Finished::Failed(message), spent.charge()).await
            }
        }
    }

    /// Ends a child that cannot run (its input cannot be read, its model
    /// is no longer allowed), saying why.
    pub(super) async fn cannot_run(&self, task: &TaskRecord, why: &str) -> Disposition {
        let why = format!("{} cannot run: {why}", task.task_id);
        self.finish_child(task, Finished::Failed(why), None).await
    }

    /// Publishes `children` (just made, or found unpublished); the parent's
    /// delivery is retried if one cannot be, and its redelivery publishes
    /// what is still queued ([`Worker::waiting_parent`]).
    pub(super) async fn publish_all(&self, parent: &str, children: &[String]) -> Disposition {
        for child in children {
            if let Err(err) = self.publish(child).await {
                return Disposition::Retry {
                    after: super::RETRY_AFTER,
                    reason: format!("a child of task {parent} could not be queued: {err}"),
                };
            }
        }
        tracing::info!(
            task_id = parent,
            children = children.len(),
            "fanned out; waiting for the children"
        );
        Disposition::Done(format!("task {parent} waits for {} children", children.len()))
    }

    async fn publish(&self, task_id: &str) -> Result<(), String> {
        let queue = crate::queue::for_worker(&self.queue, &self.queue_settings)
            .await
            .map_err(|err| format!("{err:#}"))?;
        queue.publish(task_id).await.map(|_| ()).map_err(|err| err.to_string())
    }

    /// A delivery of a waiting parent (the redelivery of the one that
    /// fanned out, whose publishing failed, or a duplicate): `None` when
    /// the task is not one. Children still queued a while after they were
    /// made ([`REPUBLISH_AFTER`]) are published again, as their first
    /// publish may have failed; younger ones are most likely on their way,
    /// so the delivery comes back later rather than publish them twice.
    pub(super) async fn waiting_parent(&self, task_id: &str) -> Option<Disposition> {
        let parent = self.tasks.get(task_id).await.ok()??;
        if !crate::store::waiting(&parent) || !matches!(parent.kind, TaskKind::MultiAgent | TaskKind::Research) {
            return None;
        }
        let now = SystemTime::now();
        let mut young = false;
        for i in 0..crate::task::planned(&parent).len() {
            let id = child_id(task_id, i);
            let Ok(Some(child)) = self.tasks.get(&id).await else {
                continue;
            };
            if child.state != TaskState::Queued {
                continue;
            }
            if made_within(&child.created_at, REPUBLISH_AFTER, now) {
                young = true;
            } else if let Err(err) = self.publish(&id).await {
                tracing::warn!(task_id = id, %err, "a queued child could not be published again");
                young = true;
            }
        }
        Some(match young {
            true => Disposition::Retry {
                after: REPUBLISH_AFTER,
                reason: format!("task {task_id} waits for children just queued; looking again later"),
            },
            false => Disposition::Done(format!("task {task_id} waits for its children")),
        })
    }

    /// Whether a child whose model failed with `err` is tried again (by a
    /// redelivery) rather than ended failed.
    pub(super) fn retried(&self, task: &TaskRecord, err: &ModelError) -> bool {
        transient(err) && task.attempts < self.settings.max_attempts
    }

    /// Records a child's outcome (its calls, not a request: the parent's
    /// run is the request) and, when it was the last of its parent's
    /// children, queues the parent.
    pub(super) async fn finish_child(
        &self,
        task: &TaskRecord,
        outcome: Finished,
        charge: Option<Charge>,
    ) -> Disposition {
        let task_id = task.task_id.as_str();
        let charge = charge.map(|c| c.given_back());
        let status = outcome.status();
        match self
            .tasks
            .finish_counted(task_id, task.attempts, &outcome, charge.as_ref())
            .await
        {
            Ok(Finish::NotHeld) => Disposition::Done(format!("task {task_id} is no longer this delivery's to finish")),
            Ok(Finish::Recorded { parent_ready }) => {
                self.count_task(status.as_str());
                tracing::info!(task_id, status = status.as_str(), parent_ready, "subtask finished");
                if parent_ready {
                    return self.resume_parent(task).await;
                }
                Disposition::Done(format!("task {task_id} is {}", status.as_str()))
            }
            Err(err) => {
                let _ = self.tasks.release(task_id, task.attempts).await;
                store_retry(&err)
            }
        }
    }

    /// Queues the parent of `child`, whose children have all ended; retried
    /// until it is queued (a redelivery of the child finds it ended and
    /// comes back here, [`Worker::resume_parent_if_ready`]).
    async fn resume_parent(&self, child: &TaskRecord) -> Disposition {
        let Some(parent) = &child.parent else {
            return Disposition::Done(format!("task {} has no parent", child.task_id));
        };
        match self.publish(parent).await {
            Ok(()) => Disposition::Done(format!(
                "task {} ended last; its parent {parent} is queued",
                child.task_id
            )),
            Err(err) => Disposition::Retry {
                after: super::RETRY_AFTER,
                reason: format!("the parent {parent} could not be queued: {err}"),
            },
        }
    }

    /// A delivery of a child that has ended: its parent is queued again
    /// if it is ready and not yet taken (the publish after the child's last
    /// step may have failed, or the child ran out of attempts in a claim).
    ///
    /// A parent made ready moments ago was most likely queued by the child
    /// that did it: the delivery comes back later ([`REPUBLISH_AFTER`])
    /// rather than queue it twice.
    pub(super) async fn resume_parent_if_ready(&self, child: &TaskRecord) -> Option<Disposition> {
        let parent_id = child.parent.as_deref()?;
        let parent = self.tasks.get(parent_id).await.ok()??;
        let now = SystemTime::now();
        let ready_since = parent.lease_until.filter(|until| *until <= now)?;
        if !crate::store::waiting(&parent) || parent.children.done < parent.children.created {
            return None;
        }
        if now.duration_since(ready_since).unwrap_or_default() < REPUBLISH_AFTER {
            return Some(Disposition::Retry {
                after: REPUBLISH_AFTER,
                reason: format!("task {parent_id} was just queued again; looking again later"),
            });
        }
        Some(self.resume_parent(child).await)
    }
}

/// How long after a child was made, or a parent made ready, its first
/// publish is taken to have failed if it is still not claimed: far longer
/// than a delivery takes, far shorter than anyone waits.
const REPUBLISH_AFTER: Duration = Duration::from_secs(5);

/// Whether `created_at` (RFC 3339) is less than `within` before `now`; a
/// time that cannot be read is not.
fn made_within(created_at: &str, within: Duration, now: SystemTime) -> bool {
    crate::store::event_time(created_at)
        .ok()
        .and_then(|made| now.duration_since(made).ok())
        .is_some_and(|age| age < within)
}
