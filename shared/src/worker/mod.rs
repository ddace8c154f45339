//! Runs a delivered task, once in effect, whatever the queue repeats.
//!
//! Pub/Sub delivers at least once: a message can arrive twice, be
//! published twice, or come back after its worker died. The store's claim
//! decides who runs a task (`queued` to `running`, with a lease that the
//! running worker renews), and every later write is fenced by the claim's
//! attempt number, so a worker that lost its claim cannot overwrite the
//! one that holds it. A task cancelled while it runs is no longer this
//! worker's either: its run stops before its next model or tool call
//! (`StillHeld`). What the queue should do next is the
//! [`Disposition`]: done (acknowledge: the task finished, failed for good,
//! or is someone else's), or retry (a transient failure: Pub/Sub
//! redelivers after a 503, the local queue after a backoff). A finished
//! task is acknowledged only once the callback it owes is settled
//! ([`crate::callback`]): a worker that dies before leaves its message
//! unacknowledged, and the redelivery sends the callback.
//!
//! - `agent`: a queued agent run, and the check every queued run makes
//!   before its paid calls.
//! - `batch`: a queued chat batch, resumed item by item.
//! - `multi`: what every orchestrated run shares (its roles, what earlier
//!   attempts left).
//! - `fan`: a queued multi-agent run, its subtasks fanned out as child
//!   tasks across workers.
//! - `child`: a child task's run, its count in its parent, and publishing
//!   children and parents again.
//! - `research`: a research, its researchers fanned out likewise.

mod agent;
mod batch;
mod child;
mod fan;
mod multi;
mod research;

pub use fan::{ChildInput, Fanned, MultiInput};
pub use research::SubtopicInput;

use agent::StillHeld;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::Instrument;

use crate::App;
use crate::cache::ResponseCache;
use crate::callback::{Callbacks, Settled};
use crate::config::TaskSettings;
use crate::delivery::Delivery;
use crate::http::Metrics;
use crate::llm::ModelError;
use crate::llm::routed::Models;
use crate::store::{Charge, Claim, Finished, StoreError, TaskEvent, TaskKind, TaskRecord, TaskStatus, TaskStore};
use crate::task::AgentResponse;
use crate::tools::Registry;

/// What the queue should do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Acknowledge it; the reason is for the log.
    Done(String),
    /// Deliver it again, not before `after`.
    Retry { after: Duration, reason: String },
}

/// Redelivery delay after a transient failure when nothing better is known.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Owed callbacks one sweep sends at once.
const SWEEP_CONCURRENCY: usize = 8;

/// What one sweep of owed callbacks did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Swept {
    /// Callbacks found owed (at most the sweep's limit).
    pub owed: usize,
    /// Delivered, or given up after `WEBHOOK_ATTEMPTS`, or found settled.
    pub settled: usize,
    /// Left for later: another deliverer holds them, or their backoff runs.
    pub later: usize,
    /// Left pending because the store failed; the next sweep tries again.
    pub store_errors: usize,
}

pub struct Worker {
    /// Each agent task's model: the one it asked for, else routed by its
    /// text.
    models: Arc<Models>,
    /// The response cache, in the scope of each task's owner.
    cache: Option<Arc<ResponseCache>>,
    /// A chat batch's turns, as the chat function runs them.
    chat: crate::chat::Chat,
    tools: Registry,
    tasks: Arc<dyn TaskStore>,
    metrics: Metrics,
    settings: TaskSettings,
    callbacks: Callbacks,
    /// Where a fanned-out run's children and resumed parents are published:
    /// the app's queue (weak: the local queue holds this worker).
    queue: std::sync::Weak<tokio::sync::OnceCell<Arc<dyn crate::queue::Queue>>>,
    queue_settings: crate::config::QueueSettings,
}

impl Worker {
    /// A worker running tasks with `tools`: the caller builds them once
    /// (the agent function shares its own with the local queue's worker).
    pub fn new(app: &App, tools: Registry) -> Worker {
        let settings = app.settings.tasks.clone();
        Worker {
            callbacks: Callbacks::new(&settings, &app.metrics, app.stores.tasks.clone()),
            models: app.models.clone(),
            cache: app.cache.clone(),
            chat: crate::chat::Chat::new(app),
            tools,
            tasks: app.stores.tasks.clone(),
            metrics: app.metrics.clone(),
            settings,
            queue: Arc::downgrade(&app.queue),
            queue_settings: app.settings.queue.clone(),
        }
    }

