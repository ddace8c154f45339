//! What the functions keep, behind traits that both backends implement.
//!
//! Each method is one whole operation ("append this turn", "admit this request")
//! rather than a get followed by a put, because the promises are about
//! atomicity: a turn's messages get consecutive sequence numbers and are
//! stored together or not at all; a rate limit admits exactly its limit
//! across every instance sharing the store. SQLite keeps them with one
//! immediate transaction, Firestore with one commit per call, conditioned
//! on the documents it read (compare-and-set, retried when another writer
//! got there first).
//!
//! - [`rate_log`]: the sliding log both backends keep per rate-limit key.
//! - `contract` (tests and the `testing` feature only): the promises above
//!   as one test suite that every backend must pass.
//! - [`sqlite`]: the embedded default, one file, shared safely by several
//!   processes on one machine.
//! - [`firestore`]: production: many instances, no local state.
//! - `timestamps`: the times both keep and the API shows.
//! - `listing`: pages of a session's messages, and a principal's sessions
//!   and tasks, newest first.
//! - `task`: a task's record, status, outcome and events, and the claim
//!   rules both backends decide with.
//! - `fan`: a task's child tasks, made in one step and counted as they end.
//! - `cache`: the response cache's shared tier, keys to bytes that expire.
//! - [`usage`]: what was spent, summed per session and per principal, day
//!   and model, in the same atomic step as the turn or outcome it counts.

mod cache;
mod callback;
mod cancel;
#[cfg(any(test, feature = "testing"))]
pub mod contract;
mod fan;
pub mod firestore;
mod listing;
pub mod rate_log;
pub mod sqlite;
mod task;
mod timestamps;
pub mod usage;

pub use cache::CacheStore;
pub use callback::{CallbackLease, CallbackOutcome, CallbackState, CallbackStatus};
pub(crate) use callback::{CallbackStep, callback_step, settled, settles, unsettled_error};
pub use cancel::Cancel;
pub(crate) use cancel::{CancelStep, cancel_step};
pub use fan::{Children, FanOut, Finish, WAIT_FOR_CHILDREN, child_id};
pub(crate) use fan::{count_child, fan_out_step, waiting};
pub use listing::{Page, SessionPosition, SessionSummary, TaskPosition};
pub use task::{Claim, Finished, TaskEvent, TaskKind, TaskRecord, TaskState, TaskStatus, held_for_good};
pub(crate) use task::{ClaimStep, claim_step, exhausted_error, lease_end, lease_passed};
pub use usage::{Charge, DayUsage, Totals, UsageStore};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{RateLimit, StoreKind, StoreSettings};
use crate::http::Metrics;
use crate::llm::Role;
pub(crate) use timestamps::{event_time, rfc3339, unix_seconds, whole_millis};

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: the backend is busy, locked or unreachable. Nothing
    /// was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A fault that a retry will not fix (a corrupt file, a schema from a
    /// newer version).
    #[error("store failure: {0}")]
    Internal(String),
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
}

