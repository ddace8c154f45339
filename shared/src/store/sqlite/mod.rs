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
    MemoryEntry, MemoryStore, NewMessage, RateLimitStore, SessionStore, StoreError, StoredMessage, TaskRecord,
    TaskStatus, TaskStore, WindowCount, rfc3339, unix_seconds,
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
        writer.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut writer).map_err(|e| anyhow::anyhow!("{} (SQLITE_PATH): {e}", path.display()))?;
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

fn row_to_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = row.get(1)?;
    let result: Option<String> = row.get(5)?;
    Ok(TaskRecord {
        task_id: row.get(0)?,
        status: TaskStatus::parse(&status),
        task: row.get(2)?,
        session_id: row.get(3)?,
        max_steps: row.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
        // Written by this store from a serde_json::Value, so it parses; a
        // row damaged by hand reads as no result rather than failing.
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.get(6)?,
        created_at: rfc3339(from_millis(row.get(7)?)),
        updated_at: rfc3339(from_millis(row.get(8)?)),
    })
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let task = task.clone();
        self.write(move |conn| {
            let now = millis(SystemTime::now());
            conn.execute(
                "INSERT INTO tasks (id, status, task, session_id, max_steps, result, error, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    task.task_id,
                    task.status.as_str(),
                    task.task,
                    task.session_id,
                    i64::from(task.max_steps),
                    task.result.as_ref().map(|r| r.to_string()),
                    task.error,
                    now
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn finish(
        &self,
        task_id: &str,
        status: TaskStatus,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (task_id, result, error) = (
            task_id.to_string(),
            result.map(|r| r.to_string()),
            error.map(str::to_string),
        );
        self.write(move |conn| {
            let updated = conn.execute(
                "UPDATE tasks SET status = ?2, result = ?3, error = ?4, updated_at = ?5 WHERE id = ?1",
                params![task_id, status.as_str(), result, error, millis(SystemTime::now())],
            )?;
            if updated == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            Ok(())
        })
        .await
    }

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let task_id = task_id.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT id, status, task, session_id, max_steps, result, error, created_at, updated_at
                 FROM tasks WHERE id = ?1",
                [&task_id],
                row_to_task,
            )
            .optional()
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