    /// Runs the delivered task if this delivery wins its claim.
    pub async fn deliver(&self, delivery: &Delivery) -> Disposition {
        // The queued hop's consumer span: a child of the span that sent the
        // message, so the run is in the submitter's trace; `INFO`, so the
        // run's log lines carry that trace too.
        let span = tracing::info_span!(
            "deliver",
            otel.name = "process task",
            otel.kind = "consumer",
            task_id = %delivery.task_id,
            message_id = %delivery.message_id,
            trace = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        crate::telemetry::continue_from_message(&span, delivery.traceparent.as_deref());
        let disposition = self.deliver_inner(delivery).instrument(span).await;
        let outcome = match &disposition {
            Disposition::Done(_) => "done",
            Disposition::Retry { .. } => "retry",
        };
        self.metrics.inc(
            "worker_deliveries_total",
            "Task deliveries handled by the worker, by what the queue was told.",
            &[("outcome", outcome)],
        );
        disposition
    }

    async fn deliver_inner(&self, delivery: &Delivery) -> Disposition {
        let task_id = delivery.task_id.as_str();
        let now = SystemTime::now();
        let claim = self
            .tasks
            .claim(
                task_id,
                &delivery.message_id,
                self.settings.lease,
                self.settings.max_attempts,
                now,
            )
            .await;
        let task = match claim {
            Ok(Claim::Claimed(task)) => task,
            Ok(Claim::NotFound) => {
                tracing::warn!(task_id, message_id = %delivery.message_id, "a delivery names an unknown task; acknowledged");
                self.count_task("unknown");
                return Disposition::Done(format!("there is no task {task_id:?}"));
            }
            Ok(Claim::Finished(task)) if task.status() == TaskStatus::Cancelled => {
                // Its callback is the cancel's to send, and this delivery's
                // if the cancel did not get to it.
                tracing::info!(task_id, "a delivery of a cancelled task; not run");
                self.count_task("cancelled");
                return self.settle_owed(&task, format!("task {task_id} was cancelled")).await;
            }
            Ok(Claim::Finished(task)) if task.parent.is_some() => {
                // A child that ended: its parent may still wait to be queued.
                self.count_task("duplicate");
                return match self.resume_parent_if_ready(&task).await {
                    Some(disposition) => disposition,
                    None => Disposition::Done(format!("task {task_id} is already {}", task.status().as_str())),
                };
            }
            Ok(Claim::Finished(task)) => {
                // A duplicate, or the redelivery of a task whose worker
                // died before its callback went out: then it goes out now.
                tracing::info!(
                    task_id,
                    status = task.status().as_str(),
                    callback_pending = task.callback_pending(),
                    "a delivery of a finished task"
                );
                self.count_task("duplicate");
                let done = format!("task {task_id} is already {}", task.status().as_str());
                return self.settle_owed(&task, done).await;
            }
            Ok(Claim::Held {
                same_delivery: false, ..
            }) => {
                if let Some(disposition) = self.waiting_parent(task_id).await {
                    tracing::info!(task_id, "a delivery of a run waiting for its children");
                    self.count_task("duplicate");
                    return disposition;
                }
                tracing::info!(task_id, "a duplicate delivery of a running task; acknowledged");
                self.count_task("duplicate");
                return Disposition::Done(format!("task {task_id} is running under another delivery"));
            }
            Ok(Claim::Held {
                same_delivery: true,
                lease_until,
            }) => {
                // This message came back while its claim still holds: the
                // worker that took it most likely died. Retry once the lease
                // has passed.
                let after = lease_until.duration_since(now).unwrap_or_default() + Duration::from_millis(100);
                return Disposition::Retry {
                    after,
                    reason: format!("task {task_id} is held by this message's earlier delivery until its lease passes"),
                };
            }
            Ok(Claim::Exhausted(task)) => {
                tracing::error!(
                    task_id,
                    attempts = task.attempts,
                    "a task ran out of attempts and is failed"
                );
                self.count_task("failed");
                if let Some(disposition) = self.resume_parent_if_ready(&task).await {
                    return disposition;
                }
                return self
                    .settle_owed(&task, format!("task {task_id} ran out of attempts"))
                    .await;
            }
            Err(err) => return store_retry(&err),
        };
        self.count_task("claimed");
        tracing::info!(
            task_id,
            attempt = task.attempts,
            message_id = %delivery.message_id,
            delivery_attempt = ?delivery.delivery_attempt,
            "running a queued task"
        );
        self.run(task).await
    }

    async fn run(&self, task: TaskRecord) -> Disposition {
        match task.kind {
            TaskKind::Agent => self.run_agent(task).await,
            TaskKind::ChatBatch => self.run_batch(task).await,
            TaskKind::MultiAgent => self.run_multi(task).await,
            TaskKind::Research => self.run_research(task).await,
            TaskKind::Subtask => self.run_subtask(task).await,
            TaskKind::Subtopic => self.run_subtopic(task).await,
        }
    }

    /// The data of the events that attempts before `attempt` stored, in
    /// order: what a redelivered run may keep instead of doing again.
    async fn earlier_events(&self, task_id: &str, attempt: u32) -> Result<Vec<serde_json::Value>, StoreError> {
        const PAGE: usize = 100;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let events = self.tasks.events(task_id, after, PAGE).await?;
            let more = events.len() == PAGE;
            for event in events {
                after = Some((event.attempt, event.index));
                if event.attempt < attempt {
                    out.push(event.data);
                }
            }
            if !more {
                return Ok(out);
            }
        }
    }

