//! [`TaskStore`] on Firestore: who runs a task, decided by conditional
//! commits.
//!
//! - `tasks/{task_id}`: `{owner, status, task, session_id, max_steps,
//!   system_instruction?, callback_url?, attempts, delivery_id?, lease_until?,
//!   result?, error?, created_at, updated_at, started_at?, finished_at?,
//!   callback_status?, callback_attempts?, callback_lease_until?,
//!   callback_error?, kind?, model?, input?, no_cache?, parent?,
//!   children_created?, children_done?, resumes?}` (the callback it owes
//!   once finished, in `callback`; the document itself in `task_doc`).
//!   `runnable` queries on `status` alone (a
//!   single-field index, which Firestore keeps without being asked), and
//!   sorts and filters the leases of the `queued` and `running` tasks it
//!   finds in memory (in `sweep`, with `callbacks_due`).
//! - `tasks/{task_id}/events/a{attempt}-i{index}`, both numbers zero-padded
//!   to 10 digits so that the ids sort in `(attempt, index)` order:
//!   `{attempt, index, data, created_at}`, `data` being JSON text as
//!   `result`. `events` is one query in id order from a cursor, with a limit.
//!
//! Every change of a task (claim, renewal, release, outcome, and a cancel,
//! in `cancel`) goes through
//! [`FirestoreStore::change_task`]: read the task, decide (a claim with
//! [`claim_step`], as SQLite does), and commit the new document only if the
//! task is still as read. Of concurrent claims, from any number of
//! instances, one commits and the others read again and find it held, so
//! at most one wins; `attempts` is the fencing token that keeps a worker
//! that lost its claim from renewing, releasing or finishing it. A task is
//! created with CreateDocument, which refuses an id that exists; an event
//! is written without a precondition, so writing it again replaces it.

use std::time::{Duration, SystemTime};
use tracing::Instrument;

use async_trait::async_trait;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{Value, value::ValueType};
use firestore::{FirestoreQueryCursor, FirestoreTimestamp, FirestoreValue};
use serde::{Deserialize, Serialize};

use super::cas::{classify, commit_if_unchanged, put, read};
use super::ids::is_document_id;
use super::task_doc::{TaskDoc, to_doc, to_task, to_u32};
use super::usage::charge_day;
use super::{FirestoreStore, Written, bounded, query_limit, time_of, timestamp};
use crate::owned;
use crate::store::{
    CallbackLease, CallbackOutcome, Cancel, Charge, Claim, ClaimStep, FanOut, Finish, Finished, Page, StoreError,
    TaskEvent, TaskPosition, TaskRecord, TaskStatus, TaskStore, claim_step, event_time, exhausted_error, lease_end,
};

pub(super) const TASKS: &str = "tasks";
const EVENTS: &str = "events";

#[derive(Debug, Serialize, Deserialize)]
struct EventDoc {
    attempt: i64,
    index: i64,
    data: String,
    created_at: FirestoreTimestamp,
}

impl FirestoreStore {
    /// The path of task `task_id`; `None` when it cannot be a document id,
    /// so that no such task exists.
    pub(super) fn task_path(&self, task_id: &str) -> Option<String> {
        is_document_id(task_id).then(|| format!("{}/{TASKS}/{task_id}", self.documents()))
    }

