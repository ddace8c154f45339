//! What the functions keep, behind traits that both backends implement.
//!
//! Each method is one whole operation ("append this turn", "count this hit")
//! rather than a get followed by a put, because the promises are about
//! atomicity: a turn's messages get consecutive sequence numbers and are
//! stored together or not at all; a rate-limit hit is counted exactly once
//! across every instance sharing the store. SQLite keeps them with one
//! immediate transaction, Firestore with a transaction per call.
//!
//! - [`contract`]: the promises above as one test suite that every
//!   backend must pass.
//! - [`sqlite`]: the embedded default, one file, shared safely by several
//!   processes on one machine.
//! - [`firestore`]: production: many instances, no local state.

pub mod contract;
pub mod firestore;
pub mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{StoreKind, StoreSettings};
use crate::llm::Role;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    async fn append(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError>;

    /// The last `limit` messages, oldest first. Costs O(limit), whatever the
    /// session's length.
    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;

    /// Every message, oldest first; `None` when the session does not exist.
    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError>;

    /// Removes the session and its messages; false when it did not exist.
    async fn delete(&self, session_id: &str) -> Result<bool, StoreError>;
}

/// The count of one fixed window after a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Hits in the current window, this one included.
    pub count: u64,
    /// When the current window ends.
    pub resets_at: SystemTime,
}

/// Rate-limit windows, counted atomically so that instances sharing a store
/// admit exactly the limit together.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one hit for `key` in the fixed window of length `window` that
    /// contains `now`.
    async fn hit(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError>;
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

/// Where an agent task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> TaskStatus {
        match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "completed" => TaskStatus::Completed,
            _ => TaskStatus::Failed,
        }
    }
}

/// An agent task as stored: what was asked, where it stands, and its
/// result (the agent's answer as JSON) or error.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub task_id: String,
    pub status: TaskStatus,
    pub task: String,
    pub session_id: String,
    pub max_steps: u32,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task; its id must not exist yet.
    async fn create(&self, task: &TaskRecord) -> Result<(), StoreError>;

    /// Records the outcome of a task: its status and its result or error.
    async fn finish(
        &self,
        task_id: &str,
        status: TaskStatus,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError>;
}

/// The stores a function needs, built once at start-up.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub memory: Arc<dyn MemoryStore>,
    pub tasks: Arc<dyn TaskStore>,
}

/// Opens the configured backend: creates the SQLite file and applies its
/// migrations, so a failure here stops the process before it serves.
pub async fn open(settings: &StoreSettings) -> anyhow::Result<Stores> {
    match settings.kind {
        StoreKind::Sqlite => {
            let store = Arc::new(sqlite::SqliteStore::open(&settings.sqlite_path).await?);
            Ok(Stores {
                sessions: store.clone(),
                rate_limits: store.clone(),
                memory: store.clone(),
                tasks: store,
            })
        }
        StoreKind::Firestore => {
            // Validated at start-up: FIRESTORE_PROJECT or GOOGLE_CLOUD_PROJECT is set.
            let project = settings.firestore_project.as_deref().unwrap_or_default();
            let store = Arc::new(
                firestore::FirestoreStore::connect(project, &settings.firestore_database, settings.session_ttl).await?,
            );
            Ok(Stores {
                sessions: store.clone(),
                rate_limits: store.clone(),
                memory: store.clone(),
                tasks: store,
            })
        }
    }
}

/// Seconds since the Unix epoch, saturating at 0 for a clock before 1970.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with millisecond precision, as every timestamp in the API.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}