    /// The events earlier attempts of `task` stored that read as an `E`
    /// (an orchestrated run's own kind of event), in order: what a
    /// redelivered run keeps rather than paying for again. `None` on a
    /// first attempt, or when they cannot be read (the run then starts
    /// over, which costs calls but loses nothing).
    async fn earlier_as<E: serde::de::DeserializeOwned>(&self, task: &TaskRecord) -> Option<Vec<E>> {
        if task.attempts <= 1 {
            return None;
        }
        match self.earlier_events(&task.task_id, task.attempts).await {
            Ok(events) => Some(
                events
                    .into_iter()
                    .filter_map(|data| serde_json::from_value(data).ok())
                    .collect(),
            ),
            Err(err) => {
                tracing::warn!(%err, task_id = %task.task_id, "earlier attempts' events could not be read; the run starts over");
                None
            }
        }
    }

    /// Runs `work` while this attempt holds the task. `work` reports its
    /// progress through the sender it is given, and a writer beside it
    /// stores each report, in order, as the task's next event (so a slow
    /// store does not slow the run); the lease is renewed meanwhile.
    /// `None` when the claim was lost (a cancel, another delivery): the
    /// run is dropped at its next await.
    async fn while_held<Fut: std::future::Future>(
        &self,
        task_id: &str,
        attempt: u32,
        work: impl FnOnce(tokio::sync::mpsc::UnboundedSender<serde_json::Value>) -> Fut,
    ) -> Option<Fut::Output> {
        let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let running = work(events_tx);
        let record_events = async {
            let mut index = 0;
            while let Some(data) = events_rx.recv().await {
                let event = TaskEvent {
                    attempt,
                    index,
                    data,
                    created_at: String::new(),
                };
                if let Err(err) = self.tasks.add_event(task_id, &event).await {
                    tracing::warn!(%err, task_id, "a progress event could not be stored");
                }
                index += 1;
            }
        };
        tokio::select! {
            (output, ()) = async { tokio::join!(running, record_events) } => Some(output),
            () = self.keep_claim(task_id, attempt) => None,
        }
    }

    /// What is left to a run whose claim was lost while it ran: a
    /// cancel's callback, should the cancel not have sent it.
    async fn claim_lost(&self, task_id: &str, attempt: u32) -> Disposition {
        tracing::warn!(
            task_id,
            attempt,
            "the task's claim was lost (cancelled or taken over) while it ran; stopped"
        );
        self.settle(task_id, format!("task {task_id} is no longer this delivery's to run"))
            .await
    }

