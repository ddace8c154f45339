//! The Firestore store: the promises of [`super`] kept in Firestore, for
//! functions that run as many instances (Cloud Run, Lambda) and so cannot
//! share an SQLite file.
//!
//! # Data model
//!
//! - `sessions/{session_id}`: `{next_seq, created_at, updated_at, expire_at?}`.
//!   `next_seq` is the counter that hands out the session's sequence numbers.
//! - `sessions/{session_id}/messages/{seq}`, the id being `seq` zero-padded
//!   to 12 digits so that the console lists a session in order:
//!   `{seq, role ("user" | "model"), content, created_at, expire_at?}`.
//!   A document per message in a subcollection, never an array in the
//!   session document: a document holds at most 1 MiB and is rewritten whole
//!   on every change, so an array would cap a session's length and make each
//!   append cost the whole history. Here an append writes its own messages
//!   only, and `recent` is one query ordered by `seq` descending with a
//!   limit: `limit` documents read, however long the session.
//! - `rate_limits/k-{key}`: `{window_start, count, expire_at}`, one document
//!   per client and limit.
//! - `memories/{session_id}`: `{next_seq, created_at, updated_at}`, and
//!   `memories/{session_id}/entries/k-{normalised key}`:
//!   `{key, value, seq, created_at, updated_at}`. `seq` comes from the
//!   session's counter and orders facts as they were first told; two facts
//!   told within one millisecond would tie on a timestamp.
//! - `tasks/{task_id}`: `{status, task, session_id, max_steps,
//!   system_instruction?, callback_url?, attempts, delivery_id?, lease_until?,
//!   result?, error?, created_at, updated_at, started_at?, finished_at?}`.
//!   `result` is the JSON text, so it comes back exactly as given (a
//!   Firestore map would not keep its keys' order, and would turn large
//!   integers into doubles). `runnable` queries on `status` alone (a
//!   single-field index, which Firestore keeps without being asked), and
//!   sorts and filters the leases of the `queued` and `running` tasks it
//!   finds in memory.
//! - `tasks/{task_id}/events/a{attempt}-i{index}`, both numbers zero-padded
//!   to 10 digits so that the ids sort in `(attempt, index)` order:
//!   `{attempt, index, data, created_at}`, `data` being JSON text as
//!   `result`. `events` is one query in id order from a cursor, with a limit.
//!
//! Session and task ids are document ids as they are (the HTTP layer lets
//! through only ids that can be); keys that come from clients (a rate-limit
//! key carries `X-Client-ID`) or from the model (memory keys) are encoded
//! first ([`ids::key_id`]), as a `/` in them would make a path.
//!
//! # Concurrency
//!
//! Each read-modify-write (an append, a rate-limit hit, a remembered fact,
//! the end of a delete, a task's claim, renewal, release or outcome) is a
//! transaction with optimistic concurrency control: it reads the documents
//! it decides on, then makes all its writes in one atomic commit, each
//! conditioned on its document being as read (its update time, or its
//! absence). When another writer got there first, the commit fails whole,
//! nothing is written, and the call reads again after a random backoff, up
//! to [`MAX_ATTEMPTS`] times within [`RETRY_BUDGET`]; past that it fails
//! with `Unavailable` (a 503 the client may retry).
//! Firestore's own read-write transactions lock what they read instead, and
//! when many contend for one document (fifty appends to one session) the
//! emulator deadlocks them until its 2 s lock timeout aborts them all, round
//! after round; a conditional commit never waits for a lock. On top of that,
//! the calls of one process that change one document take turns on a local
//! lock, so that only calls from different instances ever conflict.
//!
//! # Expiry
//!
//! `expire_at` fields are Firestore timestamps for TTL policies, which
//! delete a document some time (usually within a day) after its `expire_at`:
//!
//! ```text
//! gcloud firestore fields ttls update expire_at --collection-group=sessions --enable-ttl
//! gcloud firestore fields ttls update expire_at --collection-group=messages --enable-ttl
//! gcloud firestore fields ttls update expire_at --collection-group=rate_limits --enable-ttl
//! ```
//!
//! A rate-limit window always has one, an hour after the window ends: past
//! its end a window is only garbage. Sessions and their messages have one
//! when a session TTL is set: each append moves the session's `expire_at` to
//! now + TTL, and messages expire TTL after they were written. A TTL policy
//! deletes documents one by one in no set order, so an expired session's
//! last messages may outlive its document; a session started again under
//! the same id numbers its messages after them rather than overwriting them.
//! Memories, tasks and task events never expire, as in SQLite.
//!
//! # Time bounds
//!
//! Every call answers within [`CALL_TIMEOUT`], with `Unavailable` when
//! Firestore does not, so that a request fails with a 503 instead of hanging
//! while Firestore is unreachable; each request to Firestore is also limited
//! to [`REQUEST_TIMEOUT`].

mod cas;
mod ids;

use std::future::Future;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{Value, Write, value::ValueType};
use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use firestore::gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use firestore::{
    FirestoreConsistencySelector, FirestoreDb, FirestoreDbOptions, FirestoreQueryCursor, FirestoreTimestamp,
    FirestoreTransactionMode, FirestoreTransactionOptions, FirestoreValue,
};
use serde::{Deserialize, Serialize};

use self::cas::{KeyLocks, classify, commit_if_unchanged, delete, exists, put, read};
use self::ids::{is_document_id, key_id};
use super::{
    Claim, ClaimStep, Finished, MemoryEntry, MemoryStore, NewMessage, RateLimitStore, SessionStore, StoreError,
    StoredMessage, TaskEvent, TaskRecord, TaskStatus, TaskStore, WindowCount, claim_step, event_time, exhausted_error,
    lease_end, lease_passed, rfc3339, unix_seconds,
};
use crate::llm::Role;

