//! The promises of fan-out and fan-in (`store::fan`): children made with
//! their parent's wait in one step, each counted once as it ends, and only
//! the last one resuming the parent, whatever runs concurrently.

use std::sync::Arc;
use std::time::Duration;

use super::ok;
use super::tasks::{get, new_task, now_ms};
use crate::store::{
    Cancel, Claim, FanOut, Finish, Finished, Stores, TaskKind, TaskRecord, TaskState, TaskStatus, TaskStore,
    WAIT_FOR_CHILDREN, child_id,
};

const LEASE: Duration = Duration::from_secs(60);

fn children(parent: &str, range: std::ops::Range<usize>) -> Vec<TaskRecord> {
    range
        .map(|i| TaskRecord {
            kind: TaskKind::Subtask,
            parent: Some(parent.to_string()),
            ..new_task(&child_id(parent, i), TaskState::Queued)
        })
        .collect()
}

/// A parent claimed as attempt 1.
async fn claimed_parent(t: &dyn TaskStore, id: &str) -> TaskRecord {
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    match ok(t.claim(id, "m1", LEASE, 3, now_ms()).await, "claim") {
        Claim::Claimed(task) => task,
        other => panic!("claim {id}: {other:?}"),
    }
}

/// Claims and completes child `id`: what its worker does.
async fn run_child(t: &dyn TaskStore, id: &str, delivery: &str) -> Finish {
    let Claim::Claimed(child) = ok(t.claim(id, delivery, LEASE, 3, now_ms()).await, "claim child") else {
        panic!("child {id} is claimable");
    };
    let result = Finished::Completed(serde_json::json!({"id": id}));
    ok(
        t.finish_counted(id, child.attempts, &result, None).await,
        "finish child",
    )
}

pub async fn a_fan_out_makes_children_and_the_last_one_resumes_the_parent(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "fan-parent";
    let parent = claimed_parent(t, id).await;
    let input = serde_json::json!({"fanned": {"wave": 1}});
    let made = ok(t.fan_out(id, 1, &input, &children(id, 0..3), None).await, "fan out");
    assert_eq!(made, FanOut::Waiting);
    let waiting = get(t, id).await;
    assert_eq!(
        waiting.status(),
        TaskStatus::Running,
        "a waiting parent shows as running"
    );
    assert_eq!((waiting.children.created, waiting.children.done), (3, 0));
    assert_eq!(
        (waiting.delivery_id.as_deref(), waiting.input.as_ref()),
        (None, Some(&input))
    );
    let until = waiting.lease_until.expect("a wait");
    assert!(until >= parent.lease_until.expect("a lease") + WAIT_FOR_CHILDREN - LEASE);
    // Its claim is given up: renewing or releasing it changes nothing, and
    // a delivery of it is a duplicate.
    assert!(!ok(t.renew(id, 1, LEASE, now_ms()).await, "renew"));
    assert!(!ok(t.release(id, 1).await, "release"));
    assert!(matches!(
        ok(t.claim(id, "m2", LEASE, 3, now_ms()).await, "claim"),
        Claim::Held {
            same_delivery: false,
            ..
        }
    ));
    // A second fan-out by the same attempt is refused: it waits.
    assert_eq!(
        ok(t.fan_out(id, 1, &input, &children(id, 3..4), None).await, "again"),
        FanOut::Lost
    );
    for child in children(id, 0..3) {
        let got = get(t, &child.task_id).await;
        assert_eq!(
            (got.parent.as_deref(), got.kind, got.status()),
            (Some(id), TaskKind::Subtask, TaskStatus::Queued)
        );
    }

    assert_eq!(
        run_child(t, &child_id(id, 0), "c0").await,
        Finish::Recorded { parent_ready: false }
    );
    assert_eq!(
        run_child(t, &child_id(id, 2), "c2").await,
        Finish::Recorded { parent_ready: false }
    );
    assert_eq!(
        run_child(t, &child_id(id, 1), "c1").await,
        Finish::Recorded { parent_ready: true },
        "the last"
    );
    // Finishing a child again counts nothing.
    let again = Finished::Completed(serde_json::json!({}));
    assert_eq!(
        ok(t.finish_counted(&child_id(id, 1), 1, &again, None).await, "again"),
        Finish::NotHeld
    );
    let ready = get(t, id).await;
    assert_eq!((ready.children.done, ready.children.resumes), (3, 1));
    // Claimable at once; the resume is not an attempt (max 2 here).
    let Claim::Claimed(resumed) = ok(t.claim(id, "m3", LEASE, 1, now_ms()).await, "resume") else {
        panic!("the ready parent is claimed");
    };
    assert_eq!(resumed.attempts, 2);
    // Nothing new and every child ended: the caller keeps its claim.
    assert_eq!(
        ok(t.fan_out(id, 2, &input, &[], None).await, "nothing"),
        FanOut::AllDone
    );
    assert!(ok(t.renew(id, 2, LEASE, now_ms()).await, "still held"));
    let answer = Finished::Completed(serde_json::json!({"response": "all"}));
    assert!(ok(t.finish_charged(id, 2, &answer, None).await, "the parent ends"));
}

