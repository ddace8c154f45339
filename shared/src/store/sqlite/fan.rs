//! Fan-out and fan-in on SQLite (`store::fan`): a fan-out inserts the
//! children and updates the parent in one write; a child's end is counted
//! in its parent inside the write that ends it (its outcome, a claim out
//! of attempts, a cancel), so the file's write lock orders them all.

use std::time::SystemTime;

use rusqlite::{Connection, params};

use super::tasks::{insert, task_row};
use super::usage::charge_day;
use super::{SqliteStore, from_millis, millis};
use crate::store::{Charge, FanOut, StoreError, TaskRecord, count_child, fan_out_step};

/// Counts the child that just ended in its parent `parent_id`, inside the
/// write that ended it (`store::fan`): true when it was the last.
pub(super) fn count_in_parent(conn: &Connection, parent_id: Option<&str>, now: i64) -> rusqlite::Result<bool> {
    let Some(mut parent) = parent_id.map(|id| task_row(conn, id)).transpose()?.flatten() else {
        return Ok(false);
    };
    let before = parent.children;
    let last = count_child(&mut parent, from_millis(now));
    if parent.children != before {
        conn.prepare_cached(
            "UPDATE tasks SET children_done = ?2, resumes = ?3, lease_until = ?4, updated_at = ?5 WHERE id = ?1",
        )?
        .execute(params![
            parent.task_id,
            i64::from(parent.children.done),
            i64::from(parent.children.resumes),
            parent.lease_until.map(millis),
            now
        ])?;
    }
    Ok(last)
}

impl SqliteStore {
    pub(super) async fn fan_out_now(
        &self,
        parent: &str,
        attempt: u32,
        input: &serde_json::Value,
        children: &[TaskRecord],
        charge: Option<&Charge>,
    ) -> Result<FanOut, StoreError> {
        let parent = parent.to_string();
        let input = input.clone();
        let children = children.to_vec();
        // The attempt's calls, not a request: the run counts when it finishes.
        let charge = charge.map(Charge::given_back);
        self.write(move |conn| {
            let Some(stored) = task_row(conn, &parent)? else {
                return Ok(FanOut::Lost);
            };
            let now = millis(SystemTime::now());
            let next = match fan_out_step(&stored, attempt, &input, children.len(), from_millis(now)) {
                Ok(next) => next,
                Err(answer) => return Ok(answer),
            };
            for child in &children {
                insert(conn, child, now)?;
            }
            conn.prepare_cached(
                "UPDATE tasks SET input = ?2, children_created = ?3, delivery_id = NULL, lease_until = ?4,
                    updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                parent,
                input.to_string(),
                i64::from(next.children.created),
                next.lease_until.map(millis),
                now
            ])?;
            if let Some(charge) = &charge {
                charge_day(conn, &crate::owned::key_owner(&stored.owner), charge)?;
            }
            Ok(FanOut::Waiting)
        })
        .await
    }
}