    /// Renews the lease every third of it; returns only when the claim is
    /// lost (another worker took the task after this one missed renewals).
    async fn keep_claim(&self, task_id: &str, attempt: u32) {
        let every = self.settings.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            match self
                .tasks
                .renew(task_id, attempt, self.settings.lease, SystemTime::now())
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => tracing::warn!(%err, task_id, "the task's lease could not be renewed; will try again"),
            }
        }
    }

    async fn complete(&self, task: &TaskRecord, response: AgentResponse, charge: Option<Charge>) -> Disposition {
        let result = serde_json::to_value(&response).unwrap_or_default();
        // Counted in the commit that records the outcome: once, and only
        // if this claim still holds the task.
        self.finish(task, Finished::Completed(result), charge.as_ref()).await
    }

    /// Fails the task, counting what the attempt's calls spent (`spent`)
    /// in the same commit.
    async fn fail(&self, task: &TaskRecord, error: &str, spent: Option<Charge>) -> Disposition {
        self.finish(task, Finished::Failed(error.to_string()), spent.as_ref())
            .await
    }

    /// A retried attempt's calls are counted with the release that gives
    /// its claim back (in the same commit), a failed one's with the outcome.
    async fn retry_or_fail(&self, task: &TaskRecord, err: &ModelError, spent: Option<Charge>) -> Disposition {
        if task.attempts >= self.settings.max_attempts {
            let message = format!(
                "gave up after {} attempts; the last one failed: {}",
                task.attempts,
                crate::http::ApiError::from(err.clone()).message
            );
            return self.fail(task, &message, spent).await;
        }
        tracing::warn!(task_id = %task.task_id, attempt = task.attempts, %err, "a transient failure; the task will be retried");
        if let Err(release_err) = self
            .tasks
            .release_charged(&task.task_id, task.attempts, spent.as_ref())
            .await
        {
            // The lease will pass on its own; the redelivery claims it then
            // (the attempt's calls go uncounted: nothing recorded them).
            tracing::warn!(%release_err, task_id = %task.task_id, "the task could not be released");
        }
        let after = match err {
            ModelError::Unavailable {
                retry_after: Some(after),
                ..
            } => *after,
            _ => RETRY_AFTER,
        };
        Disposition::Retry {
            after,
            reason: err.to_string(),
        }
    }

    async fn finish(&self, task: &TaskRecord, outcome: Finished, charge: Option<&Charge>) -> Disposition {
        let task_id = task.task_id.as_str();
        match self
            .tasks
            .finish_charged(task_id, task.attempts, &outcome, charge)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    task_id,
                    attempt = task.attempts,
                    "the task was cancelled or taken over before it finished; its outcome is dropped"
                );
                return Disposition::Done(format!("task {task_id} is no longer this delivery's to finish"));
            }
            Err(err) => {
                // Not recorded: the redelivery runs it again. Release so it
                // need not wait for the lease.
                let _ = self.tasks.release(task_id, task.attempts).await;
                return store_retry(&err);
            }
        }
        let status = outcome.status();
        self.count_task(status.as_str());
        tracing::info!(
            task_id,
            status = status.as_str(),
            attempt = task.attempts,
            "task finished"
        );
        let done = format!("task {task_id} is {}", status.as_str());
        if task.callback_url.is_none() {
            return Disposition::Done(done);
        }
        // The outcome and `callback: pending` are stored together: a crash
        // from here on leaves the callback to the next delivery.
        fault_point(FINISHED_BEFORE_CALLBACK);
        self.settle(task_id, done).await
    }

    /// [`settle`](Self::settle) when `task` still owes its callback; else
    /// done at once, without a store call.
    async fn settle_owed(&self, task: &TaskRecord, done: String) -> Disposition {
        if !task.callback_pending() {
            return Disposition::Done(done);
        }
        self.settle(&task.task_id, done).await
    }

    /// Sends the task's callback if it is owed and nobody else is sending
    /// it: done once it is settled (or nothing is owed), else retry, so the
    /// queue comes back for it (Pub/Sub after a 503, the local queue after
    /// a backoff) until it is delivered or its attempts are spent.
    async fn settle(&self, task_id: &str, done: String) -> Disposition {
        match self.callbacks.settle(task_id).await {
            Settled::Done(_) => Disposition::Done(done),
            Settled::Later(until) => Disposition::Retry {
                after: until.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(100),
                reason: format!("task {task_id}'s callback is pending under another delivery or its backoff"),
            },
            Settled::Store(err) => {
                tracing::warn!(%err, task_id, "the task's callback could not be leased or recorded; it stays pending");
                store_retry(&err)
            }
        }
    }

    /// Sends the callbacks still owed by finished tasks (at most `limit`,
    /// the oldest first, a few at a time): those no delivery will bring
    /// back, because the message that finished their task was acknowledged
    /// before the callback went out (a cancel request that died before
    /// sending it, a worker that died while sending the callback of a task
    /// it found out of attempts). The local queue's sweep does this on its
    /// own; on Pub/Sub, a scheduler calls the worker's `POST /sweep`.
    pub async fn sweep_callbacks(&self, limit: usize) -> Result<Swept, StoreError> {
        use futures_util::StreamExt;

        let owed = self.tasks.callbacks_due(SystemTime::now(), limit).await?;
        let mut swept = Swept {
            owed: owed.len(),
            ..Swept::default()
        };
        let mut settling = futures_util::stream::iter(owed)
            .map(|task_id| async move { self.callbacks.settle(&task_id).await })
            .buffer_unordered(SWEEP_CONCURRENCY);
        while let Some(settled) = settling.next().await {
            match settled {
                Settled::Done(_) => swept.settled += 1,
                Settled::Later(_) => swept.later += 1,
                Settled::Store(err) => {
                    tracing::warn!(%err, "an owed callback could not be leased or recorded; it stays pending");
                    swept.store_errors += 1;
                }
            }
        }
        Ok(swept)
    }

    fn count_task(&self, outcome: &str) {
        self.metrics.inc(
            "worker_tasks_total",
            "Tasks seen by the worker: claimed, completed, failed, stopped (cancelled or taken over while running), \
             cancelled (delivered after a cancel), duplicate or unknown.",
            &[("outcome", outcome)],
        );
    }
}

