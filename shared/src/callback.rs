//! Delivering a finished task's callback so that it survives a crash.
//!
//! The store step that finishes a task records its callback `pending`
//! (`store::callback`); whoever finished it then calls [`Callbacks::settle`],
//! and so does every later delivery of the task that finds it still
//! pending: a Pub/Sub redelivery, the local queue's sweep. Each POST is one
//! attempt leased in the store and recorded there, so:
//!
//! - a worker that dies after finishing a task, or in the middle of a
//!   callback, leaves it `pending`; once its lease passes, the next
//!   deliverer goes on from the attempts already spent;
//! - of deliverers racing, one holds the lease and the others do nothing,
//!   so one callback is recorded `delivered` per task;
//! - `WEBHOOK_ATTEMPTS` bounds the attempts of a callback across every
//!   process, with backoff between them (the next attempt is not leased
//!   before it ends, whoever takes it).
//!
//! What cannot be promised is exactly one POST: a deliverer that dies after
//! the receiver answered but before `delivered` was recorded leaves the
//! callback to be sent again. Every attempt carries the same body,
//! signature and `X-Task-Id`, so receivers dedupe on it
//! ([`crate::webhook`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::TaskSettings;
use crate::http::Metrics;
use crate::store::{CallbackLease, CallbackOutcome, StoreError, TaskRecord, TaskStore, settled};
use crate::task::TaskView;
use crate::webhook::{self, AttemptError, Webhooks};

/// A lease outlasts the longest attempt by this.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Where a task's callback stands after [`Callbacks::settle`].
#[derive(Debug)]
pub enum Settled {
    /// Nothing more is owed: delivered, failed, or no callback at all. The
    /// task as it now stands, when there is one.
    Done(Option<Box<TaskRecord>>),
    /// Still pending: another deliverer holds its attempt, or the backoff
    /// after a failed attempt runs, until then. Whoever comes after goes on.
    Later(SystemTime),
    /// Still pending: the store could not be asked or told. The lease (if
    /// any) passes on its own.
    Store(StoreError),
}

/// The callbacks of finished tasks: [`Webhooks`] as the task settings
/// configure them, with their attempts leased and recorded in the task
/// store, counted in `webhooks_total`.
#[derive(Clone)]
pub struct Callbacks {
    webhooks: Option<Webhooks>,
    attempts: u32,
    lease: Duration,
    tasks: Arc<dyn TaskStore>,
    metrics: Metrics,
}

impl Callbacks {
    /// No webhooks without `WEBHOOK_SECRET`: a callback cannot be signed
    /// (submissions with a `callback_url` are refused then).
    pub fn new(settings: &TaskSettings, metrics: &Metrics, tasks: Arc<dyn TaskStore>) -> Callbacks {
        let webhooks = settings.webhook_secret.as_ref().map(|secret| {
            Webhooks::new(
                secret.clone(),
                settings.allow_loopback_callbacks,
                settings.webhook_timeout,
                settings.webhook_attempts,
                Duration::from_millis(500),
            )
        });
        let attempts = webhooks.as_ref().map_or(1, Webhooks::attempts);
        let lease = webhooks
            .as_ref()
            .map_or(LEASE_MARGIN, |w| w.attempt_bound() + LEASE_MARGIN);
        Callbacks {
            webhooks,
            attempts,
            lease,
            tasks,
            metrics: metrics.clone(),
        }
    }

