//! The one thread that writes: group commit.
//!
//! SQLite admits one writer at a time, so many threads taking turns on the
//! writer connection mostly wait on each other (profiles of the chat
//! benchmark showed a third of the CPU in context switches). Instead one
//! thread owns the connection; writes queue to it, and it runs all that are
//! waiting in one transaction, each inside a savepoint of its own, so a
//! write that fails is rolled back alone. A caller hears back only after the
//! COMMIT, so what it was told was stored is stored.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{classify, run};
use crate::store::StoreError;

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
                if conn.is_autocommit() {
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
}
