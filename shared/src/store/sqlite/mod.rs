//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to one writer thread that commits them in groups
//! (`writer`); reads use a small pool of connections on tokio's blocking
//! pool, so a slow disk never stalls the async runtime. Each write is atomic
//! (its own savepoint inside a `BEGIN IMMEDIATE` transaction, which takes
//! the file's write lock up front): several processes sharing the file (two
//! `local` runs, a chat and an agent function on one machine) serialise on
//! it, and the busy timeout makes them wait instead of failing.
//!
//! One file per store trait, each keeping the trait's promises with the
//! writer and the readers of this file:
//!
//! - `sessions`: [`SessionStore`](crate::store::SessionStore), sessions
//!   and their numbered messages.
//! - `rate_limits`: [`RateLimitStore`](crate::store::RateLimitStore), a
//!   sliding log per key, decided in one write.
//! - `memory`: [`MemoryStore`](crate::store::MemoryStore), a session's
//!   remembered facts.
//! - `tasks`: [`TaskStore`](crate::store::TaskStore), tasks, their claims
//!   and their progress events.
//! - `listing`: pages of a session's messages, and a principal's sessions
//!   and tasks, each one range of an index.
//! - `cache`: [`CacheStore`](crate::store::CacheStore), the response
//!   cache's shared tier.
//! - `writer`: the writer thread and its group commits.
//!
//! This file opens the database, holds its schema (the migrations of every
//! table), and the helpers the stores share: error classification and
//! millisecond timestamps.

mod cache;
mod callback;
mod fan;
mod listing;
mod memory;
mod rate_limits;
mod sessions;
mod tasks;
mod usage;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tracing::Instrument;
use writer::Writer;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{OPERATIONS, OPERATIONS_HELP, StoreError};
use crate::http::Metrics;
use crate::http::metrics::Counter;

/// How long a writer waits for another process's lock before giving up
/// with `Unavailable` (answered as 503, so the client retries).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections: reads beyond this many wait for one to be free.
const READERS: usize = 8;
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
    // 4: who submitted each task; tasks stored before belong to `anonymous`
    // (see `owned`).
    "ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';",
    // 5: sliding logs replace fixed rate-limit windows (their counts cannot
    // become logs; a limit starts afresh once).
    "DROP TABLE rate_limits;
    CREATE TABLE rate_limit_logs (
        key TEXT PRIMARY KEY,
        log BLOB NOT NULL,
        expire_at INTEGER NOT NULL
    );
    CREATE INDEX rate_limit_logs_expire_at ON rate_limit_logs (expire_at);",
    // 6: listings. A session keeps its owner as its key writes it
    // (`owned::key_owner`), taken from the keys of the sessions stored
    // before: the text before the key's last `~` (what `rtrim` leaves of it
    // with every other character trimmed), or `anonymous` for a bare id.
    // The indexes serve a principal's sessions by last update and its tasks
    // by creation (with a status, or not), newest first, in one range each.
    "ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';
    UPDATE sessions SET owner = substr(id, 1, length(rtrim(id, replace(id, '~', ''))) - 1)
        WHERE instr(id, '~') > 0;
    CREATE INDEX sessions_by_owner ON sessions (owner, updated_at DESC, id DESC);
    CREATE INDEX tasks_by_owner ON tasks (owner, created_at DESC, id DESC);
    CREATE INDEX tasks_by_owner_status ON tasks (owner, status, created_at DESC, id DESC);",
    // 7: the callback each finished task owes (see `store::callback`), and
    // an index of those still pending, in the order a sweep delivers them.
    // Tasks finished before have no callback state: they owe nothing.
    "ALTER TABLE tasks ADD COLUMN callback_status TEXT;
    ALTER TABLE tasks ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN callback_lease_until INTEGER;
    ALTER TABLE tasks ADD COLUMN callback_error TEXT;
    CREATE INDEX tasks_callbacks_due ON tasks (finished_at) WHERE callback_status = 'pending';",
    // 8: usage. A session keeps what its charged turns spent, summed in the
    // write that stores the turn; `usage_days` keeps it per owner, UTC day
    // and model, summed by the same write (`store::usage`). Integers only:
    // tokens, calls, pico-dollars.
    "ALTER TABLE sessions ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN thinking_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN model_calls INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN cost_pico INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN unpriced_calls INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE usage_days (
        owner TEXT NOT NULL,
        day TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        thinking_tokens INTEGER NOT NULL DEFAULT 0,
        model_calls INTEGER NOT NULL DEFAULT 0,
        cost_pico INTEGER NOT NULL DEFAULT 0,
        unpriced_calls INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, day, model)
    ) WITHOUT ROWID;",
    // 9: requests, response-cache hits and what they saved, beside the
    // usage of 8 (`GET /api/v1/stats`); rows from before read 0.
    "ALTER TABLE sessions ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN saved_pico INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN unpriced_hits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_days ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_days ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_days ADD COLUMN saved_pico INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_days ADD COLUMN unpriced_hits INTEGER NOT NULL DEFAULT 0;",
    // 10: the response cache's shared tier: an answer (the cache's own
    // encoding) per key until `expire_at` (unix seconds); `owner` says
    // whose it is, for an operator deleting one principal's entries.
    "CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        value BLOB NOT NULL,
        expire_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX response_cache_expire_at ON response_cache (expire_at);",
    // 11: what a task runs (an agent run, or a chat batch queued with
    // `"async": true`, whose request is its `input`, as JSON text), and the
    // model a queued agent run asked for. Tasks stored before are agent
    // runs routed by the rules.
    "ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
    ALTER TABLE tasks ADD COLUMN model TEXT;
    ALTER TABLE tasks ADD COLUMN input TEXT;
    ALTER TABLE tasks ADD COLUMN cache INTEGER NOT NULL DEFAULT 1;",
    // 12: child tasks (a queued multi-agent run's subtasks) name their
    // parent, which counts its children as they are made and as they end
    // (`store::fan`).
    "ALTER TABLE tasks ADD COLUMN parent_id TEXT;
    ALTER TABLE tasks ADD COLUMN children_created INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN children_done INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;",
];

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection, held from before a read takes a
    /// connection until it gives it back. Without it, tokio's blocking pool
    /// (hundreds of threads) ran as many reads at once as requests were
    /// waiting, each beyond the few kept open on a connection opened for
    /// it, which read the schema and was closed again.
    reading: Arc<Semaphore>,
    hits: AtomicU64,
    /// Response cache entries kept, for sweeping the expired ones.
    cache_keeps: AtomicU64,
    /// `store_operations_total{store="sqlite"}`, when counted.
    operations: Option<Operations>,
}

