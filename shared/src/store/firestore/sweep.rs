//! What a sweep of the Firestore store reads: the tasks to deliver again
//! (`runnable`) and the finished tasks whose callback is still owed
//! (`callbacks_due`). Each is one query on a field that only the tasks it
//! looks for match (a single-field index, kept without being asked), bounded,
//! with the leases filtered and sorted in memory.

use std::time::SystemTime;

use firestore::{FirestoreDb, FirestoreTimestamp};
use serde::Deserialize;

use super::FirestoreStore;
use super::cas::classify;
use super::tasks::TASKS;
use crate::store::{CallbackStatus, StoreError, TaskStatus, lease_passed};

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

/// What `callbacks_due` reads of a task.
#[derive(Debug, Deserialize)]
struct DueDoc {
    #[serde(default)]
    callback_lease_until: Option<FirestoreTimestamp>,
    #[serde(default)]
    finished_at: Option<FirestoreTimestamp>,
}

impl FirestoreStore {
    /// At most this many in-flight tasks are read by one `runnable` call.
    const RUNNABLE_SCAN: u32 = 1000;

    pub(super) async fn runnable_now(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Queued and running tasks: the tasks in flight, few next to the
        // finished ones, which the filter on `status` never reads. Bounded,
        // so a large backlog costs one page per sweep; what lies beyond it
        // is reached as the tasks before it finish.
        let query = self
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
            .query();
        let docs = self.counts.query(query).await.map_err(classify)?;
        let mut runnable = Vec::new();
        for doc in docs {
            let state: TaskStateDoc = FirestoreDb::deserialize_doc_to(&doc).map_err(classify)?;
            let due = match TaskStatus::parse(&state.status) {
                TaskStatus::Queued => true,
                TaskStatus::Running => state
                    .lease_until
                    .is_some_and(|until| lease_passed(SystemTime::from(until), now)),
                TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => false,
            };
            if due {
                let id = doc.name.rsplit('/').next().unwrap_or_default().to_string();
                runnable.push((SystemTime::from(state.created_at), id));
            }
        }
        runnable.sort();
        Ok(runnable.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    /// At most this many pending callbacks are read by one `callbacks_due`.
    const CALLBACKS_SCAN: u32 = 1000;

    pub(super) async fn callbacks_due_now(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = self
            .db
            .fluent()
            .select()
            .fields(["callback_lease_until", "finished_at"])
            .from(TASKS)
            .filter(|q| q.for_all([q.field("callback_status").eq(CallbackStatus::Pending.as_str())]))
            .limit(Self::CALLBACKS_SCAN)
            .query();
        let docs = self.counts.query(query).await.map_err(classify)?;
        let mut due = Vec::new();
        for doc in docs {
            let state: DueDoc = FirestoreDb::deserialize_doc_to(&doc).map_err(classify)?;
            let free = state
                .callback_lease_until
                .is_none_or(|until| lease_passed(SystemTime::from(until), now));
            if free {
                let id = doc.name.rsplit('/').next().unwrap_or_default().to_string();
                let finished = state.finished_at.map_or(SystemTime::UNIX_EPOCH, SystemTime::from);
                due.push((finished, id));
            }
        }
        due.sort();
        Ok(due.into_iter().take(limit).map(|(_, id)| id).collect())
    }
}
