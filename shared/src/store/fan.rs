//! Fan-out and fan-in: a task that runs parts of itself as child tasks,
//! on whichever workers the queue hands them to, and is resumed once the
//! last of them has ended.
//!
//! The parent counts its children in its own record: `created` (children
//! made so far) and `done` (children that have ended). Both only grow, and
//! both change only in atomic steps that also change what they count: a
//! fan-out creates its children and adds them to `created` in one step
//! ([`TaskStore::fan_out`](super::TaskStore::fan_out)); every step that
//! ends a child (its outcome, running out of attempts, a cancel) adds it
//! to its parent's `done` in the same step ([`count_child`]). So whatever
//! the queue repeats, each child is counted once, and exactly one step sees
//! `done` reach `created`: the one that resumes the parent.
//!
//! While it waits the parent is `running` with no holder (no delivery id)
//! and a long lease, [`WAIT_FOR_CHILDREN`]: a delivery of it is a
//! duplicate, a cancel cancels it, and should its children never end
//! (their messages lost) the lease passes and a redelivery claims it to
//! look. The step that counts its last child makes it claimable at once
//! (its lease ends now) and gives the claim to come back as a resume,
//! not an attempt (`resumes`): a run of many waves is not out of attempts
//! for having waited.

use std::time::{Duration, SystemTime};

use super::{TaskRecord, TaskState};

/// How long a parent waits for its children before a redelivery may claim
/// it to look at them: far longer than a child runs, since the last child
/// resumes it at once; only lost children make it wait this long.
pub const WAIT_FOR_CHILDREN: Duration = Duration::from_secs(15 * 60);

/// What a parent knows of its children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Children {
    /// Children made so far (every wave's).
    pub created: u32,
    /// Children that have ended: completed, failed or cancelled.
    pub done: u32,
    /// Claims that resumed it after its children ended, which do not count
    /// against its attempts.
    pub resumes: u32,
}

/// The id of the child a parent makes for the part at `index` (its place
/// in the parent's plan): the same on every attempt, so a child is made
/// once, and a parent finds its children without a query.
pub fn child_id(parent: &str, index: usize) -> String {
    format!("{parent}-{index}")
}

/// What [`TaskStore::fan_out`](super::TaskStore::fan_out) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// The children were made and the parent waits for them; its claim is
    /// given up.
    Waiting,
    /// No child was asked for and every child has ended: nothing was
    /// written, and the caller still holds the parent.
    AllDone,
    /// The caller's claim no longer holds the parent: nothing was written.
    Lost,
}

/// What [`TaskStore::finish_counted`](super::TaskStore::finish_counted) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The claim no longer held the task: nothing was written.
    NotHeld,
    /// The outcome is recorded; `parent_ready` when the task was the last
    /// of its parent's children to end, so the caller must queue the
    /// parent (it alone is told).
    Recorded { parent_ready: bool },
}

impl Finish {
    pub fn recorded(self) -> bool {
        matches!(self, Finish::Recorded { .. })
    }
}

/// Counts a child that has just ended in its `parent`, inside the step
/// that ends it; true when it was the last one, and the waiting parent is
/// now claimable. A parent that has ended (cancelled) is left alone.
pub(crate) fn count_child(parent: &mut TaskRecord, now: SystemTime) -> bool {
    if parent.state != TaskState::Running {
        return false;
    }
    parent.children.done = parent.children.done.saturating_add(1);
    if parent.children.done < parent.children.created || !waiting(parent) {
        return false;
    }
    parent.lease_until = Some(super::whole_millis(now));
    parent.children.resumes = parent.children.resumes.saturating_add(1);
    true
}

/// A parent between waves: `running`, held by no delivery.
pub(crate) fn waiting(task: &TaskRecord) -> bool {
    task.state == TaskState::Running && task.delivery_id.is_none() && task.lease_until.is_some()
}

/// The decision of a fan-out on the parent as stored, made by both
/// backends inside their atomic step: the parent after it, or what to
/// answer without writing.
pub(crate) fn fan_out_step(
    parent: &TaskRecord,
    attempt: u32,
    input: &serde_json::Value,
    children: usize,
    now: SystemTime,
) -> Result<TaskRecord, FanOut> {
    if parent.state != TaskState::Running || parent.attempts != attempt || parent.delivery_id.is_none() {
        return Err(FanOut::Lost);
    }
    if children == 0 && parent.children.done >= parent.children.created {
        return Err(FanOut::AllDone);
    }
    let mut next = parent.clone();
    next.input = Some(input.clone());
    next.children.created = next.children.created.saturating_add(children as u32);
    next.delivery_id = None;
    next.lease_until = Some(super::whole_millis(now + WAIT_FOR_CHILDREN));
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(created: u32, done: u32) -> TaskRecord {
        TaskRecord {
            state: TaskState::Running,
            attempts: 1,
            lease_until: Some(SystemTime::now() + WAIT_FOR_CHILDREN),
            children: Children {
                created,
                done,
                resumes: 0,
            },
            ..TaskRecord::queued("p", "anonymous", "t", "s", 5)
        }
    }

    #[test]
    fn only_the_last_child_resumes_a_waiting_parent() {
        let now = SystemTime::now();
        let mut p = parent(3, 0);
        assert!(!count_child(&mut p, now));
        assert!(!count_child(&mut p, now));
        assert!(count_child(&mut p, now), "the third of three");
        assert_eq!(
            p.children,
            Children {
                created: 3,
                done: 3,
                resumes: 1
            }
        );
        assert_eq!(p.lease_until, Some(crate::store::whole_millis(now)));
    }

    #[test]
    fn a_held_or_ended_parent_is_not_resumed_by_a_child() {
        let now = SystemTime::now();
        let mut held = parent(1, 0);
        held.delivery_id = Some("m".into());
        assert!(!count_child(&mut held, now), "its holder sees the child when it looks");
        assert_eq!(held.children.done, 1);
        let mut cancelled = parent(1, 0);
        cancelled.state = TaskState::Finished(super::super::Finished::Cancelled);
        assert!(!count_child(&mut cancelled, now));
        assert_eq!(cancelled.children.done, 0);
    }

    #[test]
    fn a_fan_out_needs_the_claim_and_something_to_wait_for() {
        let now = SystemTime::now();
        let input = serde_json::json!({});
        let mut held = parent(2, 2);
        held.delivery_id = Some("m".into());
        assert_eq!(
            fan_out_step(&held, 2, &input, 1, now),
            Err(FanOut::Lost),
            "another attempt"
        );
        assert_eq!(fan_out_step(&held, 1, &input, 0, now), Err(FanOut::AllDone));
        let next = fan_out_step(&held, 1, &input, 3, now).expect("fans out");
        assert_eq!((next.children.created, next.delivery_id.clone()), (5, None));
        assert!(waiting(&next));
        assert_eq!(
            fan_out_step(&next, 1, &input, 1, now),
            Err(FanOut::Lost),
            "it waits now"
        );
    }
}
