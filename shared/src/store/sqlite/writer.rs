//! The one thread that writes: group commit.
//!
//! SQLite admits one writer at a time, so many threads taking turns on the
//! writer connection mostly wait on each other (profiles of the chat
//! benchmark showed a third of the CPU in context switches). Instead one
//! thread owns the connection; writes queue to it, and it runs all that are
//! waiting in one transaction, each inside a savepoint of its own, so a
//! write that fails is rolled back alone. A caller hears back only after the
//! COMMIT, so what it was told was stored is stored.
//!
//! A write may also defer additions to a day's usage row
//! ([`defer_day_charge`]): the batch sums them per row and upserts each row
//! once, in the same transaction, before the COMMIT. A write whose
//! savepoint is rolled back takes its deferred additions with it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::usage::{DayKey, upsert_day};
use super::{classify, run};
use crate::store::{StoreError, Totals};

thread_local! {
    /// The day charges of the batch the writer thread is running, in the
    /// order deferred; `None` outside a batch (any other thread).
    static DEFERRED: RefCell<Option<Vec<(DayKey, Totals)>>> = const { RefCell::new(None) };
}

/// Defers adding `totals` to the day row `day` to the end of the running
/// batch. Outside one, gives them back for the caller to add now.
pub(super) fn defer_day_charge(day: DayKey, totals: Totals) -> Option<(DayKey, Totals)> {
    DEFERRED.with(|deferred| match deferred.borrow_mut().as_mut() {
        Some(pending) => {
            pending.push((day, totals));
            None
        }
        None => Some((day, totals)),
    })
}

fn deferred_len() -> usize {
    DEFERRED.with(|deferred| deferred.borrow().as_ref().map_or(0, Vec::len))
}

/// Drops what the write that started at `mark` deferred.
fn give_back_deferred(mark: usize) {
    DEFERRED.with(|deferred| {
        if let Some(pending) = deferred.borrow_mut().as_mut() {
            pending.truncate(mark);
        }
    });
}

/// Upserts the batch's deferred charges, summed per day row, in the order
/// each row was first charged; ends the batch's deferral.
fn flush_deferred(conn: &Connection) -> rusqlite::Result<()> {
    let pending = DEFERRED
        .with(|deferred| deferred.borrow_mut().take())
        .unwrap_or_default();
    let mut order: Vec<DayKey> = Vec::new();
    let mut sums: HashMap<DayKey, Totals> = HashMap::new();
    for (day, totals) in pending {
        match sums.get_mut(&day) {
            Some(sum) => *sum = sum.plus(totals),
            None => {
                order.push(day.clone());
                sums.insert(day, totals);
            }
        }
    }
    for day in order {
        if let Some(totals) = sums.get(&day) {
            upsert_day(conn, &day, totals)?;
        }
    }
    Ok(())
}

/// Writes in one transaction at most; bounds how long one commit takes.
const MAX_BATCH: usize = 128;

pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

trait Job: Send {
    /// Runs the write inside the open transaction, in its own savepoint.
    fn run(&mut self, conn: &Connection);
    /// Answers the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Typed<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(in_savepoint(conn, work));
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let outcome = match (commit, self.result) {
            (Err(err), _) => Err(err),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Internal("the write was not run".into())),
        };
        let _ = self.reply.send(outcome);
    }
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
    run(conn, "SAVEPOINT write").map_err(classify)?;
    let mark = deferred_len();
    let result = match catch_unwind(AssertUnwindSafe(|| work(conn))) {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(StoreError::Internal("a store write panicked".into())),
    };
    match result {
        Ok(value) => {
            run(conn, "RELEASE write").map_err(classify)?;
            Ok(value)
        }
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK TO write; RELEASE write");
            give_back_deferred(mark);
            Err(err)
        }
    }
}

impl Writer {
    /// Moves `conn` to a new thread that serves writes until the store is dropped.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, queue))?;
        Ok(Writer { jobs })
    }

    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))?
    }
}

