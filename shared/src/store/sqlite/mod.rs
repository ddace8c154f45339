//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to one writer thread that commits them in groups
//! ([`writer`]); reads use a small pool of connections on tokio's blocking
//! pool, so a slow disk never stalls the async runtime. Each write is atomic
//! (its own savepoint inside a `BEGIN IMMEDIATE` transaction, which takes
//! the file's write lock up front): several processes sharing the file (two
//! `local` runs, a chat and an agent function on one machine) serialise on
//! it, and the busy timeout makes them wait instead of failing.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{Duration, SystemTime};
use writer::Writer;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    Claim, ClaimStep, Finished, MemoryEntry, MemoryStore, NewMessage, RateLimitStore, SessionStore, StoreError,
    StoredMessage, TaskEvent, TaskRecord, TaskStatus, TaskStore, WindowCount, claim_step, event_time, exhausted_error,
    lease_end, rfc3339, unix_seconds,
};
use crate::llm::Role;

/// How long a writer waits for another process's lock before giving up
/// with `Unavailable` (answered as 503, so the client retries).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers kept open between requests.
const MAX_IDLE_READERS: usize = 8;
/// Expired rate-limit rows are swept once every this many hits.
const SWEEP_EVERY: u64 = 1000;

/// Ordered schema changes; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, their messages, rate-limit windows.
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        next_seq INTEGER NOT NULL
    );
    CREATE TABLE messages (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE rate_limits (
        key TEXT PRIMARY KEY,
        window_start INTEGER NOT NULL,
        count INTEGER NOT NULL,
        expire_at INTEGER NOT NULL
    );
    CREATE INDEX rate_limits_expire_at ON rate_limits (expire_at);",
    // 2: per-session memory and agent tasks.
    "CREATE TABLE memories (
        session_id TEXT NOT NULL,
        key_norm TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        seq INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (session_id, key_norm)
    ) WITHOUT ROWID;
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        task TEXT NOT NULL,
        session_id TEXT NOT NULL,
        max_steps INTEGER NOT NULL,
        result TEXT,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // 3: claims of tasks (attempts, the holder and its lease), their
    // progress events, and an index of the tasks a queue may deliver again:
    // only `queued` and `running` ones, in the order `runnable` lists them.
    "ALTER TABLE tasks ADD COLUMN system_instruction TEXT;
    ALTER TABLE tasks ADD COLUMN callback_url TEXT;
    ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN delivery_id TEXT;
    ALTER TABLE tasks ADD COLUMN lease_until INTEGER;
    ALTER TABLE tasks ADD COLUMN started_at INTEGER;
    ALTER TABLE tasks ADD COLUMN finished_at INTEGER;
    CREATE INDEX tasks_runnable ON tasks (created_at) WHERE status IN ('queued', 'running');
    CREATE TABLE task_events (
        task_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (task_id, attempt, idx)
    ) WITHOUT ROWID;",
];

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    hits: AtomicU64,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) and migrates.
    pub async fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open_blocking(path)).await?
    }

    fn open_blocking(path: PathBuf) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create the folder {} for SQLITE_PATH: {e}", dir.display()))?;
        }
        let mut writer = connect(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {} (SQLITE_PATH): {e}", path.display()))?;
        // Switching to WAL takes an exclusive lock, and SQLite answers BUSY
        // at once, without its busy handler, when another process is doing
        // the same: two processes starting on a new file must take turns.
        while_busy(|| writer.pragma_update(None, "journal_mode", "WAL"))?;
        while_busy(|| migrate(&mut writer)).map_err(|e| anyhow::anyhow!("{} (SQLITE_PATH): {e}", path.display()))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Writer::start(writer)?,
                readers: Mutex::new(Vec::new()),
                hits: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `f` atomically on the writer thread; returns after it committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.inner.writer.write(f).await
    }

    /// Runs `f` on a reader connection, opened on demand and kept for reuse.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => connect(&inner.path).map_err(classify)?,
            };
            let result = f(&conn).map_err(classify);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // NORMAL is durable across process crashes in WAL mode; only a power
    // loss can take back the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Applies pending migrations in one immediate transaction, so two processes
