//! [`TaskStore`] on SQLite: a `tasks` row per task and a `task_events` row
//! per progress event, under the primary key `(task_id, attempt, idx)`.
//!
//! A claim reads the task, decides with [`claim_step`] and writes its
//! decision within one write on the writer thread, whose transaction holds
//! the file's write lock: no other claim, of this process or another, comes
//! in between, so of concurrent claims at most one wins. Renewing,
//! releasing and finishing are single updates conditioned on the status and
//! on `attempts`, the claim's fencing token, so a worker that lost its claim
//! changes nothing. `runnable` walks the partial index `tasks_runnable`,
//! which holds only queued and running tasks, in creation order; an event
//! stored again at its position replaces the first (an upsert), and
//! `events` is a range of the primary key.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::fan::count_in_parent;
use super::usage::charge_day;
use super::{SqliteStore, from_millis, millis};
use crate::store::{
    CallbackLease, CallbackOutcome, CallbackState, CallbackStatus, Cancel, CancelStep, Charge, Children, Claim,
    ClaimStep, FanOut, Finish, Finished, Page, StoreError, TaskEvent, TaskKind, TaskPosition, TaskRecord, TaskState,
    TaskStatus, TaskStore, cancel_step, claim_step, event_time, exhausted_error, lease_end, rfc3339,
};

/// The columns [`row_to_task`] reads, in its order.
pub(super) const TASK_COLUMNS: &str = "id, status, task, session_id, max_steps, result, error, created_at, updated_at, \
     system_instruction, callback_url, attempts, delivery_id, lease_until, started_at, finished_at, owner, \
     callback_status, callback_attempts, callback_lease_until, callback_error, kind, model, input, cache, \
     parent_id, children_created, children_done, resumes";

/// Where `created_at` is in [`TASK_COLUMNS`] (milliseconds), for the
/// listings' cursor.
pub(super) const CREATED_AT_COLUMN: usize = 7;

fn to_u32(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// What finishing a task sets besides its outcome: the callback it owes
/// when it has a `callback_url` (`store::callback`), in the same write.
const OWE_CALLBACK: &str = "callback_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END, \
     callback_attempts = 0, callback_lease_until = NULL, callback_error = NULL";

pub(super) fn row_to_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = row.get(1)?;
    let result: Option<String> = row.get(5)?;
    Ok(TaskRecord {
        task_id: row.get(0)?,
        owner: row.get(16)?,
        state: TaskState::from_stored(&status, result.as_deref(), row.get(6)?),
        kind: TaskKind::parse(row.get::<_, Option<String>>(21)?.as_deref()),
        task: row.get(2)?,
        session_id: row.get(3)?,
        max_steps: to_u32(row.get(4)?),
        model: row.get(22)?,
        // Written by `create` from a JSON value; unreadable reads as none.
        input: row
            .get::<_, Option<String>>(23)?
            .and_then(|text| serde_json::from_str(&text).ok()),
        cache: row.get::<_, i64>(24)? != 0,
        created_at: rfc3339(from_millis(row.get(CREATED_AT_COLUMN)?)),
        updated_at: rfc3339(from_millis(row.get(8)?)),
        system_instruction: row.get(9)?,
        callback_url: row.get(10)?,
        attempts: to_u32(row.get(11)?),
        delivery_id: row.get(12)?,
        lease_until: row.get::<_, Option<i64>>(13)?.map(from_millis),
        started_at: row.get::<_, Option<i64>>(14)?.map(|t| rfc3339(from_millis(t))),
        finished_at: row.get::<_, Option<i64>>(15)?.map(|t| rfc3339(from_millis(t))),
        callback: row
            .get::<_, Option<String>>(17)?
            .and_then(|s| CallbackStatus::parse(&s))
            .map(|status| -> rusqlite::Result<CallbackState> {
                Ok(CallbackState {
                    status,
                    attempts: to_u32(row.get(18)?),
                    lease_until: row.get::<_, Option<i64>>(19)?.map(from_millis),
                    last_error: row.get(20)?,
                })
            })
            .transpose()?,
        parent: row.get(25)?,
        children: Children {
            created: to_u32(row.get(26)?),
            done: to_u32(row.get(27)?),
            resumes: to_u32(row.get(28)?),
        },
    })
}