fn serve(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // IMMEDIATE takes the file's write lock now (waiting out another
        // process for the busy timeout), so the commit cannot fail on it.
        let commit = match run(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                DEFERRED.with(|deferred| *deferred.borrow_mut() = Some(Vec::new()));
                for job in batch.iter_mut() {
                    // On a full disk, an I/O error or no memory, SQLite may
                    // roll the whole transaction back, not just the failed
                    // statement. A write run after that would commit on its
                    // own, outside the group, and its caller would still be
                    // told it failed (the COMMIT below finds no transaction):
                    // a retried append would then be stored twice.
                    if conn.is_autocommit() {
                        break;
                    }
                    job.run(&conn);
                }
                // The day rows, once each, inside the transaction: a
                // failure here fails the whole batch, as a failed COMMIT.
                let flushed = if conn.is_autocommit() {
                    DEFERRED.with(|deferred| deferred.borrow_mut().take());
                    Ok(())
                } else {
                    flush_deferred(&conn)
                };
                if let Err(err) = flushed {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(classify(err))
                } else if conn.is_autocommit() {
                    Err(StoreError::Unavailable(
                        "SQLite rolled the transaction back (is the disk full?); nothing of it was stored".into(),
                    ))
                } else {
                    run(&conn, "COMMIT").map_err(|err| {
                        let _ = conn.execute_batch("ROLLBACK");
                        classify(err)
                    })
                }
            }
            Err(err) => Err(classify(err)),
        };
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job for the writer's queue, and where its answer arrives.
    fn job<T: Send + 'static>(
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Typed {
            work: Some(work),
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }

    #[tokio::test]
    async fn writes_after_sqlite_rolled_the_whole_transaction_back_are_not_stored() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER)").expect("table");
        let writer = Writer::start(conn).expect("writer");

        // Hold the writer thread in a first batch until the next two writes
        // are queued, so that those two form one batch of their own.
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (first, first_answer) = job(move |conn| {
            started_tx.send(()).ok();
            hold.recv().ok();
            conn.execute_batch("INSERT INTO t VALUES (1)")
        });
        writer.jobs.send(first).expect("queued");
        started.recv().expect("the first batch runs");

        // As SQLite does on a full disk: the failing write takes the whole
        // transaction down with it.
        let (failing, failing_answer) = job(|conn| {
            conn.execute_batch("INSERT INTO t VALUES (2); ROLLBACK")?;
            Err::<(), _>(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            ))
        });
        let (after, after_answer) = job(|conn| conn.execute_batch("INSERT INTO t VALUES (3)"));
        writer.jobs.send(failing).expect("queued");
        writer.jobs.send(after).expect("queued");
        release.send(()).expect("released");

        first_answer.await.expect("answered").expect("the first batch commits");
        assert!(failing_answer.await.expect("answered").is_err());
        let after = after_answer.await.expect("answered");
        assert!(matches!(after, Err(StoreError::Unavailable(_))), "{after:?}");
        let stored: Vec<i64> = writer
            .write(|conn| {
                let mut statement = conn.prepare("SELECT v FROM t ORDER BY v")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                rows.collect()
            })
            .await
            .expect("read");
        assert_eq!(stored, vec![1], "a write told it failed was not stored");
    }

    /// One batch: three writes charge alice's day, the third fails after
    /// charging; bob's day is charged once. The day rows hold the first two
    /// writes' sums, each row written once.
    #[tokio::test]
    async fn a_batch_sums_its_day_charges_and_a_failed_write_gives_its_back() {
        use crate::llm::Spend;
        use crate::store::Charge;

        let mut conn = Connection::open_in_memory().expect("open");
        super::super::migrate(&mut conn).expect("the schema");
        conn.execute_batch(
            "CREATE TABLE writes (n INTEGER);
             CREATE TRIGGER count_day_writes AFTER UPDATE ON usage_days BEGIN INSERT INTO writes VALUES (1); END;
             CREATE TRIGGER count_day_inserts AFTER INSERT ON usage_days BEGIN INSERT INTO writes VALUES (1); END;",
        )
        .expect("counting triggers");
        let writer = Writer::start(conn).expect("writer");
        let charge = |calls: u32| Charge {
            day: "2026-12-02".into(),
            model: "m".into(),
            spend: Spend {
                input_tokens: 10,
                model_calls: calls,
                ..Spend::default()
            },
            request: true,
            also: Vec::new(),
        };

        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (first, first_answer) = job(move |_| {
            started_tx.send(()).ok();
            hold.recv().ok();
            Ok(())
        });
        writer.jobs.send(first).expect("queued");
        started.recv().expect("the first batch runs");
        let mut answers = Vec::new();
        for (owner, calls, fails) in [
            ("alice", 1, false),
            ("alice", 2, false),
            ("alice", 4, true),
            ("bob", 8, false),
        ] {
            let (charging, answer) = job(move |conn| {
                super::super::usage::charge_day(conn, owner, &charge(calls))?;
                if fails {
                    return Err(rusqlite::Error::InvalidQuery);
                }
                Ok(())
            });
            writer.jobs.send(charging).expect("queued");
            answers.push((fails, answer));
        }
        release.send(()).expect("released");
        first_answer.await.expect("answered").expect("committed");
        for (fails, answer) in answers {
            assert_eq!(answer.await.expect("answered").is_err(), fails);
        }
        let (days, writes): (Vec<(String, i64, i64, i64)>, i64) = writer
            .write(|conn| {
                let mut statement =
                    conn.prepare("SELECT owner, model_calls, input_tokens, requests FROM usage_days ORDER BY owner")?;
                let days = statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let writes = conn.query_row("SELECT count(*) FROM writes", [], |row| row.get(0))?;
                Ok((days, writes))
            })
            .await
            .expect("read");
        assert_eq!(
            days,
            vec![("alice".to_string(), 3, 20, 2), ("bob".to_string(), 8, 10, 1)],
            "the failed write's charge was given back"
        );
        assert_eq!(writes, 2, "one upsert per day row for the batch");
    }
}
