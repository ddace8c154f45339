//! The callback a finished task owes, kept on the task so that it survives
//! the process that should have sent it.
//!
//! The step that finishes a task (its outcome, a cancel, a claim out of
//! attempts) records `pending` in the same write when the task has a
//! `callback_url`: a worker that dies right after it leaves the callback
//! owed, and a later delivery of the task (a Pub/Sub redelivery, the local
//! sweep) finds it and sends it. Each POST is one *callback attempt* under a
//! short lease ([`TaskStore::lease_callback`](super::TaskStore::lease_callback)),
//! numbered by `attempts`, the fencing token of its outcome
//! ([`TaskStore::settle_callback`](super::TaskStore::settle_callback)): of
//! concurrent deliverers one holds the lease and the others do nothing, so
//! one callback is *recorded* delivered per task. A deliverer that dies
//! after the receiver got the POST but before it recorded `delivered` lets
//! the lease pass and the POST is sent again: receivers dedupe on
//! `X-Task-Id` (see [`crate::webhook`]).
//!
//! A task finished before callback states were kept has none, and reads as
//! owing nothing: old tasks never send again.

use std::time::SystemTime;

use serde::Serialize;

use super::{TaskRecord, TaskState, lease_passed};

/// Where a task's callback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallbackStatus {
    /// Owed: not delivered yet, attempts left.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: the receiver refused it for good, or `WEBHOOK_ATTEMPTS`
    /// attempts failed.
    Failed,
}

impl CallbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Pending => "pending",
            CallbackStatus::Delivered => "delivered",
            CallbackStatus::Failed => "failed",
        }
    }

    /// `None` for anything else: a damaged value owes nothing, as an
    /// absent one.
    pub(crate) fn parse(s: &str) -> Option<CallbackStatus> {
        match s {
            "pending" => Some(CallbackStatus::Pending),
            "delivered" => Some(CallbackStatus::Delivered),
            "failed" => Some(CallbackStatus::Failed),
            _ => None,
        }
    }
}

/// The callback of a finished task that has a `callback_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackState {
    pub status: CallbackStatus,
    /// Callback attempts leased so far; the fencing token of the latest.
    pub attempts: u32,
    /// While `pending`: no other attempt starts before then (the current
    /// attempt's lease, or the backoff after a failed one).
    pub lease_until: Option<SystemTime>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl CallbackState {
    /// Owed, never attempted: what finishing a task with a `callback_url`
    /// records.
    pub fn pending() -> CallbackState {
        CallbackState {
            status: CallbackStatus::Pending,
            attempts: 0,
            lease_until: None,
            last_error: None,
        }
    }
}

impl TaskRecord {
    /// Whether the task is finished with its callback still owed.
    pub fn callback_pending(&self) -> bool {
        self.callback
            .as_ref()
            .is_some_and(|c| c.status == CallbackStatus::Pending)
    }
}

/// What [`TaskStore::lease_callback`](super::TaskStore::lease_callback)
/// found, decided in one atomic step.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackLease {
    /// The caller holds callback attempt `callback.attempts` until
    /// `callback.lease_until` (the record as stored): it POSTs once and
    /// settles that attempt.
    Leased(TaskRecord),
    /// Another attempt holds it, or the backoff after a failed one runs,
    /// until then.
    Held {
        until: SystemTime,
    },
    /// Nothing is owed any more: delivered, failed (now, when the attempt
    /// that spent the last one never settled), or no callback at all.
    Settled(TaskRecord),
    /// Not finished: its callback is not due.
    NotFinished,
    NotFound,
}

/// How one callback attempt ended, for
/// [`TaskStore::settle_callback`](super::TaskStore::settle_callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    Delivered,
    /// Failed, worth another attempt, not before `not_before`.
    Retry {
        error: String,
        not_before: SystemTime,
    },
    /// Failed for good.
    Failed(String),
}

/// What leasing does to a task's callback; both backends decide with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallbackStep {
    /// It becomes attempt `attempts + 1`, leased.
    Lease,
    /// Pending, free, but every attempt is spent (the last one never
    /// settled): it becomes `failed`.
    Exhaust,
    Held(SystemTime),
    Settled,
    NotFinished,
}

pub(crate) fn callback_step(task: &TaskRecord, max_attempts: u32, now: SystemTime) -> CallbackStep {
    if !matches!(task.state, TaskState::Finished(_)) {
        return CallbackStep::NotFinished;
    }
    let Some(callback) = task.callback.as_ref().filter(|c| c.status == CallbackStatus::Pending) else {
        return CallbackStep::Settled;
    };
    match callback.lease_until {
        Some(until) if !lease_passed(until, now) => CallbackStep::Held(until),
        _ if callback.attempts >= max_attempts => CallbackStep::Exhaust,
        _ => CallbackStep::Lease,
    }
}

/// The `last_error` of a callback whose last attempt never settled.
pub(crate) fn unsettled_error(attempts: u32, last_error: Option<&str>) -> String {
    match last_error {
        Some(last) => {
            format!("gave up after {attempts} attempt(s); the last one did not report back; before it: {last}")
        }
        None => format!("gave up after {attempts} attempt(s); the last one did not report back"),
    }
}

/// Whether a settle of `attempt` applies: the callback is pending under it.
pub(crate) fn settles(callback: Option<&CallbackState>, attempt: u32) -> bool {
    callback.is_some_and(|c| c.status == CallbackStatus::Pending && c.attempts == attempt)
}

/// The state after `outcome`, from a pending state that `settles`.
pub(crate) fn settled(callback: &CallbackState, outcome: &CallbackOutcome) -> CallbackState {
    match outcome {
        CallbackOutcome::Delivered => CallbackState {
            status: CallbackStatus::Delivered,
            lease_until: None,
            ..callback.clone()
        },
        CallbackOutcome::Retry { error, not_before } => CallbackState {
            status: CallbackStatus::Pending,
            lease_until: Some(*not_before),
            last_error: Some(error.clone()),
            ..callback.clone()
        },
        CallbackOutcome::Failed(error) => CallbackState {
            status: CallbackStatus::Failed,
            lease_until: None,
            last_error: Some(error.clone()),
            ..callback.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Finished;

    #[test]
    fn only_a_finished_task_with_a_free_pending_callback_is_leased() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let task = |state, callback| TaskRecord {
            state,
            callback,
            ..TaskRecord::queued("t", "anonymous", "2+2", "s", 5)
        };
        let done = || TaskState::Finished(Finished::Cancelled);
        let pending = |attempts, lease_until| {
            Some(CallbackState {
                attempts,
                lease_until,
                ..CallbackState::pending()
            })
        };
        let later = now + Duration::from_secs(1);
        let cases = [
            (task(TaskState::Running, pending(0, None)), CallbackStep::NotFinished),
            (task(done(), None), CallbackStep::Settled),
            (task(done(), pending(0, None)), CallbackStep::Lease),
            (task(done(), pending(2, Some(now))), CallbackStep::Lease),
            (task(done(), pending(2, Some(later))), CallbackStep::Held(later)),
            (task(done(), pending(3, Some(now))), CallbackStep::Exhaust),
            (
                task(
                    done(),
                    Some(CallbackState {
                        status: CallbackStatus::Delivered,
                        ..CallbackState::pending()
                    }),
                ),
                CallbackStep::Settled,
            ),
        ];
        for (task, step) in cases {
            assert_eq!(callback_step(&task, 3, now), step, "{task:?}");
        }
        assert_eq!(CallbackStatus::parse("nonsense"), None);
    }
}
