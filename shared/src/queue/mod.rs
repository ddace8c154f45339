//! Where asynchronous tasks wait for a worker.
//!
//! A task is written to the store as `queued` before it is published, so
//! the store, not the queue, is the record of what must run: a queue only
//! says "look at task X". That is what lets both queues deliver at least
//! once while each task runs once in effect (the worker's claim decides),
//! and lets the local queue be durable with no state of its own.
//!
//! - `pubsub`: Google Cloud Pub/Sub (`QUEUE=pubsub`); a push subscription
//!   or an Eventarc trigger delivers to `agent_worker`.
//! - `local`: the embedded default (`QUEUE=local`): delivered in process
//!   through the same [`crate::worker::Worker`], swept from the store after
//!   a restart.

pub(crate) mod local;
pub(crate) mod pubsub;

use std::sync::Arc;

use async_trait::async_trait;

use crate::App;
use crate::config::QueueKind;
use crate::tools::Registry;

/// The queued hop's producer span (`send DESTINATION`, OpenTelemetry's
/// messaging conventions): the message carries it on, so the worker's run
/// is its child. `DEBUG`: free unless traces are exported.
pub(crate) fn send_span(system: &'static str, destination: &str, task_id: &str) -> tracing::Span {
    tracing::debug_span!(
        "send",
        otel.name = %format_args!("send {destination}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.type = "send",
        messaging.destination.name = destination,
        task.id = task_id,
    )
}

/// Why a task could not be queued. Nothing was published.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the task queue is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues a notification for `task_id`, returning its message id once
    /// the queue holds it durably. Awaited before answering the client: on
    /// Cloud Run the CPU is throttled once the response is sent.
    async fn publish(&self, task_id: &str) -> Result<String, QueueError>;
}

/// The message every queue carries: the task id and nothing else, so no
/// task content ever sits in a queue.
pub fn message(task_id: &str) -> Vec<u8> {
    serde_json::json!({ "task_id": task_id }).to_string().into_bytes()
}

/// Opens the configured queue. The local queue starts its dispatcher here,
/// so the process that accepts tasks also runs them, with `tools`.
///
/// Opened once per [`App`]: a later call answers the queue the first one
/// opened (whose local worker runs with the first caller's `tools`).
pub async fn open(app: &App, tools: &Registry) -> anyhow::Result<Arc<dyn Queue>> {
    let queue = app.queue.get_or_try_init(|| open_new(app, tools)).await?;
    Ok(queue.clone())
}

/// The app's queue for a function that runs no tasks itself (the chat
/// function, queueing a batch): the one already open, else opened now,
/// with the tools the local queue's worker needs built only then.
pub async fn shared(app: &App) -> anyhow::Result<Arc<dyn Queue>> {
    let queue = app
        .queue
        .get_or_try_init(|| async {
            let tools = crate::tools::registry(&app.settings.tools, &app.stores).await?;
            open_new(app, &tools).await
        })
        .await
        .inspect_err(|err| tracing::error!(err = %format!("{err:#}"), "the task queue could not be opened"))?;
    Ok(queue.clone())
}

/// The queue a worker publishes to (a fanned-out run's children, a
/// resumed parent): the app's, when it is still there; on `agent_worker`,
/// which accepts no tasks, Pub/Sub opened on first use. The local queue is
/// opened with its worker, so it is there before the worker runs.
pub(crate) async fn for_worker(
    cell: &std::sync::Weak<tokio::sync::OnceCell<Arc<dyn Queue>>>,
    settings: &crate::config::QueueSettings,
) -> anyhow::Result<Arc<dyn Queue>> {
    let cell = cell
        .upgrade()
        .ok_or_else(|| anyhow::anyhow!("the task queue was closed"))?;
    let queue = cell
        .get_or_try_init(|| async {
            match settings.kind {
                QueueKind::PubSub => Ok(Arc::new(pubsub::PubSubQueue::connect(settings).await?) as Arc<dyn Queue>),
                QueueKind::Local => Err(anyhow::anyhow!(
                    "QUEUE=local: this process has no local queue open to publish to"
                )),
            }
        })
        .await?;
    Ok(queue.clone())
}

async fn open_new(app: &App, tools: &Registry) -> anyhow::Result<Arc<dyn Queue>> {
    Ok(match app.settings.queue.kind {
        QueueKind::PubSub => Arc::new(pubsub::PubSubQueue::connect(&app.settings.queue).await?),
        QueueKind::Local => {
            if app.settings.on_cloud_run {
                tracing::warn!(
                    "QUEUE=local runs asynchronous tasks in this instance after it has answered, when Cloud Run \
                     may throttle its CPU. Set QUEUE=pubsub and deploy agent_worker behind the topic."
                );
            }
            let worker = Arc::new(crate::worker::Worker::new(app, tools.clone()));
            Arc::new(local::LocalQueue::start(
                worker,
                app.stores.tasks.clone(),
                app.settings.queue.local_concurrency,
            ))
        }
    })
}
