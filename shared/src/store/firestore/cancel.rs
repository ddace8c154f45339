//! [`TaskStore::cancel`](crate::store::TaskStore::cancel) on Firestore: a
//! change of the task document like a claim ([`FirestoreStore::change_task`]),
//! decided by [`cancel_step`] as on SQLite, and committed only if the task is
//! still as read, so a cancel and a claim or an outcome never both win.

use std::time::SystemTime;

use super::FirestoreStore;
use super::task_doc::to_task;
use super::timestamp;
use crate::store::{Cancel, CancelStep, Finished, StoreError, cancel_step};

impl FirestoreStore {
    pub(super) async fn cancel_now(&self, task_id: &str) -> Result<Cancel, StoreError> {
        self.change_task(task_id, "cancel", |stored| {
            let Some(mut doc) = stored else {
                return Ok((Cancel::NotFound, None));
            };
            let task = to_task(task_id, doc.clone());
            Ok(match cancel_step(&task) {
                CancelStep::AlreadyCancelled => (Cancel::AlreadyCancelled(task), None),
                CancelStep::Finished => (Cancel::Finished(task), None),
                CancelStep::Synchronous => (Cancel::Synchronous(task), None),
                CancelStep::Cancel => {
                    doc.finish(&Finished::Cancelled, timestamp(SystemTime::now())?);
                    (Cancel::Cancelled(to_task(task_id, doc.clone())), Some(doc))
                }
            })
        })
        .await
    }
}
