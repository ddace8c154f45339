//! Fan-out and fan-in on Firestore (`store::fan`): a fan-out is one commit
//! of the parent (conditioned on its update time) and its new children
//! (each conditioned on not existing); a child's end is counted in its
//! parent by the commit that ends it, which writes both documents, each
//! conditioned on being as read ([`FirestoreStore::change_task_counted`]).

use std::time::SystemTime;

use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::Write;

use super::cas::{commit_if_unchanged, exists, put, read};
use super::task_doc::{TaskDoc, to_doc, to_task};
use super::tasks::TASKS;
use super::usage::charge_day;
use super::{FirestoreStore, timestamp};
use crate::owned;
use crate::store::{Charge, FanOut, StoreError, TaskRecord, count_child, fan_out_step};

impl FirestoreStore {
    /// The write that counts a child that has just ended in its parent
    /// `parent_id` (none when the parent has ended or is gone), conditioned
    /// on the parent as read, and whether the child was the last.
    pub(super) async fn count_in_parent(&self, parent_id: &str) -> Result<(Option<Write>, bool), FirestoreError> {
        let Some(parent_path) = self.task_path(parent_id) else {
            return Ok((None, false));
        };
        let stored = read::<TaskDoc>(&self.counts, &self.db, self.documents(), TASKS, parent_id).await?;
        let Some(mut doc) = stored.value else {
            return Ok((None, false));
        };
        let mut parent = to_task(parent_id, doc.clone());
        let now = SystemTime::now();
        let last = count_child(&mut parent, now);
        if !doc.take_children(&parent, timestamp(now)?)? {
            return Ok((None, false));
        }
        Ok((Some(put(&parent_path, &doc, Some(stored.unchanged))?), last))
    }

    pub(super) async fn fan_out_now(
        &self,
        parent_id: &str,
        attempt: u32,
        input: &serde_json::Value,
        children: &[TaskRecord],
        charge: Option<&Charge>,
    ) -> Result<FanOut, StoreError> {
        let Some(path) = self.task_path(parent_id) else {
            return Ok(FanOut::Lost);
        };
        let mut child_paths = Vec::with_capacity(children.len());
        for child in children {
            child_paths.push(self.doc_path(TASKS, &child.task_id, "a child task's id")?);
        }
        // The attempt's calls, not a request: the run counts when it finishes.
        let charge = charge.map(Charge::given_back);
        let (path, child_paths, charge) = (&path, &child_paths, &charge);
        let _turn = self.locks.lock(path).await;
        commit_if_unchanged(&self.counts, &self.db, "fan out", move || async move {
            let stored = read::<TaskDoc>(&self.counts, &self.db, self.documents(), TASKS, parent_id).await?;
            let Some(mut doc) = stored.value else {
                return Ok((FanOut::Lost, Vec::new()));
            };
            let now = SystemTime::now();
            let next = match fan_out_step(&to_task(parent_id, doc.clone()), attempt, input, children.len(), now) {
                Ok(next) => next,
                Err(answer) => return Ok((answer, Vec::new())),
            };
            let now = timestamp(now)?;
            doc.take_children(&next, now)?;
            let mut writes = vec![put(path, &doc, Some(stored.unchanged))?];
            for (child, child_path) in children.iter().zip(child_paths) {
                writes.push(put(child_path, &to_doc(child, now)?, Some(exists(false)))?);
            }
            if let Some(charge) = charge {
                writes.extend(charge_day(self.documents(), &owned::key_owner(&next.owner), charge)?);
            }
            Ok((FanOut::Waiting, writes))
        })
        .await
    }
}
