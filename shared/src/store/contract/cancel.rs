//! The promises of [`TaskStore::cancel`](crate::store::TaskStore::cancel):
//! a cancelled task is never claimed again, and the claim that was running
//! it can write nothing more.

use std::time::Duration;

use super::ok;
use super::tasks::{get, new_task, now_ms};
use crate::store::{Cancel, Claim, Finished, Stores, TaskRecord, TaskState, TaskStatus};

const LEASE: Duration = Duration::from_secs(60);

fn cancelled(cancel: Cancel, what: &str) -> TaskRecord {
    match cancel {
        Cancel::Cancelled(task) => task,
        other => panic!("{what}: expected Cancelled, got {other:?}"),
    }
}

pub async fn queued_tasks_are_cancelled_and_never_claimed(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "cancel-queued";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    let done = cancelled(ok(t.cancel(id).await, "cancel"), "a queued task");
    assert_eq!(
        (&done.state, done.status(), done.attempts, done.lease_until),
        (
            &TaskState::Finished(Finished::Cancelled),
            TaskStatus::Cancelled,
            0,
            None
        )
    );
    assert!(done.finished_at.is_some(), "{done:?}");
    assert_eq!(done.started_at, None, "it never started");
    assert_eq!(get(t, id).await, done, "the answer is the record as stored");

    assert_eq!(
        ok(t.cancel(id).await, "cancel again"),
        Cancel::AlreadyCancelled(done.clone()),
        "cancelling again changes nothing and says so"
    );
    assert!(matches!(
        ok(t.claim(id, "d1", LEASE, 3, now_ms()).await, "claim"),
        Claim::Finished(task) if task == done
    ));
    assert!(
        !ok(t.runnable(now_ms() + LEASE, 10_000).await, "runnable")
            .iter()
            .any(|r| r == id),
        "a cancelled task is not runnable"
    );
    assert!(
        !ok(t.finish(id, 0, &Finished::Failed("x".into())).await, "finish"),
        "an outcome does not overwrite the cancel"
    );
    assert_eq!(get(t, id).await, done);
}

pub async fn a_cancel_fences_out_every_claim_of_a_running_task(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "cancel-running";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    let base = now_ms();
    let first = ok(t.claim(id, "d1", LEASE, 5, base).await, "claim");
    assert!(matches!(first, Claim::Claimed(_)), "{first:?}");
    // The first claim's lease passes and a second delivery takes over.
    let later = base + LEASE + Duration::from_secs(1);
    let second = ok(t.claim(id, "d2", LEASE, 5, later).await, "claim again");
    assert!(
        matches!(&second, Claim::Claimed(task) if task.attempts == 2),
        "{second:?}"
    );

    let done = cancelled(ok(t.cancel(id).await, "cancel"), "a running task");
    assert_eq!(
        (
            done.status(),
            done.attempts,
            done.lease_until,
            done.delivery_id.as_deref()
        ),
        (TaskStatus::Cancelled, 2, None, Some("d2")),
        "attempts and the last delivery are kept"
    );
    assert!(done.started_at.is_some() && done.finished_at.is_some(), "{done:?}");
    for attempt in [1, 2] {
        assert!(
            !ok(t.renew(id, attempt, LEASE, later).await, "renew"),
            "attempt {attempt} renews nothing"
        );
        assert!(
            !ok(t.release(id, attempt).await, "release"),
            "attempt {attempt} releases nothing"
        );
        let outcome = Finished::Completed(serde_json::json!({"response": "4"}));
        assert!(
            !ok(t.finish(id, attempt, &outcome).await, "finish"),
            "attempt {attempt} finishes nothing"
        );
    }
    let far = later + LEASE * 10;
    assert!(matches!(
        ok(t.claim(id, "d3", LEASE, 5, far).await, "claim after"),
        Claim::Finished(_)
    ));
    assert_eq!(get(t, id).await, done, "nothing written since the cancel");
    assert_eq!(ok(t.cancel(id).await, "cancel again"), Cancel::AlreadyCancelled(done));
}

pub async fn finished_and_synchronous_tasks_are_not_cancelled(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let (completed, failed, sync) = ("cancel-completed", "cancel-failed", "cancel-sync");
    for id in [completed, failed] {
        ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    }
    let answer = Finished::Completed(serde_json::json!({"response": "4"}));
    assert!(ok(t.finish(completed, 0, &answer).await, "finish"));
    assert!(ok(
        t.finish(failed, 0, &Finished::Failed("no model".into())).await,
        "finish"
    ));
    let mut running = new_task(sync, TaskState::Running);
    running.attempts = 1;
    ok(t.create(&running).await, "create");

    for id in [completed, failed] {
        let before = get(t, id).await;
        assert_eq!(
            ok(t.cancel(id).await, "cancel"),
            Cancel::Finished(before.clone()),
            "{id}"
        );
        assert_eq!(get(t, id).await, before, "{id} is left as it was");
    }
    let before = get(t, sync).await;
    assert_eq!(ok(t.cancel(sync).await, "cancel"), Cancel::Synchronous(before.clone()));
    assert_eq!(get(t, sync).await, before, "a synchronous run is left to its request");
    for id in ["cancel-nope", "a/b", ".."] {
        assert_eq!(ok(t.cancel(id).await, "cancel"), Cancel::NotFound, "{id}");
    }
}

pub async fn concurrent_cancels_have_one_winner(stores: &Stores) {
    let t = stores.tasks.clone();
    let id = "cancel-concurrent";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    let cancels = (0..8).map(|_| {
        let t = t.clone();
        async move { ok(t.cancel(id).await, "cancel") }
    });
    let answers = futures_util::future::join_all(cancels).await;
    let winners = answers.iter().filter(|a| matches!(a, Cancel::Cancelled(_))).count();
    let already = answers
        .iter()
        .filter(|a| matches!(a, Cancel::AlreadyCancelled(_)))
        .count();
    assert_eq!((winners, already), (1, 7), "{answers:?}");
}