    async fn create_now(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.doc_path(TASKS, &task.task_id, "the task id")?;
        let now = timestamp(SystemTime::now()).map_err(classify)?;
        let doc = to_doc(task, now).map_err(classify)?;
        // CreateDocument refuses an id that exists: a task is created once.
        self.counts.write();
        let created = self
            .db
            .fluent()
            .insert()
            .into(TASKS)
            .document_id(&task.task_id)
            .object(&doc)
            .execute::<Written>()
            .instrument(crate::store::span("firestore", "write"))
            .await;
        match created {
            Ok(_) => {
                self.counts.written(1);
                Ok(())
            }
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
    pub(super) async fn change_task<T, F>(&self, task_id: &str, what: &str, change: F) -> Result<T, StoreError>
    where
        F: Fn(Option<TaskDoc>) -> Result<(T, Option<TaskDoc>), FirestoreError>,
    {
        self.change_task_charged(task_id, what, None, change).await
    }

    /// [`change_task`](Self::change_task), adding `charge` to the task
    /// owner's day record (`usage`) in the same commit when the task is
    /// written: counted exactly when the change is.
    async fn change_task_charged<T, F>(
        &self,
        task_id: &str,
        what: &str,
        charge: Option<&Charge>,
        change: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Option<TaskDoc>) -> Result<(T, Option<TaskDoc>), FirestoreError>,
    {
        Ok(self.change_task_counted(task_id, what, charge, change).await?.0)
    }

    /// [`change_task_charged`](Self::change_task_charged), counting a child
    /// that the change ends in its parent in the same commit (`store::fan`):
    /// true with the value when it was the last of its parent's children.
    async fn change_task_counted<T, F>(
        &self,
        task_id: &str,
        what: &str,
        charge: Option<&Charge>,
        change: F,
    ) -> Result<(T, bool), StoreError>
    where
        F: Fn(Option<TaskDoc>) -> Result<(T, Option<TaskDoc>), FirestoreError>,
    {
        let Some(path) = self.task_path(task_id) else {
            return Ok((change(None).map_err(classify)?.0, false));
        };
        let path = &path;
        let change = &change;
        let _turn = self.locks.lock(path).await;
        commit_if_unchanged(&self.counts, &self.db, what, move || async move {
            let stored = read::<TaskDoc>(&self.counts, &self.db, self.documents(), TASKS, task_id).await?;
            let was_finished = stored.value.as_ref().is_some_and(|doc| is_finished(&doc.status));
            let (value, doc) = change(stored.value)?;
            let Some(doc) = doc else {
                return Ok(((value, false), Vec::new()));
            };
            let mut writes = vec![put(path, &doc, Some(stored.unchanged))?];
            if let Some(charge) = charge {
                writes.extend(charge_day(self.documents(), &owned::key_owner(&doc.owner), charge)?);
            }
            let mut last = false;
            if let Some(parent) = doc
                .parent
                .as_deref()
                .filter(|_| !was_finished && is_finished(&doc.status))
            {
                let (write, ready) = self.count_in_parent(parent).await?;
                writes.extend(write);
                last = ready;
            }
            Ok(((value, last), writes))
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
                    doc.finish(&Finished::Failed(exhausted_error(task.attempts, max_attempts)), now_ts);
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

    async fn release_now(&self, task_id: &str, attempt: u32, charge: Option<&Charge>) -> Result<bool, StoreError> {
        // The attempt's calls, not a request: the run counts when it finishes.
        let charge = charge.map(Charge::given_back);
        self.change_task_charged(task_id, "release", charge.as_ref(), |stored| {
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

    async fn finish_now(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &Finished,
        charge: Option<&Charge>,
    ) -> Result<Finish, StoreError> {
        let (recorded, parent_ready) = self
            .change_task_counted(task_id, "finish", charge, |stored| {
                Ok(match stored {
                    Some(mut doc)
                        if doc.attempts == i64::from(attempt)
                            && matches!(TaskStatus::parse(&doc.status), TaskStatus::Queued | TaskStatus::Running) =>
                    {
                        doc.finish(outcome, timestamp(SystemTime::now())?);
                        (true, Some(doc))
                    }
                    _ => (false, None),
                })
            })
            .await?;
        Ok(match recorded {
            true => Finish::Recorded { parent_ready },
            false => Finish::NotHeld,
        })
    }

    async fn get_now(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        if !is_document_id(task_id) {
            return Ok(None);
        }
        let doc = read::<TaskDoc>(&self.counts, &self.db, self.documents(), TASKS, task_id)
            .await
            .map_err(classify)?;
        Ok(doc.value.map(|doc| to_task(task_id, doc)))
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
        self.counts.write();
        self.db
            .fluent()
            .update()
            .in_col(EVENTS)
            .document_id(event_id(event.attempt, event.index))
            .parent(&task_path)
            .object(&doc)
            .execute::<Written>()
            .instrument(crate::store::span("firestore", "write"))
            .await
            .map_err(classify)?;
        self.counts.written(1);
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
        let docs: Vec<EventDoc> = self.counts.query(query.obj().query()).await.map_err(classify)?;
        docs.into_iter().map(to_event).collect()
    }
}

/// Whether a stored status is one a task ends in.
fn is_finished(status: &str) -> bool {
    !matches!(TaskStatus::parse(status), TaskStatus::Queued | TaskStatus::Running)
}

/// Whether claim `attempt` holds the task: it is `running` under it, and
/// not given up to wait for its children (`store::fan`).
fn holds(doc: &TaskDoc, attempt: u32) -> bool {
    TaskStatus::parse(&doc.status) == TaskStatus::Running
        && doc.attempts == i64::from(attempt)
        && doc.delivery_id.is_some()
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

    async fn release_charged(&self, task_id: &str, attempt: u32, charge: Option<&Charge>) -> Result<bool, StoreError> {
        bounded(self.release_now(task_id, attempt, charge)).await
    }

    async fn finish_counted(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &Finished,
        charge: Option<&Charge>,
    ) -> Result<Finish, StoreError> {
        bounded(self.finish_now(task_id, attempt, outcome, charge)).await
    }

    async fn fan_out(
        &self,
        parent: &str,
        attempt: u32,
        input: &serde_json::Value,
        children: &[TaskRecord],
        charge: Option<&Charge>,
    ) -> Result<FanOut, StoreError> {
        bounded(self.fan_out_now(parent, attempt, input, children, charge)).await
    }

    async fn cancel(&self, task_id: &str) -> Result<Cancel, StoreError> {
        bounded(self.cancel_now(task_id)).await
    }

    async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        bounded(self.get_now(task_id)).await
    }

    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        after: Option<&TaskPosition>,
        limit: usize,
    ) -> Result<Page<TaskRecord, TaskPosition>, StoreError> {
        bounded(self.list_tasks_now(owner, status, after, limit)).await
    }

    async fn lease_callback(
        &self,
        task_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<CallbackLease, StoreError> {
        bounded(self.lease_callback_now(task_id, lease, max_attempts, now)).await
    }

    async fn settle_callback(
        &self,
        task_id: &str,
        attempt: u32,
        outcome: &CallbackOutcome,
    ) -> Result<bool, StoreError> {
        bounded(self.settle_callback_now(task_id, attempt, outcome)).await
    }

    async fn callbacks_due(&self, now: SystemTime, limit: usize) -> Result<Vec<String>, StoreError> {
        bounded(self.callbacks_due_now(now, limit)).await
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::firestore::tests::{emulator, expire_at, project, raw_fields, store};

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn two_stores_on_one_database_claim_a_task_once() {
        // Two instances: only the conditional commits keep them apart.
        let (host, project) = (emulator(), project());
        let a: Arc<dyn TaskStore> = store(&host, &project).await;
        let b: Arc<dyn TaskStore> = store(&host, &project).await;
        for round in 0..3 {
            crate::store::contract::claims_have_one_winner(&a, &b, &format!("race-{round}")).await;
            crate::store::contract::callback_leases_have_one_winner(&a, &b, &format!("race-cb-{round}")).await;
            crate::store::contract::concurrent_children_resume_their_parent_once(&a, &b, &format!("race-fan-{round}"))
                .await;
        }
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn tasks_and_events_carry_no_expire_at() {
        let (host, project) = (emulator(), project());
        let ttl = Some(Duration::from_secs(86_400));
        let store = FirestoreStore::connect_to(
            Some(&host),
            &project,
            "(default)",
            ttl,
            &crate::http::Metrics::new("test"),
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
        let task = TaskRecord::queued("ttl-task", "anonymous", "t", "s", 5);
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
}
