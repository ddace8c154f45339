//! The embedded queue: durable in the store, delivered in process.
//!
//! Publishing hands the task id to a dispatcher in this process, which runs
//! it through the same [`Worker::deliver`] that `agent_worker` runs for a
//! Pub/Sub push, with the same answers: done, or retry later (as Pub/Sub
//! redelivers after a 503). Nothing is kept only in memory: the task is
//! already `queued` in the store, and a sweep of the store just after start-up
//! and every few seconds delivers what a stopped process left behind (queued
//! tasks, running ones whose lease has passed, and finished ones whose
//! callback is still owed).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};

use super::{Queue, QueueError};
use crate::delivery::Delivery;
use crate::store::TaskStore;
use crate::worker::{Disposition, Worker};

/// How often the store is swept for tasks nobody is delivering.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// When the first sweep runs, after start-up.
const FIRST_SWEEP_AFTER: Duration = Duration::from_millis(500);
/// Redelivery backoff after a transient failure: 1 s, doubling, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Job {
    task_id: String,
    delivery_id: String,
    attempt: u32,
    /// The trace of the run that queued it.
    traceparent: Option<String>,
}

pub(crate) struct LocalQueue {
    jobs: mpsc::UnboundedSender<Job>,
}

impl LocalQueue {
    /// Starts the dispatcher on the current runtime; it runs at most
    /// `concurrency` tasks at once and lives as long as the process.
    pub(crate) fn start(worker: Arc<Worker>, tasks: Arc<dyn TaskStore>, concurrency: usize) -> LocalQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(worker, tasks, concurrency, tx.clone(), rx));
        LocalQueue { jobs: tx }
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn publish(&self, task_id: &str) -> Result<String, QueueError> {
        let _span = super::send_span("local", "local", task_id).entered();
        let delivery_id = format!("local-{}", uuid::Uuid::new_v4());
        self.jobs
            .send(Job {
                task_id: task_id.to_string(),
                delivery_id: delivery_id.clone(),
                attempt: 1,
                // The hop keeps the submitter's trace, as a Pub/Sub message's
                // attribute does.
                traceparent: crate::telemetry::traceparent(),
            })
            .map_err(|_| {
                QueueError::Unavailable("the local queue has stopped (the process is shutting down)".into())
            })?;
        Ok(delivery_id)
    }
}

async fn dispatch(
    worker: Arc<Worker>,
    tasks: Arc<dyn TaskStore>,
    concurrency: usize,
    requeue: mpsc::UnboundedSender<Job>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    // Task ids this process is delivering or will redeliver, so the sweep
    // does not pile a second delivery on each (the claim would refuse it
    // anyway; this only saves the work).
    let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
    // The first sweep waits a moment: it is a store query that would
    // otherwise compete with the process's first requests (it cost about a
    // millisecond of cold start when it ran at once).
    let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_SWEEP_AFTER, SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = sweep.tick() => {
                // Tasks to run, then finished tasks whose callback is still
                // owed (their worker stopped before it went out): a
                // delivery of a finished task sends it.
                let now = SystemTime::now();
                let due = match tasks.runnable(now, 100).await {
                    Ok(mut ids) => tasks.callbacks_due(now, 100).await.map(|owed| {
                        ids.extend(owed);
                        ids
                    }),
                    Err(err) => Err(err),
                };
                match due {
                    Ok(ids) => {
                        for task_id in ids {
                            if lock(&pending).contains(&task_id) {
                                continue;
                            }
                            let _ = requeue.send(Job {
                                task_id,
                                delivery_id: format!("local-sweep-{}", uuid::Uuid::new_v4()),
                                attempt: 1,
                                traceparent: None,
                            });
                        }
                    }
                    Err(err) => tracing::warn!(%err, "the local queue could not sweep the store for tasks"),
                }
                continue;
            }
        };
        if !lock(&pending).insert(job.task_id.clone()) && job.attempt == 1 {
            // Already being delivered by this process.
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (worker, requeue, pending) = (worker.clone(), requeue.clone(), pending.clone());
        tokio::spawn(async move {
            let delivery = Delivery {
                task_id: job.task_id.clone(),
                message_id: job.delivery_id.clone(),
                delivery_attempt: Some(job.attempt),
                subscription: None,
                traceparent: job.traceparent.clone(),
            };
            let disposition = worker.deliver(&delivery).await;
            drop(slot);
            match disposition {
                Disposition::Done(_) => {
                    lock(&pending).remove(&job.task_id);
                }
                Disposition::Retry { after, .. } => {
                    let backoff = Duration::from_secs(1u64 << job.attempt.saturating_sub(1).min(6));
                    tokio::time::sleep(after.max(backoff).min(MAX_BACKOFF)).await;
                    let _ = requeue.send(Job {
                        attempt: job.attempt + 1,
                        ..job
                    });
                }
            }
        });
    }
}

fn lock(pending: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