/// The `type` of a task event that holds a chat batch item's result
/// (`{"type": "item", "result": BatchResult}`); the progress stream sends it
/// as an `item` event.
pub const ITEM_EVENT: &str = "item";

/// The fault point between storing a task's outcome and sending its
/// callback, for [`ABORT_AT_VARIABLE`] (tests only).
pub const FINISHED_BEFORE_CALLBACK: &str = "finished-before-callback";

/// The variable that names a fault point to abort at: honoured only by
/// test builds (the `testing` feature); a release build ignores it.
pub const ABORT_AT_VARIABLE: &str = "AGENT_CORE_TEST_ABORT_AT";

/// A test-only crash: when `AGENT_CORE_TEST_ABORT_AT` names `point`, the
/// process aborts here, as if killed, so a test can show what survives.
/// Compiled only into test builds (`cfg(test)` or the `testing` feature,
/// which only dev-dependencies enable): a release build has no such
/// point, whatever its environment says.
#[cfg(any(test, feature = "testing"))]
fn fault_point(point: &str) {
    if std::env::var(ABORT_AT_VARIABLE).is_ok_and(|at| at == point) {
        eprintln!("{ABORT_AT_VARIABLE}={point}: aborting here");
        std::process::abort();
    }
}

#[cfg(not(any(test, feature = "testing")))]
fn fault_point(_point: &str) {}

/// Model failures that a later attempt may not meet: the provider was
/// unavailable or slow. A refusal (4xx) or a blocked prompt will repeat.
fn transient(err: &ModelError) -> bool {
    matches!(err, ModelError::Unavailable { .. } | ModelError::Timeout(_))
}

fn store_retry(err: &StoreError) -> Disposition {
    tracing::warn!(%err, "the task store failed; the delivery will be retried");
    Disposition::Retry {
        after: RETRY_AFTER,
        reason: err.to_string(),
    }
}
