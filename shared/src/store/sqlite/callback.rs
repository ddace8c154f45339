//! The callback states of [`TaskStore`](crate::store::TaskStore) on
//! SQLite: columns of the task's row (migration 7). Leasing reads, decides
//! with [`callback_step`] and writes within one write on the writer thread,
//! as a claim does; settling is one update conditioned on the status and on
//! `callback_attempts`, the attempt's fencing token; `callbacks_due` walks
//! the partial index `tasks_callbacks_due`, which holds only pending ones.

use std::time::{Duration, SystemTime};

use rusqlite::params;

use super::tasks::task_row;
use super::{SqliteStore, millis};
use crate::store::{
    CallbackLease, CallbackOutcome, CallbackStep, StoreError, callback_step, lease_end, settled, settles,
    unsettled_error,
};

impl SqliteStore {
    pub(super) async fn lease_callback_now(
        &self,
        task_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<CallbackLease, StoreError> {
        let task_id = task_id.to_string();
        let lease_until = millis(lease_end(now, lease)?);
        self.write(move |conn| {
            let Some(task) = task_row(conn, &task_id)? else {
                return Ok(CallbackLease::NotFound);
            };
            let attempts = task.callback.as_ref().map_or(0, |c| c.attempts);
            Ok(match callback_step(&task, max_attempts, now) {
                CallbackStep::NotFinished => CallbackLease::NotFinished,
                CallbackStep::Settled => CallbackLease::Settled(task),
                CallbackStep::Held(until) => CallbackLease::Held { until },
                CallbackStep::Lease => {
                    conn.execute(
                        "UPDATE tasks SET callback_attempts = callback_attempts + 1, callback_lease_until = ?2
                         WHERE id = ?1",
                        params![task_id, lease_until],
                    )?;
                    match task_row(conn, &task_id)? {
                        Some(task) => CallbackLease::Leased(task),
                        None => CallbackLease::NotFound,
                    }
                }
                CallbackStep::Exhaust => {
                    let error = unsettled_error(attempts, task.callback.as_ref().and_then(|c| c.last_error.as_deref()));
                    conn.execute(
                        "UPDATE tasks SET callback_status = 'failed', callback_lease_until = NULL,
                            callback_error = ?2
                         WHERE id = ?1",
                        params![task_id, error],
                    )?;
                    match task_row(conn, &task_id)? {
                        Some(task) => CallbackLease::Settled(task),
                        None => CallbackLease::NotFound,
                    }
                }
            })
        })
        .await
    }

    pub(super) async fn settle_callback_now(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &CallbackOutcome,
    ) -> Result<bool, StoreError> {
        let task_id = task_id.to_string();
        let outcome = outcome.clone();
        self.write(move |conn| {
            let Some(task) = task_row(conn, &task_id)? else {
                return Ok(false);
            };
            let Some(callback) = task.callback.as_ref().filter(|c| settles(Some(c), attempt)) else {
                return Ok(false);
            };
            let next = settled(callback, &outcome);
            conn.execute(
                "UPDATE tasks SET callback_status = ?2, callback_lease_until = ?3, callback_error = ?4
                 WHERE id = ?1",
                params![
                    task_id,
                    next.status.as_str(),
                    next.lease_until.map(millis),
                    next.last_error
                ],
            )?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn callbacks_due_now(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = millis(now);
        self.read(move |conn| {
            // The first condition is the index's own: finished tasks that
            // owe nothing are not in it.
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM tasks INDEXED BY tasks_callbacks_due
                 WHERE callback_status = 'pending'
                   AND (callback_lease_until IS NULL OR callback_lease_until <= ?1)
                 ORDER BY finished_at, rowid LIMIT ?2",
            )?;
            stmt.query_map(params![now, i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?
                .collect()
        })
        .await
    }
}