/// starting together on a new file do not both create the tables.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: usize = tx
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?
        .try_into()?;
    if version > MIGRATIONS.len() {
        anyhow::bail!(
            "the database has schema version {version}, newer than this build knows ({}); use a newer build or another SQLITE_PATH",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

/// Runs `f` again while SQLite says the database is busy or locked, for up
/// to [`BUSY_TIMEOUT`], with a short growing pause; any other error (or the
/// last busy one) is returned.
fn while_busy<T, E>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E>
where
    E: BusyError,
{
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match f() {
            Err(err) if err.is_busy() && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

trait BusyError {
    fn is_busy(&self) -> bool;
}

impl BusyError for rusqlite::Error {
    fn is_busy(&self) -> bool {
        matches!(
            self.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }
}

impl BusyError for anyhow::Error {
    fn is_busy(&self) -> bool {
        self.downcast_ref::<rusqlite::Error>().is_some_and(BusyError::is_busy)
    }
}

fn classify(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn role_from(s: &str) -> Role {
    if s == "model" { Role::Model } else { Role::User }
}

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let role: String = row.get(1)?;
    Ok(StoredMessage {
        seq: row.get::<_, i64>(0)? as u64,
        role: role_from(&role),
        content: row.get(2)?,
        created_at: rfc3339(from_millis(row.get(3)?)),
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn append(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        let session_id = session_id.to_string();
        let messages = messages.to_vec();
        self.write(move |conn| {
            let now = SystemTime::now();
            let now_ms = millis(now);
            let n = messages.len() as i64;
            // Reserve n sequence numbers in the session row; the writer
            // thread and the file's write lock make the reservation atomic.
            let first: i64 = conn.query_row(
                "INSERT INTO sessions (id, created_at, updated_at, next_seq) VALUES (?1, ?2, ?2, ?3 + 1)
                 ON CONFLICT (id) DO UPDATE SET next_seq = next_seq + ?3, updated_at = ?2
                 RETURNING next_seq - ?3",
                params![session_id, now_ms, n],
                |r| r.get(0),
            )?;
            let mut stored = Vec::with_capacity(messages.len());
            {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO messages (session_id, seq, role, content, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (i, m) in messages.into_iter().enumerate() {
                    let seq = first + i as i64;
                    insert.execute(params![session_id, seq, m.role.as_str(), m.content, now_ms])?;
                    stored.push(StoredMessage {
                        seq: seq as u64,
                        role: m.role,
                        content: m.content,
                        created_at: rfc3339(now),
                    });
                }
            }
            Ok(stored)
        })
        .await
    }

    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let session_id = session_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, role, content, created_at FROM messages WHERE session_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let mut rows: Vec<StoredMessage> = stmt
                .query_map(params![session_id, limit as i64], row_to_message)?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            Ok(rows)
        })
        .await
    }

    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let session_id = session_id.to_string();
        self.read(move |conn| {
            // One read transaction, so the existence check and the rows agree.
            conn.execute_batch("BEGIN")?;
            let result = (|| {
                let exists = conn
                    .query_row("SELECT 1 FROM sessions WHERE id = ?1", [&session_id], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    return Ok(None);
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, role, content, created_at FROM messages WHERE session_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map([&session_id], row_to_message)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(rows))
            })();
            conn.execute_batch("COMMIT")?;
            result
        })
        .await
    }

    async fn delete(&self, session_id: &str) -> Result<bool, StoreError> {
        let session_id = session_id.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM messages WHERE session_id = ?1", [&session_id])?;
            let deleted = conn.execute("DELETE FROM sessions WHERE id = ?1", [&session_id])?;
            Ok(deleted > 0)
        })
        .await
    }
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn hit(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError> {
        let key = key.to_string();
        let window_secs = window.as_secs().max(1) as i64;
        let now_secs = unix_seconds(now);
        let window_start = now_secs - now_secs.rem_euclid(window_secs);
        let resets_at = window_start + window_secs;
        let sweep = self.inner.hits.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        let count = self
            .write(move |conn| {
                // One statement: the increment and the window reset are atomic
                // across every process sharing the file.
                let count: i64 = conn.query_row(
                    "INSERT INTO rate_limits (key, window_start, count, expire_at) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (key) DO UPDATE SET
                        count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END,
                        window_start = excluded.window_start,
                        expire_at = excluded.expire_at
                     RETURNING count",
                    params![key, window_start, resets_at],
                    |r| r.get(0),
                )?;
                if sweep {
                    conn.execute("DELETE FROM rate_limits WHERE expire_at < ?1", [now_secs])?;
                }
                Ok(count)
            })
            .await?;
        Ok(WindowCount {
            count: count.max(0) as u64,
            resets_at: SystemTime::UNIX_EPOCH + Duration::from_secs(resets_at.max(0) as u64),
        })
    }
}

/// Memory keys compare without case or surrounding space.
fn normalise_key(key: &str) -> String {
    key.trim().to_lowercase()
}

fn row_to_memory(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryEntry> {
    Ok(MemoryEntry {
        key: row.get(0)?,
        value: row.get(1)?,
        updated_at: rfc3339(from_millis(row.get(2)?)),
    })
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn remember(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError> {
        let (session_id, key, value) = (session_id.to_string(), key.trim().to_string(), value.to_string());
        self.write(move |conn| {
            let now = SystemTime::now();
            conn.execute(
                // `seq` orders a session's facts as they were first told (two
                // facts in one millisecond would tie on a timestamp).
                "INSERT INTO memories (session_id, key_norm, key, value, seq, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM memories WHERE session_id = ?1), ?5, ?5)
                 ON CONFLICT (session_id, key_norm) DO UPDATE SET key = ?3, value = ?4, updated_at = ?5",
                params![session_id, normalise_key(&key), key, value, millis(now)],
            )?;
            Ok(MemoryEntry {
                key,
                value,
                updated_at: rfc3339(now),
            })
        })
        .await
    }

    async fn recall(&self, session_id: &str, key: Option<&str>, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        let session_id = session_id.to_string();
        let key = key.map(normalise_key);
        self.read(move |conn| match key {
            Some(key) => {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, value, updated_at FROM memories WHERE session_id = ?1 AND key_norm = ?2",
                )?;
                stmt.query_map(params![session_id, key], row_to_memory)?.collect()
            }
            None => {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, value, updated_at FROM memories WHERE session_id = ?1 ORDER BY seq LIMIT ?2",
                )?;
                stmt.query_map(params![session_id, limit as i64], row_to_memory)?
                    .collect()
            }
        })
        .await
    }
}

/// The columns [`row_to_task`] reads, in its order.
const TASK_COLUMNS: &str = "id, status, task, session_id, max_steps, result, error, created_at, updated_at, \
     system_instruction, callback_url, attempts, delivery_id, lease_until, started_at, finished_at";

fn to_u32(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

fn row_to_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = row.get(1)?;
    let result: Option<String> = row.get(5)?;
    Ok(TaskRecord {
        task_id: row.get(0)?,
        status: TaskStatus::parse(&status),
        task: row.get(2)?,
        session_id: row.get(3)?,
        max_steps: to_u32(row.get(4)?),
        // Written by this store from a serde_json::Value, so it parses; a
        // row damaged by hand reads as no result rather than failing.
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.get(6)?,
        created_at: rfc3339(from_millis(row.get(7)?)),
        updated_at: rfc3339(from_millis(row.get(8)?)),
        system_instruction: row.get(9)?,
        callback_url: row.get(10)?,
        attempts: to_u32(row.get(11)?),
        delivery_id: row.get(12)?,
        lease_until: row.get::<_, Option<i64>>(13)?.map(from_millis),
        started_at: row.get::<_, Option<i64>>(14)?.map(|t| rfc3339(from_millis(t))),
        finished_at: row.get::<_, Option<i64>>(15)?.map(|t| rfc3339(from_millis(t))),
    })
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskEvent> {
    let data: String = row.get(2)?;
    Ok(TaskEvent {
        attempt: to_u32(row.get(0)?),
        index: to_u32(row.get(1)?),
        data: serde_json::from_str(&data)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?,
        created_at: rfc3339(from_millis(row.get(3)?)),
    })
}

/// The task `task_id` as stored, read inside a write.
fn task_row(conn: &Connection, task_id: &str) -> rusqlite::Result<Option<TaskRecord>> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([task_id], row_to_task)
        .optional()
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let task = task.clone();
        self.write(move |conn| {
            let now = millis(SystemTime::now());
            conn.execute(
                "INSERT INTO tasks (id, status, task, session_id, max_steps, result, error, created_at, updated_at,
                                    system_instruction, callback_url, attempts, delivery_id, lease_until,
                                    started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    task.task_id,
                    task.status.as_str(),
                    task.task,
                    task.session_id,
                    i64::from(task.max_steps),
                    task.result.as_ref().map(|r| r.to_string()),
                    task.error,
                    now,
                    task.system_instruction,
                    task.callback_url,
                    i64::from(task.attempts),
                    task.delivery_id,
                    task.lease_until.map(millis),
                    // Set by the store from the status, as the other times.
                    (task.status != TaskStatus::Queued).then_some(now),
                    matches!(task.status, TaskStatus::Completed | TaskStatus::Failed).then_some(now),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim(
        &self,
        task_id: &str,
        delivery_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<Claim, StoreError> {
        let (task_id, delivery_id) = (task_id.to_string(), delivery_id.to_string());
        let lease_until = millis(lease_end(now, lease)?);
        let now = millis(now);
        // Read, decide and write in one write: the writer's transaction
        // holds the file's write lock, so no other claim (of this process
        // or another) comes in between.
        self.write(move |conn| {
            let Some(task) = task_row(conn, &task_id)? else {
                return Ok(Claim::NotFound);
            };
            match claim_step(&task, &delivery_id, max_attempts, from_millis(now)) {
                ClaimStep::Held {
                    same_delivery,
                    lease_until,
                } => Ok(Claim::Held {
                    same_delivery,
                    lease_until,
                }),
                ClaimStep::Finished => Ok(Claim::Finished(task)),
                ClaimStep::Take => {
                    let claimed = conn
                        .prepare_cached(&format!(
                            "UPDATE tasks SET status = 'running', attempts = attempts + 1, delivery_id = ?2,
                                lease_until = ?3, started_at = COALESCE(started_at, ?4), updated_at = ?4
                             WHERE id = ?1 RETURNING {TASK_COLUMNS}"
                        ))?
                        .query_row(params![task_id, delivery_id, lease_until, now], row_to_task)?;
                    Ok(Claim::Claimed(claimed))
                }
                ClaimStep::Exhaust => {
                    let failed = conn
                        .prepare_cached(&format!(
                            "UPDATE tasks SET status = 'failed', error = ?2, lease_until = NULL,
                                finished_at = ?3, updated_at = ?3
                             WHERE id = ?1 RETURNING {TASK_COLUMNS}"
                        ))?
                        .query_row(
                            params![task_id, exhausted_error(task.attempts, max_attempts), now],
                            row_to_task,
                        )?;
                    Ok(Claim::Exhausted(failed))
                }
            }
        })
        .await
    }

    async fn renew(&self, task_id: &str, attempt: u32, lease: Duration, now: SystemTime) -> Result<bool, StoreError> {
        let task_id = task_id.to_string();
        let lease_until = millis(lease_end(now, lease)?);
        let now = millis(now);
        self.write(move |conn| {
            let renewed = conn.execute(
                "UPDATE tasks SET lease_until = ?3, updated_at = ?4
                 WHERE id = ?1 AND status = 'running' AND attempts = ?2",
                params![task_id, i64::from(attempt), lease_until, now],
            )?;
            Ok(renewed > 0)
        })
        .await
    }

    async fn release(&self, task_id: &str, attempt: u32) -> Result<bool, StoreError> {
        let task_id = task_id.to_string();
        self.write(move |conn| {
            let released = conn.execute(
                "UPDATE tasks SET status = 'queued', lease_until = NULL, delivery_id = NULL, updated_at = ?3
                 WHERE id = ?1 AND status = 'running' AND attempts = ?2",
                params![task_id, i64::from(attempt), millis(SystemTime::now())],
            )?;
            Ok(released > 0)
        })
        .await
    }

    async fn finish(&self, task_id: &str, attempt: u32, outcome: &Finished) -> Result<bool, StoreError> {
        let (task_id, status, result, error) = (
            task_id.to_string(),
            outcome.status(),
            outcome.result().map(|r| r.to_string()),
            outcome.error().map(str::to_string),
        );
        self.write(move |conn| {
            let finished = conn.execute(
                "UPDATE tasks SET status = ?3, result = ?4, error = ?5, lease_until = NULL,
                    finished_at = ?6, updated_at = ?6
                 WHERE id = ?1 AND attempts = ?2 AND status IN ('queued', 'running')",
                params![
                    task_id,
                    i64::from(attempt),
                    status.as_str(),
                    result,
                    error,
                    millis(SystemTime::now())
                ],
            )?;
            Ok(finished > 0)
        })
        .await
    }

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let task_id = task_id.to_string();
        self.read(move |conn| task_row(conn, &task_id)).await
    }

    async fn runnable(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = millis(now);
        self.read(move |conn| {
            // The first condition is the index's own, so the scan walks the
            // `tasks_runnable` index in created_at order: finished tasks are
            // not in it, and it stops after `limit` rows.
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM tasks INDEXED BY tasks_runnable
                 WHERE status IN ('queued', 'running')
                   AND (status = 'queued' OR (lease_until IS NOT NULL AND lease_until <= ?1))
                 ORDER BY created_at, rowid LIMIT ?2",
            )?;
            stmt.query_map(params![now, i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?
                .collect()
        })
        .await
    }

    async fn add_event(&self, task_id: &str, event: &TaskEvent) -> Result<(), StoreError> {
        let created_at = millis(event_time(&event.created_at)?);
        let (task_id, attempt, index, data) = (
            task_id.to_string(),
            i64::from(event.attempt),
            i64::from(event.index),
            event.data.to_string(),
        );
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO task_events (task_id, attempt, idx, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (task_id, attempt, idx) DO UPDATE SET data = excluded.data, created_at = excluded.created_at",
                params![task_id, attempt, index, data, created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn events(
        &self,
        task_id: &str,
        after: Option<(u32, u32)>,
        limit: usize,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let task_id = task_id.to_string();
        // (-1, -1) is before every event: attempts and indexes are unsigned.
        let (attempt, index) = after.map_or((-1, -1), |(a, i)| (i64::from(a), i64::from(i)));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT attempt, idx, data, created_at FROM task_events
                 WHERE task_id = ?1 AND (attempt, idx) > (?2, ?3)
                 ORDER BY attempt, idx LIMIT ?4",
            )?;
            stmt.query_map(
                params![task_id, attempt, index, i64::try_from(limit).unwrap_or(i64::MAX)],
                row_to_event,
            )?
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> NewMessage {
        NewMessage {
            role,
            content: content.to_string(),
        }
    }

    #[tokio::test]
    async fn a_failing_write_in_a_group_commit_is_rolled_back_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("g.db")).await.expect("open"));
        // Many writes at once land in shared transactions; every third one
        // inserts a row and then fails.
        let writes = (0..300).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |conn| {
                        conn.execute(
                            "INSERT INTO sessions (id, created_at, updated_at, next_seq) VALUES (?1, 0, 0, 1)",
                            [format!("s{i}")],
                        )?;
                        if i % 3 == 0 {
                            conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                        }
                        Ok(i)
                    })
                    .await
            })
        });
        let results = futures_util::future::join_all(writes).await;
        for (i, r) in results.into_iter().enumerate() {
            let r = r.expect("task");
            assert_eq!(r.is_err(), i % 3 == 0, "write {i}: {r:?}");
        }
        let stored: i64 = store
            .read(|conn| conn.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0)))
            .await
            .expect("count");
        assert_eq!(stored, 200);
    }

    #[tokio::test]
    async fn tasks_stored_before_claims_read_and_claim_after_migration_3() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v2.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(MIGRATIONS[0]).expect("migration 1");
        conn.execute_batch(MIGRATIONS[1]).expect("migration 2");
        conn.pragma_update(None, "user_version", 2).expect("version 2");
        conn.execute(
            "INSERT INTO tasks (id, status, task, session_id, max_steps, created_at, updated_at)
             VALUES ('old', 'queued', 't', 's', 5, 1000, 1000)",
            [],
        )
        .expect("a task of version 2");
        drop(conn);
        let store = SqliteStore::open(&path).await.expect("migrates");
        let old = store.get("old").await.expect("get").expect("kept");
        assert_eq!(
            (old.status, old.attempts, old.lease_until),
            (TaskStatus::Queued, 0, None)
        );
        assert_eq!((old.started_at, old.finished_at, old.callback_url), (None, None, None));
        assert_eq!(store.runnable(SystemTime::now(), 10).await.expect("runnable"), ["old"]);
        let claim = store
            .claim("old", "d", Duration::from_secs(60), 3, SystemTime::now())
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Claimed(ref t) if t.attempts == 1), "{claim:?}");
        let version: i64 = store
            .read(|conn| conn.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .await
            .expect("version");
        assert_eq!(version, 3);
    }

    #[tokio::test]
    async fn runnable_and_events_walk_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("plan.db")).await.expect("open");
        let plan: Vec<String> = store
            .read(|conn| {
                let mut stmt = conn.prepare(
                    "EXPLAIN QUERY PLAN SELECT id FROM tasks
                     WHERE status IN ('queued', 'running')
                       AND (status = 'queued' OR (lease_until IS NOT NULL AND lease_until <= 0))
                     ORDER BY created_at, rowid LIMIT 10",
                )?;
                stmt.query_map([], |r| r.get::<_, String>(3))?.collect()
            })
            .await
            .expect("plan");
        // Chosen by the planner, without the INDEXED BY that `runnable`
        // adds, and with no sort step.
        assert!(plan.iter().any(|p| p.contains("tasks_runnable")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
        let plan: Vec<String> = store
            .read(|conn| {
                let mut stmt = conn.prepare(
                    "EXPLAIN QUERY PLAN SELECT attempt, idx, data, created_at FROM task_events
                     WHERE task_id = 't' AND (attempt, idx) > (1, 2) ORDER BY attempt, idx LIMIT 10",
                )?;
                stmt.query_map([], |r| r.get::<_, String>(3))?.collect()
            })
            .await
            .expect("plan");
        // `events` is a range of the primary key, in its order.
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(plan[0].starts_with("SEARCH task_events USING PRIMARY KEY"), "{plan:?}");
        assert!(plan[0].contains("(attempt,idx)>"), "{plan:?}");
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_versioned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/agent.db");
        let store = SqliteStore::open(&path).await.expect("first open");
        store.append("s", &[msg(Role::User, "a")]).await.expect("append");
        drop(store);
        let store = SqliteStore::open(&path).await.expect("second open keeps data");
        assert_eq!(store.recent("s", 10).await.expect("recent").len(), 1);

        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("set version");
        drop(conn);
        let err = SqliteStore::open(&path).await.err().expect("newer schema is refused");
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
