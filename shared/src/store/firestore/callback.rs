//! The callback states of [`TaskStore`](crate::store::TaskStore) on
//! Firestore: fields of the task document, changed like a claim
//! ([`FirestoreStore::change_task`]): read, decide with [`callback_step`]
//! as SQLite does, and commit only if the task is still as read, so of
//! concurrent deliverers one leases and a settle whose attempt was taken
//! over changes nothing. `callbacks_due` is in `sweep`.

use std::time::{Duration, SystemTime};

use firestore::errors::FirestoreError;

use super::task_doc::{TaskDoc, to_task, to_u32};
use super::{FirestoreStore, timestamp};
use crate::store::{
    CallbackLease, CallbackOutcome, CallbackState, CallbackStatus, CallbackStep, StoreError, callback_step, lease_end,
    settled, settles, unsettled_error,
};

impl TaskDoc {
    /// The callback state as stored, `None` when it owes nothing.
    pub(super) fn callback(&self) -> Option<CallbackState> {
        let status = CallbackStatus::parse(self.callback_status.as_deref()?)?;
        Some(CallbackState {
            status,
            attempts: to_u32(self.callback_attempts),
            lease_until: self.callback_lease_until.map(SystemTime::from),
            last_error: self.callback_error.clone(),
        })
    }

    /// Stores `state` as the callback's.
    pub(super) fn set_callback(&mut self, state: Option<&CallbackState>) -> Result<(), FirestoreError> {
        self.callback_status = state.map(|c| c.status.as_str().to_string());
        self.callback_attempts = state.map_or(0, |c| i64::from(c.attempts));
        self.callback_lease_until = state.and_then(|c| c.lease_until).map(timestamp).transpose()?;
        self.callback_error = state.and_then(|c| c.last_error.clone());
        Ok(())
    }
}

impl FirestoreStore {
    pub(super) async fn lease_callback_now(
        &self,
        task_id: &str,
        lease: Duration,
        max_attempts: u32,
        now: SystemTime,
    ) -> Result<CallbackLease, StoreError> {
        let lease_until = lease_end(now, lease)?;
        self.change_task(task_id, "lease_callback", |stored| {
            let Some(mut doc) = stored else {
                return Ok((CallbackLease::NotFound, None));
            };
            let task = to_task(task_id, doc.clone());
            let callback = task.callback.clone().unwrap_or_else(CallbackState::pending);
            Ok(match callback_step(&task, max_attempts, now) {
                CallbackStep::NotFinished => (CallbackLease::NotFinished, None),
                CallbackStep::Settled => (CallbackLease::Settled(task), None),
                CallbackStep::Held(until) => (CallbackLease::Held { until }, None),
                CallbackStep::Lease => {
                    doc.set_callback(Some(&CallbackState {
                        attempts: callback.attempts + 1,
                        lease_until: Some(lease_until),
                        ..callback
                    }))?;
                    (CallbackLease::Leased(to_task(task_id, doc.clone())), Some(doc))
                }
                CallbackStep::Exhaust => {
                    let error = unsettled_error(callback.attempts, callback.last_error.as_deref());
                    doc.set_callback(Some(&CallbackState {
                        status: CallbackStatus::Failed,
                        lease_until: None,
                        last_error: Some(error),
                        ..callback
                    }))?;
                    (CallbackLease::Settled(to_task(task_id, doc.clone())), Some(doc))
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
        self.change_task(task_id, "settle_callback", |stored| {
            let Some(mut doc) = stored else {
                return Ok((false, None));
            };
            let Some(callback) = doc.callback().filter(|c| settles(Some(c), attempt)) else {
                return Ok((false, None));
            };
            doc.set_callback(Some(&settled(&callback, outcome)))?;
            Ok((true, Some(doc)))
        })
        .await
    }
}