/// A stored message, with its place in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StoredMessage {
    #[serde(skip)]
    pub seq: u64,
    pub role: Role,
    pub content: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Sessions: ordered messages under a session id.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Appends the messages in order with consecutive sequence numbers, all
    /// or none, creating the session if needed. Concurrent appends to one
    /// session never interleave within a call and never lose a message.
    ///
    /// With a `charge` (what the turn spent), the same atomic step adds it
    /// to the session's totals ([`totals`](Self::totals)) and to the
    /// record of the session's owner for its day and model
    /// ([`UsageStore`]): the sums are exactly those of the turns stored.
    async fn append_charged(
        &self,
        session_id: &str,
        messages: &[NewMessage],
        charge: Option<&Charge>,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// [`append_charged`](Self::append_charged) with nothing spent.
    async fn append(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        self.append_charged(session_id, messages, None).await
    }

    /// What the session's charged turns spent, summed; `None` when the
    /// session does not exist.
    async fn totals(&self, session_id: &str) -> Result<Option<Totals>, StoreError>;

    /// The last `limit` messages, oldest first. Costs O(limit), whatever the
    /// session's length.
    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;

    /// Every message, oldest first; `None` when the session does not exist.
    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError>;

    /// Removes the session and its messages; false when it did not exist.
    async fn delete(&self, session_id: &str) -> Result<bool, StoreError>;

    /// The messages after sequence number `after` (0 for the start), oldest
    /// first, at most `limit`, with the last one's number when more follow.
    /// One bounded read, O(limit) however long the session; an empty page
    /// when the session does not exist (or ends before `after`).
    async fn messages_page(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Page<StoredMessage, u64>, StoreError>;

    /// The sessions of `owner` (a principal's string form), most recently
    /// written first, after `after` (`None` for the start), at most
    /// `limit`. Only `owner`'s: the owner is kept with each session (the
    /// owner part of its key, `owned::session_key`), and the read filters
    /// on it whatever `after` says.
    async fn list_sessions(
        &self,
        owner: &str,
        after: Option<&SessionPosition>,
        limit: usize,
    ) -> Result<Page<SessionSummary, SessionPosition>, StoreError>;

    /// [`recent`](Self::recent) as a turn reads it before its model call,
    /// with what the store read to find it, for
    /// [`append_after`](Self::append_after).
    async fn history(&self, session_id: &str, limit: usize) -> Result<History, StoreError> {
        Ok(History::new(self.recent(session_id, limit).await?))
    }

    /// [`append`](Self::append), after `history` was read from the same
    /// session: a store whose append must read the session first (its
    /// counter) starts from what the history read instead, and reads again
    /// only if the session changed in between. The promises are those of
    /// `append`, whatever happened since `history`.
    async fn append_after(
        &self,
        session_id: &str,
        history: &History,
        messages: &[NewMessage],
        charge: Option<&Charge>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let _ = history;
        self.append_charged(session_id, messages, charge).await
    }
}

/// The recent messages of a session, oldest first, and what the store read
/// to find them: Firestore reads the session document for them, and the
/// turn's append starts from that read rather than a second one.
#[derive(Default)]
pub struct History {
    pub messages: Vec<StoredMessage>,
    read: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl History {
    pub fn new(messages: Vec<StoredMessage>) -> History {
        History { messages, read: None }
    }

    /// Messages with what the store read, for its own `append_after`.
    pub(crate) fn with_read<T: std::any::Any + Send + Sync>(messages: Vec<StoredMessage>, read: T) -> History {
        History {
            messages,
            read: Some(Box::new(read)),
        }
    }

    /// What the store read, if it was this store's kind of read.
    pub(crate) fn read<T: std::any::Any>(&self) -> Option<&T> {
        self.read.as_deref().and_then(|r| r.downcast_ref())
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("messages", &self.messages)
            .field("read", &self.read.is_some())
            .finish()
    }
}

/// A rate limit's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The request is within the limit and was counted; a refused one is
    /// not counted, so refusals never push the limit further away.
    pub admitted: bool,
    /// Requests the key may still make now, after this one.
    pub remaining: u64,
    /// When the oldest counted request leaves the window and frees a place
    /// (`RateLimit-Reset`, and `Retry-After` when refused); `now` when
    /// nothing is counted.
    pub resets_at: SystemTime,
}

/// Sliding-log rate limits, decided atomically so that instances sharing a
/// store admit exactly the limit together (see [`rate_log`]).
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Admits one request for `key` at `now` if fewer than `limit.max` were
    /// admitted in the `limit.window` before it (`(now - window, now]`), and
    /// then records it. At most `limit.max` requests are admitted in any
    /// interval of the window's length, across window boundaries and
    /// instances alike.
    async fn admit(&self, key: &str, limit: RateLimit, now: SystemTime) -> Result<Admission, StoreError>;
}

/// One remembered fact of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    pub key: String,
    pub value: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// Per-session key/value memory, for the agent's memory tools. Keys compare
/// case-insensitively ("Favourite colour" and "favourite colour" are one
/// fact); the key is kept as last written.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Sets `key` to `value` in the session, replacing an earlier value.
    async fn remember(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError>;

    /// One entry, or all of the session's entries oldest first when `key` is
    /// `None`; at most `limit`.
    async fn recall(&self, session_id: &str, key: Option<&str>, limit: usize) -> Result<Vec<MemoryEntry>, StoreError>;
}