pub async fn a_child_out_of_attempts_or_cancelled_is_counted_too(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "fan-ends";
    claimed_parent(t, id).await;
    ok(
        t.fan_out(id, 1, &serde_json::json!({}), &children(id, 0..2), None)
            .await,
        "fan out",
    );
    // Child 0 runs out of attempts: its claims never end (max 1 here).
    let c0 = child_id(id, 0);
    assert!(matches!(
        ok(t.claim(&c0, "a", Duration::ZERO, 1, now_ms()).await, "claim"),
        Claim::Claimed(_)
    ));
    assert!(matches!(
        ok(t.claim(&c0, "b", LEASE, 1, now_ms()).await, "claim"),
        Claim::Exhausted(_)
    ));
    assert_eq!(get(t, id).await.children.done, 1, "counted as it failed");
    // The parent is cancelled, then its children: nothing resumes it.
    assert!(matches!(ok(t.cancel(id).await, "cancel"), Cancel::Cancelled(_)));
    assert!(matches!(
        ok(t.cancel(&child_id(id, 1)).await, "cancel child"),
        Cancel::Cancelled(_)
    ));
    let parent = get(t, id).await;
    assert_eq!((parent.status(), parent.children.done), (TaskStatus::Cancelled, 1));
    assert!(matches!(
        ok(t.claim(id, "m2", LEASE, 3, now_ms()).await, "claim"),
        Claim::Finished(_)
    ));
}

/// Children finishing at once on `a` and `b` (one store twice, or two
/// stores on one database as two workers would be): each is counted once
/// and exactly one is told it was the last.
pub async fn concurrent_children_resume_their_parent_once(a: &Arc<dyn TaskStore>, b: &Arc<dyn TaskStore>, id: &str) {
    const N: usize = 8;
    claimed_parent(a.as_ref(), id).await;
    ok(
        a.fan_out(id, 1, &serde_json::json!({}), &children(id, 0..N), None)
            .await,
        "fan out",
    );
    let finishing: Vec<_> = (0..N)
        .map(|i| {
            let tasks = if i % 2 == 0 { a.clone() } else { b.clone() };
            let child = child_id(id, i);
            tokio::spawn(async move { run_child(tasks.as_ref(), &child, &format!("d{i}")).await })
        })
        .collect();
    let mut last = 0;
    for f in finishing {
        match f.await.unwrap_or_else(|e| panic!("a child: {e}")) {
            Finish::Recorded { parent_ready: true } => last += 1,
            Finish::Recorded { parent_ready: false } => {}
            Finish::NotHeld => panic!("every child holds its own claim"),
        }
    }
    assert_eq!(last, 1, "exactly one child resumes {id}");
    let parent = get(b.as_ref(), id).await;
    assert_eq!(
        (parent.children.created, parent.children.done, parent.children.resumes),
        (N as u32, N as u32, 1)
    );
}

pub async fn concurrent_children_are_counted_once(stores: &Stores) {
    concurrent_children_resume_their_parent_once(&stores.tasks, &stores.tasks, "fan-race").await;
}