/// Inserts `task` as given, created at `now`.
pub(super) fn insert(conn: &Connection, task: &TaskRecord, now: i64) -> rusqlite::Result<()> {
    let (status, result, error) = task.state.to_stored();
    conn.prepare_cached(
        "INSERT INTO tasks (id, status, task, session_id, max_steps, result, error, created_at, updated_at,
                            system_instruction, callback_url, attempts, delivery_id, lease_until,
                            started_at, finished_at, owner, callback_status, callback_attempts,
                            callback_lease_until, callback_error, kind, model, input, cache,
                            parent_id, children_created, children_done, resumes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
    )?
    .execute(params![
        task.task_id,
        status.as_str(),
        task.task,
        task.session_id,
        i64::from(task.max_steps),
        result,
        error,
        now,
        task.system_instruction,
        task.callback_url,
        i64::from(task.attempts),
        task.delivery_id,
        task.lease_until.map(millis),
        // Set by the store from the status, as the other times.
        (status != TaskStatus::Queued).then_some(now),
        task.state.finished().is_some().then_some(now),
        task.owner,
        task.callback.as_ref().map(|c| c.status.as_str()),
        task.callback.as_ref().map_or(0, |c| i64::from(c.attempts)),
        task.callback.as_ref().and_then(|c| c.lease_until).map(millis),
        task.callback.as_ref().and_then(|c| c.last_error.clone()),
        task.kind.as_str(),
        task.model,
        task.input.as_ref().map(|input| input.to_string()),
        task.cache,
        task.parent,
        i64::from(task.children.created),
        i64::from(task.children.done),
        i64::from(task.children.resumes),
    ])?;
    Ok(())
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
pub(super) fn task_row(conn: &Connection, task_id: &str) -> rusqlite::Result<Option<TaskRecord>> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([task_id], row_to_task)
        .optional()
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let task = task.clone();
        self.write(move |conn| insert(conn, &task, millis(SystemTime::now())))
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
                                finished_at = ?3, updated_at = ?3, {OWE_CALLBACK}
                             WHERE id = ?1 RETURNING {TASK_COLUMNS}"
                        ))?
                        .query_row(
                            params![task_id, exhausted_error(task.attempts, max_attempts), now],
                            row_to_task,
                        )?;
                    count_in_parent(conn, failed.parent.as_deref(), now)?;
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
                 WHERE id = ?1 AND status = 'running' AND attempts = ?2 AND delivery_id IS NOT NULL",
                params![task_id, i64::from(attempt), lease_until, now],
            )?;
            Ok(renewed > 0)
        })
        .await
    }

    async fn release_charged(&self, task_id: &str, attempt: u32, charge: Option<&Charge>) -> Result<bool, StoreError> {
        let task_id = task_id.to_string();
        // The attempt's calls, not a request: the run counts when it finishes.
        let charge = charge.map(Charge::given_back);
        self.write(move |conn| {
            let owner: Option<String> = conn
                .prepare_cached(
                    "UPDATE tasks SET status = 'queued', lease_until = NULL, delivery_id = NULL, updated_at = ?3
                     WHERE id = ?1 AND status = 'running' AND attempts = ?2 AND delivery_id IS NOT NULL
                     RETURNING owner",
                )?
                .query_row(params![task_id, i64::from(attempt), millis(SystemTime::now())], |r| {
                    r.get(0)
                })
                .optional()?;
            if let (Some(owner), Some(charge)) = (&owner, &charge) {
                charge_day(conn, &crate::owned::key_owner(owner), charge)?;
            }
            Ok(owner.is_some())
        })
        .await
    }

    async fn finish_counted(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &Finished,
        charge: Option<&Charge>,
    ) -> Result<Finish, StoreError> {
        let task_id = task_id.to_string();
        let (status, result, error) = outcome.to_stored();
        let error = error.map(str::to_string);
        let charge = charge.cloned();
        self.write(move |conn| {
            let now = millis(SystemTime::now());
            let finished: Option<(String, Option<String>)> = conn
                .prepare_cached(&format!(
                    "UPDATE tasks SET status = ?3, result = ?4, error = ?5, lease_until = NULL,
                        finished_at = ?6, updated_at = ?6, {OWE_CALLBACK}
                     WHERE id = ?1 AND attempts = ?2 AND status IN ('queued', 'running')
                     RETURNING owner, parent_id"
                ))?
                .query_row(
                    params![task_id, i64::from(attempt), status.as_str(), result, error, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((owner, parent)) = finished else {
                return Ok(Finish::NotHeld);
            };
            // Only the write that records the outcome counts the run, so a
            // run counts once whoever finishes it.
            if let Some(charge) = &charge {
                charge_day(conn, &crate::owned::key_owner(&owner), charge)?;
            }
            let parent_ready = count_in_parent(conn, parent.as_deref(), now)?;
            Ok(Finish::Recorded { parent_ready })
        })
        .await
    }

    async fn fan_out(
        &self,
        parent: &str,
        attempt: u32,
        input: &serde_json::Value,
        children: &[TaskRecord],
        charge: Option<&Charge>,
    ) -> Result<FanOut, StoreError> {
        self.fan_out_now(parent, attempt, input, children, charge).await
    }

    async fn cancel(&self, task_id: &str) -> Result<Cancel, StoreError> {
        let task_id = task_id.to_string();
        // Read, decide and write in one write, as a claim: no claim or
        // outcome of another worker comes in between.
        self.write(move |conn| {
            let Some(task) = task_row(conn, &task_id)? else {
                return Ok(Cancel::NotFound);
            };
            let now = millis(SystemTime::now());
            Ok(match cancel_step(&task) {
                CancelStep::AlreadyCancelled => Cancel::AlreadyCancelled(task),
                CancelStep::Finished => Cancel::Finished(task),
                CancelStep::Synchronous => Cancel::Synchronous(task),
                CancelStep::Cancel => {
                    let cancelled = conn
                        .prepare_cached(&format!(
                            "UPDATE tasks SET status = 'cancelled', lease_until = NULL, finished_at = ?2, updated_at = ?2,
                                {OWE_CALLBACK}
                             WHERE id = ?1 RETURNING {TASK_COLUMNS}"
                        ))?
                        .query_row(params![task_id, now], row_to_task)?;
                    count_in_parent(conn, cancelled.parent.as_deref(), now)?;
                    Cancel::Cancelled(cancelled)
                }
            })
        })
        .await
    }

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let task_id = task_id.to_string();
        self.read(move |conn| task_row(conn, &task_id)).await
    }

    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        after: Option<&TaskPosition>,
        limit: usize,
    ) -> Result<Page<TaskRecord, TaskPosition>, StoreError> {
        self.list_tasks_now(owner, status, after, limit).await
    }

    async fn lease_callback(
        &self,
        task_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<CallbackLease, StoreError> {
        self.lease_callback_now(task_id, lease, max_attempts, now).await
    }

    async fn settle_callback(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &CallbackOutcome,
    ) -> Result<bool, StoreError> {
        self.settle_callback_now(task_id, attempt, outcome).await
    }

    async fn callbacks_due(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        self.callbacks_due_now(now, limit).await
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

    /// Rows this store never writes (edited by hand) read through
    /// `TaskState::from_stored`: the API shows their status as before, and
    /// no result or error where none could be read. A result or an error
    /// beside a status that cannot have it is dropped (it used to show).
    #[tokio::test]
    async fn damaged_task_rows_read_as_their_status_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("damaged.db")).await.expect("open");
        let rows = [
            ("no-result", "completed", None, None),
            ("bad-result", "completed", Some("{not json"), None),
            ("no-error", "failed", None, None),
            ("both", "failed", Some(r#"{"response":"4"}"#), Some("boom")),
            ("unknown", "paused", None, Some("why")),
            ("queued-with-error", "queued", None, Some("stale")),
        ];
        for (id, status, result, error) in rows {
            store
                .write(move |conn| {
                    conn.execute(
                        "INSERT INTO tasks (id, status, task, session_id, max_steps, result, error,
                                            created_at, updated_at)
                         VALUES (?1, ?2, 't', 's', 5, ?3, ?4, 1000, 1000)",
                        params![id, status, result, error],
                    )?;
                    Ok(())
                })
                .await
                .expect("insert");
        }
        // Rows from before owners were stored belong to `anonymous`.
        let legacy = store.get("no-result").await.expect("get").expect("stored");
        assert_eq!(legacy.owner, "anonymous");
        let view = |id: &'static str| {
            let store = &store;
            async move {
                let task = store.get(id).await.expect("get").expect("stored");
                let view = serde_json::to_value(crate::task::TaskView::from(task)).expect("json");
                (
                    view["status"].clone(),
                    view.get("result").cloned(),
                    view.get("error").cloned(),
                )
            }
        };
        let json = |v: &str| serde_json::Value::String(v.to_string());
        assert_eq!(view("no-result").await, (json("completed"), None, None));
        assert_eq!(view("bad-result").await, (json("completed"), None, None));
        assert_eq!(view("no-error").await, (json("failed"), None, None));
        assert_eq!(view("both").await, (json("failed"), None, Some(json("boom"))));
        assert_eq!(view("unknown").await, (json("failed"), None, Some(json("why"))));
        assert_eq!(view("queued-with-error").await, (json("queued"), None, None));
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
                    "EXPLAIN QUERY PLAN SELECT id FROM tasks
                     WHERE callback_status = 'pending'
                       AND (callback_lease_until IS NULL OR callback_lease_until <= 0)
                     ORDER BY finished_at, rowid LIMIT 10",
                )?;
                stmt.query_map([], |r| r.get::<_, String>(3))?.collect()
            })
            .await
            .expect("plan");
        // `callbacks_due` walks its own partial index, in order.
        assert!(plan.iter().any(|p| p.contains("tasks_callbacks_due")), "{plan:?}");
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
}
