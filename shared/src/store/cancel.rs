//! Cancelling a task: one atomic decision in the store, as a claim is.
//!
//! A cancelled task is *finished* (`cancelled`), so nothing else is needed
//! to stop it: a queue's delivery of it finds it finished ([`claim_step`]
//! answers `Finished`) and is acknowledged without running, and the claim
//! that was running it no longer holds it, so its fenced writes (renew,
//! release, finish) change nothing. The run itself notices at its next
//! check, before its next model or tool call (`crate::worker`).
//!
//! [`claim_step`]: super::claim_step

use super::{Finished, TaskRecord, TaskState};

/// What [`TaskStore::cancel`](super::TaskStore::cancel) found, decided in
/// one atomic step.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// It was `queued`, or `running` under a claim, and is `cancelled` now
    /// (the record as stored). Of concurrent cancels only one sees this, so
    /// its caller is the one that sends the task's callback.
    Cancelled(TaskRecord),
    /// It was cancelled already: nothing changed.
    AlreadyCancelled(TaskRecord),
    /// It is `completed` or `failed`: nothing changed.
    Finished(TaskRecord),
    /// A synchronous run (`running` with no lease), which ends with its
    /// request: nothing changed.
    Synchronous(TaskRecord),
    /// There is no such task.
    NotFound,
}

/// What a cancel does to a task as stored; both backends decide with it,
/// inside their atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelStep {
    /// It becomes `cancelled`.
    Cancel,
    AlreadyCancelled,
    Finished,
    Synchronous,
}

pub(crate) fn cancel_step(task: &TaskRecord) -> CancelStep {
    match (&task.state, task.lease_until) {
        (TaskState::Finished(Finished::Cancelled), _) => CancelStep::AlreadyCancelled,
        (TaskState::Finished(_), _) => CancelStep::Finished,
        // Only a synchronous run is running with no lease.
        (TaskState::Running, None) => CancelStep::Synchronous,
        (TaskState::Queued, _) | (TaskState::Running, Some(_)) => CancelStep::Cancel,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn queued_and_claimed_tasks_are_cancelled_and_the_rest_left_alone() {
        let task = |state, lease_until| TaskRecord {
            state,
            lease_until,
            ..TaskRecord::queued("t", "anonymous", "2+2", "s", 5)
        };
        let lease = Some(SystemTime::now());
        let cases = [
            (task(TaskState::Queued, None), CancelStep::Cancel),
            (task(TaskState::Running, lease), CancelStep::Cancel),
            (task(TaskState::Running, None), CancelStep::Synchronous),
            (
                task(TaskState::Finished(Finished::Cancelled), None),
                CancelStep::AlreadyCancelled,
            ),
            (
                task(TaskState::Finished(Finished::Completed(serde_json::json!({}))), None),
                CancelStep::Finished,
            ),
            (
                task(TaskState::Finished(Finished::Failed("boom".into())), None),
                CancelStep::Finished,
            ),
        ];
        for (task, step) in cases {
            assert_eq!(cancel_step(&task), step, "{task:?}");
        }
    }
}