    /// Sends task `task_id`'s callback if it is owed and nobody else is
    /// sending it, attempt after attempt (with backoff) until it is
    /// delivered or given up, or another deliverer takes it over.
    pub async fn settle(&self, task_id: &str) -> Settled {
        loop {
            let leased = self
                .tasks
                .lease_callback(task_id, self.lease, self.attempts, SystemTime::now())
                .await;
            let task = match leased {
                Ok(CallbackLease::Leased(task)) => task,
                Ok(CallbackLease::Held { until }) => return Settled::Later(until),
                Ok(CallbackLease::Settled(task)) => return Settled::Done(Some(Box::new(task))),
                Ok(CallbackLease::NotFinished | CallbackLease::NotFound) => return Settled::Done(None),
                Err(err) => return Settled::Store(err),
            };
            let Some(callback) = task.callback.clone() else {
                return Settled::Done(Some(Box::new(task)));
            };
            let attempt = callback.attempts;
            let outcome = self.attempt(&task, attempt).await;
            match self.tasks.settle_callback(task_id, attempt, &outcome).await {
                Ok(true) => {}
                Ok(false) => {
                    // Its lease passed during the attempt and another
                    // deliverer took the callback over: it is theirs.
                    tracing::warn!(
                        task_id,
                        attempt,
                        "the callback attempt outlived its lease; left to its new holder"
                    );
                    return Settled::Later(SystemTime::now());
                }
                Err(err) => return Settled::Store(err),
            }
            let settled = TaskRecord {
                callback: Some(settled(&callback, &outcome)),
                ..task
            };
            match outcome {
                CallbackOutcome::Delivered => {
                    tracing::info!(task_id, attempt, "callback delivered");
                    self.count("delivered");
                    return Settled::Done(Some(Box::new(settled)));
                }
                CallbackOutcome::Failed(error) => {
                    tracing::error!(task_id, attempt, %error, "callback not delivered; given up");
                    self.count("failed");
                    return Settled::Done(Some(Box::new(settled)));
                }
                CallbackOutcome::Retry { not_before, .. } => {
                    let wait = not_before.duration_since(SystemTime::now()).unwrap_or_default();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Attempt `attempt` (leased) of `task`'s callback, and what to record.
    async fn attempt(&self, task: &TaskRecord, attempt: u32) -> CallbackOutcome {
        let (Some(webhooks), Some(url)) = (&self.webhooks, task.callback_url.as_deref()) else {
            tracing::error!(task_id = %task.task_id, "the task has a callback_url but WEBHOOK_SECRET is not set here; no callback sent");
            self.count("not_configured");
            return CallbackOutcome::Failed("WEBHOOK_SECRET is not set where the callback was due".to_string());
        };
        let payload = match webhook::payload(&body(task)) {
            Ok(payload) => payload,
            Err(err) => return CallbackOutcome::Failed(err.to_string()),
        };
        match webhooks.attempt(url, &payload, &task.task_id, attempt).await {
            Ok(()) => CallbackOutcome::Delivered,
            Err(AttemptError::Permanent(err)) => CallbackOutcome::Failed(err.to_string()),
            Err(AttemptError::Transient { reason, .. }) if attempt >= self.attempts => CallbackOutcome::Failed(
                webhook::WebhookError::GaveUp {
                    attempts: attempt,
                    last: reason,
                }
                .to_string(),
            ),
            Err(AttemptError::Transient { reason, retry_after }) => CallbackOutcome::Retry {
                error: reason,
                not_before: SystemTime::now() + webhooks.backoff(attempt, retry_after),
            },
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics.inc(
            "webhooks_total",
            "Task callbacks: delivered, failed, or not configured.",
            &[("outcome", outcome)],
        );
    }
}

/// The body of `task`'s callback: the task as `GET /api/v1/tasks/{id}`
/// shows it, without its callback state, which changes from attempt to
/// attempt; so every attempt sends the same bytes.
pub fn body(task: &TaskRecord) -> serde_json::Value {
    let view = TaskView::from(TaskRecord {
        callback: None,
        ..task.clone()
    });
    serde_json::to_value(view).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{CallbackStatus, Finished, TaskState};
    use crate::testing::TestServer;

    const SECRET: &str = "callback-secret";

    /// Every POST a receiver got: `X-Callback-Attempt`, the signature, the body.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(String, String, bytes::Bytes)>>>);

    impl Seen {
        fn all(&self) -> Vec<(String, String, bytes::Bytes)> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        }
    }

    /// A receiver answering the n-th POST (from 1) with `reply(n)`.
    async fn receiver(reply: fn(usize) -> StatusCode) -> (TestServer, Seen) {
        let seen = Seen::default();
        let handler = move |State(seen): State<Seen>, headers: HeaderMap, body: bytes::Bytes| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let n = {
                let mut all = seen.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                all.push((header(webhook::ATTEMPT_HEADER), header(webhook::SIGNATURE_HEADER), body));
                all.len()
            };
            reply(n).into_response()
        };
        let router = Router::new()
            .route("/hook", axum::routing::post(handler))
            .with_state(seen.clone());
        (TestServer::start(router).await, seen)
    }

    /// Callbacks on a fresh SQLite store, with a finished task `t` that
    /// calls back `url`.
    async fn setup(url: &str, attempts: &str) -> (tempfile::TempDir, Callbacks, Arc<dyn TaskStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let tasks: Arc<dyn TaskStore> = Arc::new(SqliteStore::open(&dir.path().join("cb.db")).await.expect("open"));
        let settings = crate::testing::settings(&[
            ("WEBHOOK_SECRET", SECRET),
            ("ALLOW_LOOPBACK_CALLBACKS", "true"),
            ("WEBHOOK_ATTEMPTS", attempts),
        ]);
        let callbacks = Callbacks::new(&settings.tasks, &Metrics::new("test"), tasks.clone());
        let task = TaskRecord {
            callback_url: Some(url.to_string()),
            ..TaskRecord::queued("t", "anonymous", "2+2", "s", 5)
        };
        tasks.create(&task).await.expect("create");
        assert!(tasks.finish("t", 0, &Finished::Cancelled).await.expect("finish"));
        (dir, callbacks, tasks)
    }

    fn callback_of(settled: &Settled) -> (CallbackStatus, u32, Option<String>) {
        match settled {
            Settled::Done(Some(task)) => {
                let c = task.callback.clone().expect("a callback state");
                (c.status, c.attempts, c.last_error)
            }
            other => panic!("expected Done with the task, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failed_attempt_is_recorded_and_the_next_one_delivers_the_same_signed_bytes() {
        let (server, seen) = receiver(|n| {
            if n == 1 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NO_CONTENT
            }
        })
        .await;
        let (_dir, callbacks, tasks) = setup(&format!("{}/hook", server.url), "3").await;
        let settled = callbacks.settle("t").await;
        assert_eq!(callback_of(&settled).0, CallbackStatus::Delivered);
        assert_eq!(callback_of(&settled).1, 2);
        let stored = tasks.get("t").await.expect("get").expect("stored");
        assert_eq!(
            stored.callback.map(|c| (c.status, c.attempts)),
            Some((CallbackStatus::Delivered, 2))
        );
        let seen = seen.all();
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0.as_str(), seen[1].0.as_str()), ("1", "2"));
        assert_eq!(
            (&seen[0].1, &seen[0].2),
            (&seen[1].1, &seen[1].2),
            "every attempt sends the same bytes"
        );
        assert!(webhook::verify(SECRET.as_bytes(), &seen[1].2, &seen[1].1));
        // Settled: nothing more goes out.
        assert_eq!(callback_of(&callbacks.settle("t").await).0, CallbackStatus::Delivered);
        assert_eq!(seen.len(), 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_callback_leased_elsewhere_is_left_to_its_holder() {
        let (server, seen) = receiver(|_| StatusCode::NO_CONTENT).await;
        let (_dir, callbacks, tasks) = setup(&format!("{}/hook", server.url), "3").await;
        let lease = tasks
            .lease_callback("t", Duration::from_secs(60), 3, SystemTime::now())
            .await
            .expect("lease");
        assert!(matches!(lease, CallbackLease::Leased(_)), "{lease:?}");
        assert!(matches!(callbacks.settle("t").await, Settled::Later(_)));
        assert!(seen.all().is_empty(), "nothing sent while another holds it");
        server.stop().await;
    }

    #[tokio::test]
    async fn spent_attempts_and_refusals_fail_the_callback() {
        let (server, seen) = receiver(|_| StatusCode::BAD_GATEWAY).await;
        let (_dir, callbacks, _tasks) = setup(&format!("{}/hook", server.url), "2").await;
        let (status, attempts, error) = callback_of(&callbacks.settle("t").await);
        assert_eq!((status, attempts), (CallbackStatus::Failed, 2));
        assert!(error.unwrap_or_default().contains("502"));
        assert_eq!(seen.all().len(), 2);
        server.stop().await;

        let (server, seen) = receiver(|_| StatusCode::GONE).await;
        let (_dir, callbacks, _tasks) = setup(&format!("{}/hook", server.url), "5").await;
        let (status, attempts, error) = callback_of(&callbacks.settle("t").await);
        assert_eq!((status, attempts), (CallbackStatus::Failed, 1), "a 410 is not retried");
        assert!(error.unwrap_or_default().contains("410"));
        assert_eq!(seen.all().len(), 1);
        server.stop().await;
    }

    #[test]
    fn the_body_leaves_the_callback_state_out() {
        let task = TaskRecord {
            state: TaskState::Finished(Finished::Cancelled),
            callback: Some(crate::store::CallbackState::pending()),
            ..TaskRecord::queued("t", "anonymous", "2+2", "s", 5)
        };
        let body = body(&task);
        assert_eq!(body["status"], "cancelled");
        assert!(body.get("callback").is_none(), "{body}");
    }
}