/// The longest any store call takes before it answers `Unavailable`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`FirestoreStore::connect`] waits for its first answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one request to Firestore takes; a call makes a few.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of one read-modify-write at most, the first included.
pub const MAX_ATTEMPTS: u32 = 30;
/// How long a read-modify-write is tried again; less than [`CALL_TIMEOUT`],
/// so that a contended call reports the contention, not a timeout.
pub const RETRY_BUDGET: Duration = Duration::from_secs(9);
/// Times the client sends a failed read again (after a random wait of up to
/// 1 s): once, as the calls that write run again on their own.
const READ_RETRIES: usize = 1;
/// Messages deleted per commit: a commit stays small (Firestore long capped
/// one at 500 writes).
const DELETE_CHUNK: usize = 400;
/// How long a rate-limit window's document outlives the window, so that a
/// TTL policy never deletes a window still counting.
const RATE_LIMIT_MARGIN: Duration = Duration::from_secs(3600);

const SESSIONS: &str = "sessions";
const MESSAGES: &str = "messages";
const RATE_LIMITS: &str = "rate_limits";
const MEMORIES: &str = "memories";
const ENTRIES: &str = "entries";
const TASKS: &str = "tasks";
const EVENTS: &str = "events";

#[derive(Debug, Serialize, Deserialize)]
struct SessionDoc {
    next_seq: i64,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<FirestoreTimestamp>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MessageDoc {
    seq: i64,
    role: String,
    content: String,
    created_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<FirestoreTimestamp>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RateLimitDoc {
    window_start: i64,
    count: i64,
    expire_at: FirestoreTimestamp,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemoryCounterDoc {
    next_seq: i64,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemoryEntryDoc {
    key: String,
    value: String,
    seq: i64,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
}

/// A task, written whole by every change (a `None` field is absent). The
/// fields after `max_steps` have defaults, so tasks stored before claims
/// existed still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskDoc {
    status: String,
    task: String,
    session_id: String,
    max_steps: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system_instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback_url: Option<String>,
    #[serde(default)]
    attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<FirestoreTimestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_at: Option<FirestoreTimestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_at: Option<FirestoreTimestamp>,
}

/// What `runnable` reads of a task.
#[derive(Debug, Deserialize)]
struct TaskStateDoc {
    status: String,
    #[serde(default)]
    lease_until: Option<FirestoreTimestamp>,
    created_at: FirestoreTimestamp,
}

/// The fields of [`TaskStateDoc`].
const TASK_STATE_FIELDS: [&str; 3] = ["status", "lease_until", "created_at"];

#[derive(Debug, Serialize, Deserialize)]
struct EventDoc {
    attempt: i64,
    index: i64,
    data: String,
    created_at: FirestoreTimestamp,
}

/// The document Firestore sends back after a write, not needed: whatever it
/// holds, reading it as this never fails a write that succeeded.
#[derive(Debug, Deserialize)]
struct Written {}

pub struct FirestoreStore {
    db: FirestoreDb,
    session_ttl: Option<Duration>,
    locks: KeyLocks,
}

/// Shorthand for [`FirestoreStore::connect`].
pub async fn connect(project: &str, database: &str, session_ttl: Option<Duration>) -> anyhow::Result<FirestoreStore> {
    FirestoreStore::connect(project, database, session_ttl).await
}

impl FirestoreStore {
    /// Connects to `database` of `project`: the emulator when
    /// `FIRESTORE_EMULATOR_HOST` is set, else Firestore with the Application
    /// Default Credentials. Reads once, so that a wrong project or database,
    /// missing credentials or an unreachable emulator stop the process
    /// before it serves rather than failing its requests.
    pub async fn connect(
        project: &str,
        database: &str,
        session_ttl: Option<Duration>,
    ) -> anyhow::Result<FirestoreStore> {
        FirestoreStore::connect_to(None, project, database, session_ttl).await
    }

    /// [`connect`](Self::connect), to the emulator at `emulator_host`
    /// (`host:port`) when one is given, whatever `FIRESTORE_EMULATOR_HOST`
    /// says: for tests, which may not change the environment.
    pub async fn connect_to(
        emulator_host: Option<&str>,
        project: &str,
        database: &str,
        session_ttl: Option<Duration>,
    ) -> anyhow::Result<FirestoreStore> {
        let options = FirestoreDbOptions::new(project.to_string())
            .with_database_id(database.to_string())
            .with_max_retries(READ_RETRIES)
            .with_request_timeout(REQUEST_TIMEOUT);
        let attempt = async {
            let db = match emulator_host {
                Some(host) => {
                    let url = if host.contains("://") {
                        host.to_string()
                    } else {
                        format!("http://{host}")
                    };
                    FirestoreDb::with_options_auth(options.with_firebase_api_url(url), EmulatorOwner::credentials())
                        .await?
                }
                None => FirestoreDb::with_options(options).await?,
            };
            // A query, not a get: a get answers NOT_FOUND for a missing
            // document and for a missing database alike, a query only for
            // the latter.
            db.fluent().select().from("_meta").limit(1).query().await?;
            Ok::<_, FirestoreError>(db)
        };
        let cause = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(db)) => {
                return Ok(FirestoreStore {
                    db,
                    session_ttl,
                    locks: KeyLocks::default(),
                });
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer".to_string(),
        };
        let at = emulator_host.map(|h| format!(", emulator {h}")).unwrap_or_default();
        anyhow::bail!(
            "cannot reach Firestore (project {project}, database {database}{at}) within {} s: {cause}. \
             Check FIRESTORE_PROJECT / credentials, or FIRESTORE_EMULATOR_HOST for the emulator",
            CONNECT_TIMEOUT.as_secs()
        )
    }

    fn documents(&self) -> &str {
        self.db.get_documents_path()
    }

    /// The path of a top-level document; an error naming `what` when `id`
    /// cannot be a document id.
    fn doc_path(&self, collection: &str, id: &str, what: &str) -> Result<String, StoreError> {
        if !is_document_id(id) {
            return Err(StoreError::Internal(format!(
                "{what} {id:?} cannot be a Firestore document id"
            )));
        }
        Ok(format!("{}/{collection}/{id}", self.documents()))
    }

    fn expiry(&self, now: SystemTime) -> Result<Option<FirestoreTimestamp>, FirestoreError> {
        self.session_ttl.map(|ttl| timestamp(now + ttl)).transpose()
    }

    async fn append_now(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        let session_path = &self.doc_path(SESSIONS, session_id, "the session id")?;
        let n = messages.len() as i64;
        let _turn = self.locks.lock(session_path).await;
        commit_if_unchanged(&self.db, "append", move || async move {
            let now = SystemTime::now();
            let (ts, expire_at) = (timestamp(now)?, self.expiry(now)?);
            let session = read::<SessionDoc>(&self.db, self.documents(), SESSIONS, session_id).await?;
            // Reserve n sequence numbers: the session document's condition
            // makes the reservation and the messages one atomic step.
            let (first, created_at) = match &session.value {
                Some(s) => (s.next_seq, s.created_at),
                None => (first_free_seq(&self.db, session_path).await?, ts),
            };
            let mut writes = Vec::with_capacity(messages.len() + 1);
            let mut stored = Vec::with_capacity(messages.len());
            for (i, m) in messages.iter().enumerate() {
                let seq = first + i as i64;
                let doc = MessageDoc {
                    seq,
                    role: m.role.as_str().to_string(),
                    content: m.content.clone(),
                    created_at: ts,
                    expire_at,
                };
                // A message is never overwritten, whatever the counter says.
                writes.push(put(&message_path(session_path, seq), &doc, Some(exists(false)))?);
                stored.push(StoredMessage {
                    seq: seq.max(0) as u64,
                    role: m.role,
                    content: m.content.clone(),
                    created_at: rfc3339(now),
                });
            }
            let doc = SessionDoc {
                next_seq: first + n,
                created_at,
                updated_at: ts,
                expire_at,
            };
            writes.push(put(session_path, &doc, Some(session.unchanged))?);
            Ok((stored, writes))
        })
        .await
    }

    async fn recent_now(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 || !is_document_id(session_id) {
            return Ok(Vec::new());
        }
        let session_path = format!("{}/{SESSIONS}/{session_id}", self.documents());
        let mut docs: Vec<MessageDoc> = self
            .db
            .fluent()
            .select()
            .from(MESSAGES)
            .parent(&session_path)
            .order(|o| o.fields([o.field("seq").descending()]))
            .limit(query_limit(limit))
            .obj()
            .query()
            .await
            .map_err(classify)?;
        docs.reverse();
        Ok(docs.into_iter().map(to_message).collect())
    }

    async fn messages_now(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        if !is_document_id(session_id) {
            return Ok(None);
        }
        let session_path = format!("{}/{SESSIONS}/{session_id}", self.documents());
        // One read-only transaction (it locks nothing), so that the
        // existence check and the messages agree.
        let transaction = self
            .db
            .begin_transaction_with_options(
                FirestoreTransactionOptions::new().with_mode(FirestoreTransactionMode::ReadOnly),
            )
            .await
            .map_err(classify)?;
        let db = self
            .db
            .clone_with_consistency_selector(FirestoreConsistencySelector::Transaction(
                transaction.transaction_id().clone(),
            ));
        let result = async {
            let session = read::<SessionDoc>(&db, self.documents(), SESSIONS, session_id).await?;
            if session.value.is_none() {
                return Ok(None);
            }
            let docs: Vec<MessageDoc> = db
                .fluent()
                .select()
                .from(MESSAGES)
                .parent(&session_path)
                .order(|o| o.fields([o.field("seq").ascending()]))
                .obj()
                .query()
                .await?;
            Ok(Some(docs.into_iter().map(to_message).collect()))
        }
        .await
        .map_err(classify);
        // Nothing to write or release: committing only ends it early, and
        // its failure changes nothing that was read.
        transaction.commit().await.ok();
        result
    }

    async fn delete_now(&self, session_id: &str) -> Result<bool, StoreError> {
        if !is_document_id(session_id) {
            return Ok(false);
        }
        let session_path = &format!("{}/{SESSIONS}/{session_id}", self.documents());
        let _turn = self.locks.lock(session_path).await;
        // At most DELETE_CHUNK messages a commit, the session document with
        // the last ones, and only if no append came in between: a delete cut
        // short leaves a session without its oldest messages, never
        // messages without their session.
        let mut existed = None;
        loop {
            let (exists_now, done) = commit_if_unchanged(&self.db, "delete", move || async move {
                let session = read::<SessionDoc>(&self.db, self.documents(), SESSIONS, session_id).await?;
                let docs = self
                    .db
                    .fluent()
                    .select()
                    .fields(["seq"])
                    .from(MESSAGES)
                    .parent(session_path)
                    .limit(query_limit(DELETE_CHUNK))
                    .query()
                    .await?;
                let done = docs.len() < DELETE_CHUNK;
                let exists = session.value.is_some();
                let mut writes: Vec<Write> = docs.into_iter().map(|d| delete(d.name, None)).collect();
                if done && exists {
                    writes.push(delete(session_path.clone(), Some(session.unchanged)));
                }
                Ok(((exists, done), writes))
            })
            .await?;
            let existed = *existed.get_or_insert(exists_now);
            if done {
                return Ok(existed);
            }
        }
    }

    async fn hit_now(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError> {
        let window_secs = window.as_secs().max(1) as i64;
        let now_secs = unix_seconds(now);
        let window_start = now_secs - now_secs.rem_euclid(window_secs);
        let resets_at = SystemTime::UNIX_EPOCH + Duration::from_secs((window_start + window_secs).max(0) as u64);
        let id = &key_id(key).ok_or_else(|| {
            StoreError::Internal(format!(
                "a rate-limit key of {} bytes is too long for a Firestore document id",
                key.len()
            ))
        })?;
        let path = &format!("{}/{RATE_LIMITS}/{id}", self.documents());
        let expire_at = timestamp(resets_at + RATE_LIMIT_MARGIN).map_err(classify)?;
        let _turn = self.locks.lock(path).await;
        let count = commit_if_unchanged(&self.db, "rate-limit hit", move || async move {
            let stored = read::<RateLimitDoc>(&self.db, self.documents(), RATE_LIMITS, id).await?;
            let count = match stored.value {
                Some(doc) if doc.window_start == window_start => doc.count + 1,
                _ => 1,
            };
            let doc = RateLimitDoc {
                window_start,
                count,
                expire_at,
            };
            Ok((count, vec![put(path, &doc, Some(stored.unchanged))?]))
        })
        .await?;
        Ok(WindowCount {
            count: count.max(0) as u64,
            resets_at,
        })
    }

    async fn remember_now(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError> {
        let counter_path = &self.doc_path(MEMORIES, session_id, "the session id")?;
        let key = key.trim();
        let id = &key_id(&normalise_key(key))
            .ok_or_else(|| StoreError::Internal(format!("a memory key of {} bytes is too long to store", key.len())))?;
        let entry_path = &format!("{counter_path}/{ENTRIES}/{id}");
        let _turn = self.locks.lock(counter_path).await;
        commit_if_unchanged(&self.db, "remember", move || async move {
            let now = SystemTime::now();
            let ts = timestamp(now)?;
            let entry = read::<MemoryEntryDoc>(&self.db, counter_path, ENTRIES, id).await?;
            let mut writes = Vec::with_capacity(2);
            let (seq, created_at) = match &entry.value {
                Some(old) => (old.seq, old.created_at),
                None => {
                    // A new fact takes the next number of the session's counter.
                    let counter = read::<MemoryCounterDoc>(&self.db, self.documents(), MEMORIES, session_id).await?;
                    let (seq, counter_created) = counter.value.map_or((1, ts), |c| (c.next_seq, c.created_at));
                    let doc = MemoryCounterDoc {
                        next_seq: seq + 1,
                        created_at: counter_created,
                        updated_at: ts,
                    };
                    writes.push(put(counter_path, &doc, Some(counter.unchanged))?);
                    (seq, ts)
                }
            };
            let doc = MemoryEntryDoc {
                key: key.to_string(),
                value: value.to_string(),
                seq,
                created_at,
                updated_at: ts,
            };
            writes.push(put(entry_path, &doc, Some(entry.unchanged))?);
            Ok((to_memory(doc), writes))
        })
        .await
    }

    async fn recall_now(
        &self,
        session_id: &str,
        key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>, StoreError> {
        if !is_document_id(session_id) {
            return Ok(Vec::new());
        }
        let counter_path = format!("{}/{MEMORIES}/{session_id}", self.documents());
        match key {
            Some(key) => {
                // A key too long to store was never stored.
                let Some(id) = key_id(&normalise_key(key)) else {
                    return Ok(Vec::new());
                };
                let entry = read::<MemoryEntryDoc>(&self.db, &counter_path, ENTRIES, &id)
                    .await
                    .map_err(classify)?;
                Ok(entry.value.into_iter().map(to_memory).collect())
            }
            None if limit == 0 => Ok(Vec::new()),
            None => {
                let docs: Vec<MemoryEntryDoc> = self
                    .db
                    .fluent()
                    .select()
                    .from(ENTRIES)
                    .parent(&counter_path)
                    .order(|o| o.fields([o.field("seq").ascending()]))
                    .limit(query_limit(limit))
                    .obj()
                    .query()
                    .await
                    .map_err(classify)?;
                Ok(docs.into_iter().map(to_memory).collect())
            }
        }
    }

    /// The path of task `task_id`; `None` when it cannot be a document id,
    /// so that no such task exists.
    fn task_path(&self, task_id: &str) -> Option<String> {
        is_document_id(task_id).then(|| format!("{}/{TASKS}/{task_id}", self.documents()))
    }

    async fn create_now(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.doc_path(TASKS, &task.task_id, "the task id")?;
        let now = timestamp(SystemTime::now()).map_err(classify)?;
        let finished = matches!(task.status, TaskStatus::Completed | TaskStatus::Failed);
        let doc = TaskDoc {
            status: task.status.as_str().to_string(),
            task: task.task.clone(),
            session_id: task.session_id.clone(),
            max_steps: i64::from(task.max_steps),
            system_instruction: task.system_instruction.clone(),
            callback_url: task.callback_url.clone(),
            attempts: i64::from(task.attempts),
            delivery_id: task.delivery_id.clone(),
            lease_until: task.lease_until.map(timestamp).transpose().map_err(classify)?,
            result: task.result.as_ref().map(|r| r.to_string()),
            error: task.error.clone(),
            created_at: now,
            updated_at: now,
            // Set by the store from the status, as the other times.
            started_at: (task.status != TaskStatus::Queued).then_some(now),
            finished_at: finished.then_some(now),
        };
        // CreateDocument refuses an id that exists: a task is created once.
        let created = self
            .db
            .fluent()
            .insert()
            .into(TASKS)
            .document_id(&task.task_id)
            .object(&doc)
            .execute::<Written>()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(FirestoreError::DataConflictError(_)) => Err(StoreError::Internal(format!(
                "a task with id {:?} already exists",
                task.task_id
            ))),
            Err(err) => Err(classify(err)),
        }
    }

    /// Reads task `task_id`, lets `change` decide on it (`None` when there is
    /// no such task) and commits the document it returns, if any, only if
    /// the task is still as read: one atomic step (see [`cas`]).
    async fn change_task<T, F>(&self, task_id: &str, what: &str, change: F) -> Result<T, StoreError>
    where
        F: Fn(Option<TaskDoc>) -> Result<(T, Option<TaskDoc>), FirestoreError>,
    {
        let Some(path) = self.task_path(task_id) else {
            return Ok(change(None).map_err(classify)?.0);
        };
        let path = &path;
        let change = &change;
        let _turn = self.locks.lock(path).await;
        commit_if_unchanged(&self.db, what, move || async move {
            let stored = read::<TaskDoc>(&self.db, self.documents(), TASKS, task_id).await?;
            let (value, doc) = change(stored.value)?;
            let writes = match doc {
                Some(doc) => vec![put(path, &doc, Some(stored.unchanged))?],
                None => Vec::new(),
            };
            Ok((value, writes))
        })
        .await
    }

    async fn claim_now(
        &self,
        task_id: &str,
        delivery_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<Claim, StoreError> {
        let lease_until = timestamp(lease_end(now, lease)?).map_err(classify)?;
        let now_ts = timestamp(now).map_err(classify)?;
        self.change_task(task_id, "claim", |stored| {
            let Some(mut doc) = stored else {
                return Ok((Claim::NotFound, None));
            };
            let task = to_task(task_id, doc.clone());
            Ok(match claim_step(&task, delivery_id, max_attempts, now) {
                ClaimStep::Held {
                    same_delivery,
                    lease_until,
                } => (
                    Claim::Held {
                        same_delivery,
                        lease_until,
                    },
                    None,
                ),
                ClaimStep::Finished => (Claim::Finished(task), None),
                ClaimStep::Take => {
                    doc.status = TaskStatus::Running.as_str().to_string();
                    doc.attempts = i64::from(task.attempts) + 1;
                    doc.delivery_id = Some(delivery_id.to_string());
                    doc.lease_until = Some(lease_until);
                    doc.started_at.get_or_insert(now_ts);
                    doc.updated_at = now_ts;
                    (Claim::Claimed(to_task(task_id, doc.clone())), Some(doc))
                }
                ClaimStep::Exhaust => {
                    doc.status = TaskStatus::Failed.as_str().to_string();
                    doc.error = Some(exhausted_error(task.attempts, max_attempts));
                    doc.lease_until = None;
                    doc.finished_at = Some(now_ts);
                    doc.updated_at = now_ts;
                    (Claim::Exhausted(to_task(task_id, doc.clone())), Some(doc))
                }
            })
        })
        .await
    }

    async fn renew_now(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let lease_until = timestamp(lease_end(now, lease)?).map_err(classify)?;
        let now = timestamp(now).map_err(classify)?;
        self.change_task(task_id, "renew", |stored| {
            Ok(match stored {
                Some(mut doc) if holds(&doc, attempt) => {
                    doc.lease_until = Some(lease_until);
                    doc.updated_at = now;
                    (true, Some(doc))
                }
                _ => (false, None),
            })
        })
        .await
    }

    async fn release_now(&self, task_id: &str, attempt: u32) -> Result<bool, StoreError> {
        self.change_task(task_id, "release", |stored| {
            Ok(match stored {
                Some(mut doc) if holds(&doc, attempt) => {
                    doc.status = TaskStatus::Queued.as_str().to_string();
                    doc.lease_until = None;
                    doc.delivery_id = None;
                    doc.updated_at = timestamp(SystemTime::now())?;
                    (true, Some(doc))
                }
                _ => (false, None),
            })
        })
        .await
    }

    async fn finish_now(&self, task_id: &str, attempt: u32, outcome: &Finished) -> Result<bool, StoreError> {
        let (status, result, error) = (
            outcome.status(),
            outcome.result().map(|r| r.to_string()),
            outcome.error(),
        );
        self.change_task(task_id, "finish", |stored| {
            Ok(match stored {
                Some(mut doc)
                    if doc.attempts == i64::from(attempt)
                        && matches!(TaskStatus::parse(&doc.status), TaskStatus::Queued | TaskStatus::Running) =>
                {
                    let now = timestamp(SystemTime::now())?;
                    doc.status = status.as_str().to_string();
                    doc.result = result.clone();
                    doc.error = error.map(str::to_string);
                    doc.lease_until = None;
                    doc.finished_at = Some(now);
                    doc.updated_at = now;
                    (true, Some(doc))
                }
                _ => (false, None),
            })
        })
        .await
    }

    async fn get_now(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        if !is_document_id(task_id) {
            return Ok(None);
        }
        let doc = read::<TaskDoc>(&self.db, self.documents(), TASKS, task_id)
            .await
            .map_err(classify)?;
        Ok(doc.value.map(|doc| to_task(task_id, doc)))
    }

    /// At most this many in-flight tasks are read by one `runnable` call.
    const RUNNABLE_SCAN: u32 = 1000;

    async fn runnable_now(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Queued and running tasks: the tasks in flight, few next to the
        // finished ones, which the filter on `status` never reads. Bounded,
        // so a large backlog costs one page per sweep; what lies beyond it
        // is reached as the tasks before it finish.
        let docs = self
            .db
            .fluent()
            .select()
            .fields(TASK_STATE_FIELDS)
            .from(TASKS)
            .filter(|q| {
                q.for_all([q
                    .field("status")
                    .is_in([TaskStatus::Queued.as_str(), TaskStatus::Running.as_str()])])
            })
            .limit(Self::RUNNABLE_SCAN)
            .query()
            .await
            .map_err(classify)?;
        let mut runnable = Vec::new();
        for doc in docs {
            let state: TaskStateDoc = FirestoreDb::deserialize_doc_to(&doc).map_err(classify)?;
            let due = match TaskStatus::parse(&state.status) {
                TaskStatus::Queued => true,
                TaskStatus::Running => state
                    .lease_until
                    .is_some_and(|until| lease_passed(SystemTime::from(until), now)),
                TaskStatus::Completed | TaskStatus::Failed => false,
            };
            if due {
                let id = doc.name.rsplit('/').next().unwrap_or_default().to_string();
                runnable.push((SystemTime::from(state.created_at), id));
            }
        }
        runnable.sort();
        Ok(runnable.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    async fn add_event_now(&self, task_id: &str, event: &TaskEvent) -> Result<(), StoreError> {
        let task_path = self.doc_path(TASKS, task_id, "the task id")?;
        let doc = EventDoc {
            attempt: i64::from(event.attempt),
            index: i64::from(event.index),
            data: event.data.to_string(),
            created_at: timestamp(event_time(&event.created_at)?).map_err(classify)?,
        };
        // A write without a precondition: it creates the event or replaces it.
        self.db
            .fluent()
            .update()
            .in_col(EVENTS)
            .document_id(event_id(event.attempt, event.index))
            .parent(&task_path)
            .object(&doc)
            .execute::<Written>()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn events_now(
        &self,
        task_id: &str,
        after: Option<(u32, u32)>,
        limit: usize,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        let Some(task_path) = self.task_path(task_id).filter(|_| limit > 0) else {
            return Ok(Vec::new());
        };
        let query = self
            .db
            .fluent()
            .select()
            .from(EVENTS)
            .parent(&task_path)
            .order(|o| o.fields([o.field("__name__").ascending()]))
            .limit(query_limit(limit));
        let query = match after {
            // After the event at that position, whether or not it exists.
            Some((attempt, index)) => {
                let name = format!("{task_path}/{EVENTS}/{}", event_id(attempt, index));
                query.start_at(FirestoreQueryCursor::AfterValue(vec![FirestoreValue::from(Value {
                    value_type: Some(ValueType::ReferenceValue(name)),
                })]))
            }
            None => query,
        };
        let docs: Vec<EventDoc> = query.obj().query().await.map_err(classify)?;
        docs.into_iter().map(to_event).collect()
    }
}

/// Whether claim `attempt` holds the task: it is `running` under it.
fn holds(doc: &TaskDoc, attempt: u32) -> bool {
    TaskStatus::parse(&doc.status) == TaskStatus::Running && doc.attempts == i64::from(attempt)
}

fn to_u32(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

fn to_task(task_id: &str, doc: TaskDoc) -> TaskRecord {
    TaskRecord {
        task_id: task_id.to_string(),
        status: TaskStatus::parse(&doc.status),
        task: doc.task,
        session_id: doc.session_id,
        max_steps: to_u32(doc.max_steps),
        system_instruction: doc.system_instruction,
        callback_url: doc.callback_url,
        attempts: to_u32(doc.attempts),
        delivery_id: doc.delivery_id,
        lease_until: doc.lease_until.map(SystemTime::from),
        // Written by this store from a serde_json::Value, so it parses; a
        // document damaged by hand reads as no result rather than failing.
        result: doc.result.and_then(|r| serde_json::from_str(&r).ok()),
        error: doc.error,
        created_at: time_of(doc.created_at),
        updated_at: time_of(doc.updated_at),
        started_at: doc.started_at.map(time_of),
        finished_at: doc.finished_at.map(time_of),
    }
}

fn to_event(doc: EventDoc) -> Result<TaskEvent, StoreError> {
    Ok(TaskEvent {
        attempt: to_u32(doc.attempt),
        index: to_u32(doc.index),
        data: serde_json::from_str(&doc.data)
            .map_err(|e| StoreError::Internal(format!("a stored task event is not JSON: {e}")))?,
        created_at: time_of(doc.created_at),
    })
}

/// The id of the event at `(attempt, index)`: ids sort as positions do.
fn event_id(attempt: u32, index: u32) -> String {
    format!("a{attempt:010}-i{index:010}")
}

/// Bounds a call in time, so that it answers `Unavailable` when Firestore
/// does not.
async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "Firestore did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        )))
    })
}

fn timestamp(t: SystemTime) -> Result<FirestoreTimestamp, FirestoreError> {
    FirestoreTimestamp::try_from(t)
}

fn time_of(t: FirestoreTimestamp) -> String {
    rfc3339(SystemTime::from(t))
}

/// Memory keys compare without case or surrounding space.
fn normalise_key(key: &str) -> String {
    key.trim().to_lowercase()
}

fn message_path(session_path: &str, seq: i64) -> String {
    format!("{session_path}/{MESSAGES}/{seq:012}")
}

fn query_limit(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

/// The sequence number a new session starts at: 1, or after the messages an
/// expired session left behind (see the module documentation on expiry).
async fn first_free_seq(db: &FirestoreDb, session_path: &str) -> Result<i64, FirestoreError> {
    let last: Vec<MessageDoc> = db
        .fluent()
        .select()
        .from(MESSAGES)
        .parent(session_path)
        .order(|o| o.fields([o.field("seq").descending()]))
        .limit(1)
        .obj()
        .query()
        .await?;
    Ok(last.first().map_or(1, |m| m.seq + 1))
}

fn role_from(s: &str) -> Role {
    if s == "model" { Role::Model } else { Role::User }
}

fn to_message(doc: MessageDoc) -> StoredMessage {
    StoredMessage {
        seq: doc.seq.max(0) as u64,
        role: role_from(&doc.role),
        content: doc.content,
        created_at: time_of(doc.created_at),
    }
}

fn to_memory(doc: MemoryEntryDoc) -> MemoryEntry {
    MemoryEntry {
        key: doc.key,
        value: doc.value,
        updated_at: time_of(doc.updated_at),
    }
}

#[async_trait]
impl SessionStore for FirestoreStore {
    async fn append(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        bounded(self.append_now(session_id, messages)).await
    }

    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        bounded(self.recent_now(session_id, limit)).await
    }

    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        bounded(self.messages_now(session_id)).await
    }

    async fn delete(&self, session_id: &str) -> Result<bool, StoreError> {
        bounded(self.delete_now(session_id)).await
    }
}

#[async_trait]
impl RateLimitStore for FirestoreStore {
    async fn hit(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError> {
        bounded(self.hit_now(key, window, now)).await
    }
}

#[async_trait]
impl MemoryStore for FirestoreStore {
    async fn remember(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError> {
        bounded(self.remember_now(session_id, key, value)).await
    }

    async fn recall(&self, session_id: &str, key: Option<&str>, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        bounded(self.recall_now(session_id, key, limit)).await
    }
}

#[async_trait]
impl TaskStore for FirestoreStore {
    async fn create(&self, task: &TaskRecord) -> Result<(), StoreError> {
        bounded(self.create_now(task)).await
    }

    async fn claim(
        &self,
        task_id: &str,
        delivery_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<Claim, StoreError> {
        bounded(self.claim_now(task_id, delivery_id, lease, max_attempts, now)).await
    }

    async fn renew(&self, task_id: &str, attempt: u32, lease: Duration, now: SystemTime) -> Result<bool, StoreError> {
        bounded(self.renew_now(task_id, attempt, lease, now)).await
    }

    async fn release(&self, task_id: &str, attempt: u32) -> Result<bool, StoreError> {
        bounded(self.release_now(task_id, attempt)).await
    }

    async fn finish(&self, task_id: &str, attempt: u32, outcome: &Finished) -> Result<bool, StoreError> {
        bounded(self.finish_now(task_id, attempt, outcome)).await
    }

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        bounded(self.get_now(task_id)).await
    }

    async fn runnable(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        bounded(self.runnable_now(now, limit)).await
    }

    async fn add_event(&self, task_id: &str, event: &TaskEvent) -> Result<(), StoreError> {
        bounded(self.add_event_now(task_id, event)).await
    }

    async fn events(
        &self,
        task_id: &str,
        after: Option<(u32, u32)>,
        limit: usize,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        bounded(self.events_now(task_id, after, limit)).await
    }
}

/// Credentials for an emulator named explicitly: the stub token the
/// emulators take from admin clients, and no lookup of Google credentials,
/// which a test machine does not have.
#[derive(Debug)]
struct EmulatorOwner {
    tag: EntityTag,
}

impl EmulatorOwner {
    fn credentials() -> Credentials {
        Credentials::from(EmulatorOwner { tag: EntityTag::new() })
    }
}

impl CredentialsProvider for EmulatorOwner {
    async fn headers(
        &self,
        extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer owner"),
        );
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn emulator() -> String {
        match std::env::var("FIRESTORE_EMULATOR_HOST") {
            Ok(host) if !host.is_empty() => host,
            _ => {
                panic!("FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test.sh, which starts the Firestore emulator")
            }
        }
    }

    async fn store(host: &str, project: &str) -> Arc<FirestoreStore> {
        let store = FirestoreStore::connect_to(Some(host), project, "(default)", None).await;
        Arc::new(store.unwrap_or_else(|err| panic!("{err:#}")))
    }

    fn project() -> String {
        format!("unit-{}", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn two_stores_on_one_database_count_and_append_together() {
        // Two stores stand for two instances: their local locks do not see
        // each other, so only the conditional commits keep them exact.
        let (host, project) = (emulator(), project());
        let (a, b) = (store(&host, &project).await, store(&host, &project).await);
        let window = Duration::from_secs(3600);
        let now = SystemTime::now();
        let started = std::time::Instant::now();
        let hits = (0..40).map(|i| {
            let limits = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { limits.hit("shared:key", window, now).await.map(|w| w.count) })
        });
        let mut counts: Vec<u64> = futures_util::future::join_all(hits)
            .await
            .into_iter()
            .map(|c| c.expect("task").expect("hit"))
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
        let hits_took = started.elapsed();

        let started = std::time::Instant::now();
        let appends = (0..40).map(|i| {
            let sessions = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let turn = [
                    NewMessage {
                        role: Role::User,
                        content: format!("q{i}"),
                    },
                    NewMessage {
                        role: Role::Model,
                        content: format!("a{i}"),
                    },
                ];
                sessions.append("shared-session", &turn).await
            })
        });
        for r in futures_util::future::join_all(appends).await {
            r.expect("task").expect("append");
        }
        let all = a.messages("shared-session").await.expect("messages").expect("exists");
        assert_eq!(all.len(), 80);
        for pair in all.chunks(2) {
            assert_eq!(pair[1].content, pair[0].content.replacen('q', "a", 1));
        }
        eprintln!("40 hits took {hits_took:?}, 40 appends {:?}", started.elapsed());
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn two_stores_on_one_database_claim_a_task_once() {
        // Two instances: only the conditional commits keep them apart.
        let (host, project) = (emulator(), project());
        let a: Arc<dyn TaskStore> = store(&host, &project).await;
        let b: Arc<dyn TaskStore> = store(&host, &project).await;
        for round in 0..3 {
            crate::store::contract::claims_have_one_winner(&a, &b, &format!("race-{round}")).await;
        }
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn tasks_and_events_carry_no_expire_at() {
        let (host, project) = (emulator(), project());
        let ttl = Some(Duration::from_secs(86_400));
        let store = FirestoreStore::connect_to(Some(&host), &project, "(default)", ttl)
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        let task = TaskRecord::queued("ttl-task", "t", "s", 5);
        store.create(&task).await.expect("create");
        let event = TaskEvent {
            attempt: 1,
            index: 2,
            data: serde_json::json!({"k": 1}),
            created_at: String::new(),
        };
        store.add_event("ttl-task", &event).await.expect("add_event");
        let task_path = format!("{}/{TASKS}/ttl-task", store.documents());
        let fields = raw_fields(&store, store.documents(), TASKS, "ttl-task").await;
        assert!(fields.contains_key("status"), "a task document: {fields:?}");
        assert_eq!(expire_at(&fields), None, "tasks never expire");
        let fields = raw_fields(&store, &task_path, EVENTS, "a0000000001-i0000000002").await;
        assert!(
            fields.contains_key("data"),
            "an event document at its sortable id: {fields:?}"
        );
        assert_eq!(expire_at(&fields), None, "task events never expire");
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_session_started_again_after_expiry_numbers_after_its_leftovers() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let say = |content: &str| NewMessage {
            role: Role::User,
            content: content.to_string(),
        };
        store.append("s", &[say("old 1"), say("old 2")]).await.expect("append");
        // What a TTL policy may do: delete the session document first.
        let path = format!("{}/{SESSIONS}/s", store.documents());
        let writes = vec![delete(path, None)];
        commit_if_unchanged(&store.db, "expire", || async { Ok(((), writes.clone())) })
            .await
            .expect("delete the session document");
        assert_eq!(store.messages("s").await.expect("messages"), None);
        let again = store.append("s", &[say("new")]).await.expect("append again");
        assert_eq!(
            again[0].seq, 3,
            "numbered after the leftovers, which it never overwrites"
        );
        let all = store.messages("s").await.expect("messages").expect("exists");
        assert_eq!(all.len(), 3);
    }

    /// The raw fields of the document `id` of `collection` under `parent`
    /// (a document path, or the database's documents path), as stored.
    async fn raw_fields(
        store: &FirestoreStore,
        parent: &str,
        collection: &str,
        id: &str,
    ) -> std::collections::HashMap<String, firestore::gcloud_sdk::google::firestore::v1::Value> {
        store
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .parent(parent)
            .one(id)
            .await
            .unwrap_or_else(|err| panic!("read {parent}/{collection}/{id}: {err}"))
            .unwrap_or_else(|| panic!("{parent}/{collection}/{id} does not exist"))
            .fields
    }

    /// The `expire_at` field of `fields` as a time: `None` when it is absent,
    /// a panic when it is there but not a timestamp.
    fn expire_at(
        fields: &std::collections::HashMap<String, firestore::gcloud_sdk::google::firestore::v1::Value>,
    ) -> Option<SystemTime> {
        use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
        let value = fields.get("expire_at")?;
        match &value.value_type {
            Some(ValueType::TimestampValue(t)) => {
                let seconds = u64::try_from(t.seconds).expect("expire_at after 1970");
                let nanos = u32::try_from(t.nanos).expect("nanos in range");
                Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
            }
            other => panic!("expire_at is not a timestamp: {other:?}"),
        }
    }

    /// `a - b` in seconds, negative when `a` is before `b`.
    fn seconds_between(a: SystemTime, b: SystemTime) -> f64 {
        match a.duration_since(b) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn sessions_and_messages_carry_expire_at_only_with_a_ttl() {
        let host = emulator();
        let ttl = Duration::from_secs(86_400);
        let turn = [
            NewMessage {
                role: Role::User,
                content: "q".to_string(),
            },
            NewMessage {
                role: Role::Model,
                content: "a".to_string(),
            },
        ];

        let with_ttl = FirestoreStore::connect_to(Some(&host), &project(), "(default)", Some(ttl))
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        let before = SystemTime::now();
        let stored = with_ttl.append("ttl", &turn).await.expect("append");
        let after = SystemTime::now();
        assert_eq!(stored.len(), 2);
        let session_path = format!("{}/{SESSIONS}/ttl", with_ttl.documents());
        let session = raw_fields(&with_ttl, with_ttl.documents(), SESSIONS, "ttl").await;
        let message = raw_fields(&with_ttl, &session_path, MESSAGES, &format!("{:012}", stored[0].seq)).await;
        // The message the model wrote, too: every message of the turn.
        let reply = raw_fields(&with_ttl, &session_path, MESSAGES, &format!("{:012}", stored[1].seq)).await;
        for (what, fields) in [("session", &session), ("message", &message), ("reply", &reply)] {
            let at = expire_at(fields).unwrap_or_else(|| panic!("the {what} has no expire_at: {fields:?}"));
            // now + ttl, now being between `before` and `after`; a few
            // minutes of slack for clocks and rounding.
            let early = seconds_between(at, before + ttl);
            let late = seconds_between(at, after + ttl);
            assert!(
                early > -180.0 && late < 180.0,
                "the {what}'s expire_at is {early:.1} s from append time + 1 day (should be ~0)"
            );
        }

        let without = store(&host, &project()).await;
        let stored = without.append("ttl", &turn).await.expect("append");
        let session_path = format!("{}/{SESSIONS}/ttl", without.documents());
        let session = raw_fields(&without, without.documents(), SESSIONS, "ttl").await;
        let message = raw_fields(&without, &session_path, MESSAGES, &format!("{:012}", stored[0].seq)).await;
        assert!(session.contains_key("next_seq"), "a session document: {session:?}");
        assert!(message.contains_key("seq"), "a message document: {message:?}");
        assert!(
            !session.contains_key("expire_at"),
            "no TTL, yet the session has expire_at: {session:?}"
        );
        assert!(
            !message.contains_key("expire_at"),
            "no TTL, yet the message has expire_at: {message:?}"
        );
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn rate_limit_windows_carry_expire_at() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let window = Duration::from_secs(60);
        let now = SystemTime::now();
        let hit = store.hit("ttl:key", window, now).await.expect("hit");
        assert_eq!(hit.count, 1);
        let id = key_id("ttl:key").expect("a short key has an id");
        let fields = raw_fields(&store, store.documents(), RATE_LIMITS, &id).await;
        assert!(fields.contains_key("window_start"), "a rate-limit document: {fields:?}");
        let at = expire_at(&fields).unwrap_or_else(|| panic!("the rate-limit window has no expire_at: {fields:?}"));
        let after_end = seconds_between(at, hit.resets_at);
        assert!(
            (0.0..=2.0 * 3600.0).contains(&after_end),
            "expire_at is {after_end:.1} s after the window's end (should be 0 to 2 h)"
        );
        // The window's end is itself a minute or less away.
        let ends_in = seconds_between(hit.resets_at, now);
        assert!(ends_in > 0.0 && ends_in <= 60.0, "resets in {ends_in:.1} s");
    }
}