/// The two series a store call counts into, registered once: finding a
/// series by name and labels takes a lock and a lookup, three times a chat
/// request.
struct Operations {
    read: Counter,
    write: Counter,
}

impl Operations {
    /// Registers both, listed from the start with 0.
    fn register(metrics: &Metrics) -> Operations {
        let op = |op| {
            let counter = metrics.register_counter(OPERATIONS, OPERATIONS_HELP, &[("store", "sqlite"), ("op", op)]);
            counter.inc_by(0);
            counter
        };
        Operations {
            read: op("read"),
            write: op("write"),
        }
    }
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) and migrates.
    pub async fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open_blocking(path, None)).await?
    }

    /// [`open`](Self::open), counting each store call's work into `metrics`
    /// as `store_operations_total{store="sqlite",op="read"|"write"}`: one
    /// read on a reader connection, or one write (a savepoint in the
    /// writer's group commit, which may hold several), per call.
    pub async fn open_counted(path: &Path, metrics: &Metrics) -> anyhow::Result<SqliteStore> {
        let path = path.to_path_buf();
        let operations = Operations::register(metrics);
        tokio::task::spawn_blocking(move || SqliteStore::open_blocking(path, Some(operations))).await?
    }

    fn open_blocking(path: PathBuf, operations: Option<Operations>) -> anyhow::Result<SqliteStore> {
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
                reading: Arc::new(Semaphore::new(READERS)),
                hits: AtomicU64::new(0),
                cache_keeps: AtomicU64::new(0),
                operations,
            }),
        })
    }

    /// Runs `f` atomically on the writer thread; returns after it committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(operations) = &self.inner.operations {
            operations.write.inc();
        }
        self.inner
            .writer
            .write(f)
            .instrument(super::span("sqlite", "write"))
            .await
    }

    /// Runs `f` on a reader connection, opened on demand and kept for reuse,
    /// once one of the [`READERS`] is free.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(operations) = &self.inner.operations {
            operations.read.inc();
        }
        self.read_in(f).instrument(super::span("sqlite", "read")).await
    }

    async fn read_in<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .inner
            .reading
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Internal("the SQLite readers have stopped".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Dropped last, once the connection is back in the pool.
            let _permit = permit;
            let pooled = inner.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => connect(&inner.path).map_err(classify)?,
            };
            let result = f(&conn).map_err(classify);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < READERS {
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
    // Plans that do not depend on bound values. Otherwise SQLite (built
    // with STAT4) compiles a cached statement again whenever a parameter it
    // planned with is bound anew, and the statement cache binds anew on
    // every use: the history read (its `ORDER BY seq`, its `LIMIT`) was
    // compiled on every chat turn. No table is ever analysed, so there is
    // no better plan to lose.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // NORMAL is durable across process crashes in WAL mode; only a power
    // loss can take back the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Savepoints (and upserts, whose RETURNING makes them multi-row writes)
    // journal the pages they change. By default that journal starts as one
    // 64 KiB allocation, freed after each write, and glibc handed it back
    // to the kernel every time: madvise, a TLB flush on every core, page
    // faults to take it again, a tenth of a chat request's CPU under load.
    // Kept in memory, it grows in 1 KiB pieces that the allocator keeps.
    // Temporary tables and sorts (the stores' queries make few, and small)
    // stay in memory too instead of spilling to temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
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

/// Runs one statement that returns no rows (`BEGIN`, `SAVEPOINT`, ...)
/// from the connection's statement cache: `execute_batch` compiles it anew
/// each time, and the writer runs four of them for every write it commits.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Role;
    use crate::store::{Claim, NewMessage, SessionStore, TaskStatus, TaskStore};

    fn msg(role: Role, content: &str) -> NewMessage {
        NewMessage {
            role,
            content: content.to_string(),
        }
    }

    #[tokio::test]
    async fn each_call_counts_one_read_or_one_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new("chat");
        let store = SqliteStore::open_counted(&dir.path().join("c.db"), &metrics)
            .await
            .expect("open");
        let text = metrics.render();
        assert!(
            text.contains("store_operations_total{function=\"chat\",store=\"sqlite\",op=\"read\"} 0"),
            "{text}"
        );
        // A chat turn: the history, then the append.
        store.recent("s", 20).await.expect("recent");
        store
            .append("s", &[msg(Role::User, "q"), msg(Role::Model, "a")])
            .await
            .expect("append");
        let op = |op| metrics.counter(OPERATIONS, &[("store", "sqlite"), ("op", op)]);
        assert_eq!((op("read"), op("write")), (1, 1));
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
            (old.status(), old.attempts, old.lease_until),
            (TaskStatus::Queued, 0, None)
        );
        assert_eq!((old.started_at, old.finished_at, old.callback_url), (None, None, None));
        assert_eq!(
            old.owner, "anonymous",
            "migration 4: a task from before owners is anonymous's"
        );
        assert_eq!(
            (old.kind, old.model, old.input),
            (crate::store::TaskKind::Agent, None, None),
            "migration 11: a task from before kinds is an agent run routed by the rules"
        );
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
        assert_eq!(version, MIGRATIONS.len() as i64, "every later migration ran too");
    }

    /// Tasks finished before migration 7 have no callback state: they owe
    /// nothing, so an upgrade sends no old callback again.
    #[tokio::test]
    async fn tasks_finished_before_callback_states_owe_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v5.db");
        let conn = Connection::open(&path).expect("open");
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).expect("migrations 1 to 5");
        }
        conn.pragma_update(None, "user_version", 5).expect("version 5");
        conn.execute(
            "INSERT INTO tasks (id, status, task, session_id, max_steps, created_at, updated_at, callback_url,
                                finished_at)
             VALUES ('old', 'completed', 't', 's', 5, 1000, 1000, 'https://example.com/hook', 1000)",
            [],
        )
        .expect("a finished task of version 5");
        drop(conn);
        let store = SqliteStore::open(&path).await.expect("migrates");
        let old = store.get("old").await.expect("get").expect("kept");
        assert_eq!((old.status(), old.callback), (TaskStatus::Completed, None));
        assert!(
            store
                .callbacks_due(SystemTime::now(), 10)
                .await
                .expect("due")
                .is_empty()
        );
        let lease = store
            .lease_callback("old", Duration::from_secs(30), 3, SystemTime::now())
            .await
            .expect("lease");
        assert!(matches!(lease, crate::store::CallbackLease::Settled(_)), "{lease:?}");
    }

    /// Usage counted before migration 9 reads as it was, with no requests
    /// or cache hits, and is added to from there.
    #[tokio::test]
    async fn usage_stored_before_requests_were_counted_reads_them_as_0() {
        use crate::store::{Charge, UsageStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v8.db");
        let conn = Connection::open(&path).expect("open");
        for sql in &MIGRATIONS[..8] {
            conn.execute_batch(sql).expect("migrations 1 to 8");
        }
        conn.pragma_update(None, "user_version", 8).expect("version 8");
        conn.execute(
            "INSERT INTO usage_days (owner, day, model, input_tokens, output_tokens, cached_tokens,
                                     thinking_tokens, model_calls, cost_pico, unpriced_calls)
             VALUES ('anonymous', '2026-11-30', 'm', 10, 5, 0, 0, 2, 7, 0)",
            [],
        )
        .expect("a day of version 8");
        drop(conn);
        let store = SqliteStore::open(&path).await.expect("migrates");
        let days = store
            .usage("anonymous", "2026-11-30", "2026-11-30")
            .await
            .expect("usage");
        let old = days[0].totals;
        assert_eq!((old.input_tokens, old.model_calls, old.cost_pico), (10, 2, 7));
        assert_eq!(
            (old.requests, old.cache_hits, old.saved_pico, old.unpriced_hits),
            (0, 0, 0, 0)
        );
        let spend = crate::llm::Spend {
            model_calls: 1,
            ..crate::llm::Spend::default()
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_996_800); // 2026-11-30
        store
            .append_charged("s", &[msg(Role::User, "a")], Some(&Charge::on(at, "m", spend)))
            .await
            .expect("charged append");
        let days = store
            .usage("anonymous", "2026-11-30", "2026-11-30")
            .await
            .expect("usage");
        assert_eq!((days[0].totals.requests, days[0].totals.model_calls), (1, 3));
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