/// Agent tasks: the one place that decides who runs a task, so that a queue
/// that delivers at least once still runs each task once in effect.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task as given (status, attempts, lease); its id must not
    /// exist yet. `created_at` and `updated_at` are set by the store.
    async fn create(&self, task: &TaskRecord) -> Result<(), StoreError>;

    /// Atomically: when the task is `queued`, or `running` with a lease that
    /// has passed (at `now`), and has used fewer than `max_attempts` claims,
    /// it becomes `running` with `attempts + 1`, `delivery_id`, a lease until
    /// `now + lease`, and `started_at` set if it was not. When it is runnable
    /// but out of attempts, it becomes `failed` instead ([`Claim::Exhausted`]).
    /// Of any number of concurrent claims on one task, at most one succeeds.
    async fn claim(
        &self,
        task_id: &str,
        delivery_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<Claim, StoreError>;

    /// Extends the lease of claim `attempt` to `now + lease`; false (and no
    /// change) when the task is no longer `running` under that attempt.
    async fn renew(&self, task_id: &str, attempt: u32, lease: Duration, now: SystemTime) -> Result<bool, StoreError>;

    /// Gives claim `attempt` back after a transient failure: the task is
    /// `queued` again with no lease, so the next delivery claims it at once.
    /// False (and no change) when that claim no longer holds the task.
    ///
    /// With a `charge` (what the attempt's calls spent before it failed),
    /// the same atomic step adds it to the task owner's day record, only
    /// when the claim is given back: counted once, as with `finish`.
    async fn release_charged(&self, task_id: &str, attempt: u32, charge: Option<&Charge>) -> Result<bool, StoreError>;

    /// [`release_charged`](Self::release_charged) with nothing spent.
    async fn release(&self, task_id: &str, attempt: u32) -> Result<bool, StoreError> {
        self.release_charged(task_id, attempt, None).await
    }

    /// Records the outcome (`completed` with its result or `failed` with
    /// its error, and `finished_at`) when the task is not finished and its
    /// `attempts` is still `attempt`; false (and no change) otherwise, so a
    /// worker that lost its claim cannot overwrite the winner. A queued task
    /// that was never claimed is finished with `attempt` 0. False too when
    /// there is no such task.
    ///
    /// With a `charge` (what the run spent), the same atomic step adds it
    /// to the record of the task's owner for its day and model
    /// ([`UsageStore`]), only when the outcome is recorded: a run counts
    /// once, whichever worker finishes it.
    async fn finish_charged(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &Finished,
        charge: Option<&Charge>,
    ) -> Result<bool, StoreError> {
        Ok(self.finish_counted(task_id, attempt, outcome, charge).await?.recorded())
    }

    /// [`finish_charged`](Self::finish_charged), telling a child task's
    /// caller whether it was the last of its parent's children to end: the
    /// same atomic step counts it in its parent (`fan`), as every step that
    /// ends a child does (a claim out of attempts, a cancel).
    async fn finish_counted(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &Finished,
        charge: Option<&Charge>,
    ) -> Result<Finish, StoreError>;

    /// Atomically, when claim `attempt` holds `parent`: creates `children`
    /// (their ids must not exist; each names `parent`), adds them to the
    /// parent's `created`, stores `input` as the parent's, adds `charge`
    /// (the attempt's calls, not a request) to the owner's day, and gives
    /// the claim up: the parent waits, `running` with a lease of
    /// [`WAIT_FOR_CHILDREN`], until its last child resumes it. With no
    /// children and every child ended, changes nothing
    /// ([`FanOut::AllDone`]).
    async fn fan_out(
        &self,
        parent: &str,
        attempt: u32,
        input: &serde_json::Value,
        children: &[TaskRecord],
        charge: Option<&Charge>,
    ) -> Result<FanOut, StoreError>;

    /// [`finish_charged`](Self::finish_charged) with nothing spent.
    async fn finish(&self, task_id: &str, attempt: u32, outcome: &Finished) -> Result<bool, StoreError> {
        self.finish_charged(task_id, attempt, outcome, None).await
    }

    /// Atomically, as [`claim`](Self::claim): a task `queued`, or `running`
    /// under a claim, becomes `cancelled` (no lease, `finished_at` set;
    /// `attempts` kept). Being finished, it is never claimed again, and the
    /// running claim's fenced writes ([`renew`](Self::renew),
    /// [`release`](Self::release), [`finish`](Self::finish)) change nothing
    /// from then on. Of concurrent cancels one gets [`Cancel::Cancelled`];
    /// a cancelled, finished or synchronous task, or none, is left as it is.
    async fn cancel(&self, task_id: &str) -> Result<Cancel, StoreError>;

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError>;

    /// The tasks of `owner`, newest first (by creation), only those in
    /// `status` when given, after `after` (`None` for the start), at most
    /// `limit`: one bounded read, filtered on the owner whatever `after`
    /// says.
    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        after: Option<&TaskPosition>,
        limit: usize,
    ) -> Result<Page<TaskRecord, TaskPosition>, StoreError>;

    /// Atomically, as [`claim`](Self::claim): when the task is finished with
    /// its callback `pending` and free (no lease, or one passed at `now`)
    /// and fewer than `max_attempts` attempts were leased, it becomes
    /// attempt `attempts + 1`, leased until `now + lease`
    /// ([`CallbackLease::Leased`]); when all were spent, `failed`
    /// ([`CallbackLease::Settled`]). Of concurrent calls at most one leases.
    /// The task's `updated_at` is left alone, so a callback's body is the
    /// same on every attempt.
    async fn lease_callback(
        &self,
        task_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<CallbackLease, StoreError>;

    /// Records how callback attempt `attempt` ended, when the callback is
    /// still `pending` under it; false (and no change) otherwise, so an
    /// attempt whose lease passed and was taken over records nothing.
    async fn settle_callback(&self, task_id: &str, attempt: u32, outcome: &CallbackOutcome)
    -> Result<bool, StoreError>;

    /// Ids of finished tasks whose callback is `pending` and free at `now`
    /// (oldest finished first, at most `limit`): what a sweep delivers.
    async fn callbacks_due(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Ids of tasks a queue should deliver again (oldest first, at most
    /// `limit`): `queued`, or `running` with a lease that has passed at
    /// `now`. Synchronous runs (no lease) are never listed.
    async fn runnable(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Stores a progress event; storing the same `(attempt, index)` again
    /// replaces it (a retried write is harmless). Its `created_at` is kept
    /// as given (RFC 3339), or set by the store when empty.
    async fn add_event(&self, task_id: &str, event: &TaskEvent) -> Result<(), StoreError>;

    /// The task's events after `after` (an `(attempt, index)` position;
    /// `None` for the start), in order, at most `limit`.
    async fn events(
        &self,
        task_id: &str,
        after: Option<(u32, u32)>,
        limit: usize,
    ) -> Result<Vec<TaskEvent>, StoreError>;
}

/// The stores a function needs, built once at start-up.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub memory: Arc<dyn MemoryStore>,
    pub tasks: Arc<dyn TaskStore>,
    pub usage: Arc<dyn UsageStore>,
    /// The response cache's shared tier (used with `CACHE=store`).
    pub cache: Arc<dyn CacheStore>,
}

/// The counter of the store's calls to its database, by `store` and `op`.
/// A store call's span (`DB_SYSTEM OPERATION`, OpenTelemetry's database
/// conventions), around each call the store makes to its database: a
/// SQLite read or write, a Firestore get, query, commit or write. `DEBUG`:
/// free unless traces are exported.
pub(crate) fn span(system: &'static str, operation: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "store",
        otel.name = %format_args!("{system} {operation}"),
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = operation,
    )
}

pub(crate) const OPERATIONS: &str = "store_operations_total";
pub(crate) const OPERATIONS_HELP: &str = "Calls the store made to its database, by kind.";
/// The counter of documents read and written, by `store` and `kind`.
pub(crate) const DOCUMENTS: &str = "store_documents_total";
pub(crate) const DOCUMENTS_HELP: &str = "Documents the store read from and wrote to its database.";

/// What [`open_unchecked`] leaves to do: show that the store answers
/// (on Firestore, that the project, the database and the credentials are
/// good). An error names the setting to check.
pub type StartupCheck = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Opens the configured backend: creates the SQLite file and applies its
/// migrations, or connects to Firestore and reads once, so a failure here
/// stops the process before it serves. The store counts its calls to the
/// database into `metrics` (`store_operations_total`, and on Firestore
/// `store_documents_total`).
pub async fn open(settings: &StoreSettings, metrics: &Metrics) -> anyhow::Result<Stores> {
    let (stores, check) = open_unchecked(settings, metrics).await?;
    check.await?;
    Ok(stores)
}

/// [`open`], leaving its last step, the Firestore read, to the caller: a
/// process can serve while it runs, so that its first request does not wait
/// one more round trip (see `App::start`). SQLite has nothing left to do.
pub async fn open_unchecked(settings: &StoreSettings, metrics: &Metrics) -> anyhow::Result<(Stores, StartupCheck)> {
    match settings.kind {
        StoreKind::Sqlite => {
            let store = Arc::new(sqlite::SqliteStore::open_counted(&settings.sqlite_path, metrics).await?);
            let stores = Stores {
                sessions: store.clone(),
                rate_limits: store.clone(),
                memory: store.clone(),
                tasks: store.clone(),
                usage: store.clone(),
                cache: store,
            };
            Ok((stores, Box::pin(std::future::ready(Ok(())))))
        }
        StoreKind::Firestore => {
            // Validated at start-up: FIRESTORE_PROJECT or GOOGLE_CLOUD_PROJECT is set.
            let project = settings.firestore_project.as_deref().unwrap_or_default();
            let store = Arc::new(
                firestore::FirestoreStore::open_to(
                    settings.firestore_emulator_host.as_deref(),
                    project,
                    &settings.firestore_database,
                    settings.session_ttl,
                    metrics,
                )
                .await?
                .with_session_tail(settings.session_tail),
            );
            let stores = Stores {
                sessions: store.clone(),
                rate_limits: store.clone(),
                memory: store.clone(),
                tasks: store.clone(),
                usage: store.clone(),
                cache: store.clone(),
            };
            Ok((stores, Box::pin(async move { store.check().await })))
        }
    }
}
