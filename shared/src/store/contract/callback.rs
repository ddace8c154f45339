//! The promises of the callback states of
//! [`TaskStore`](crate::store::TaskStore): owed in the step that finishes a
//! task, leased to one deliverer at a time, settled by the attempt that
//! holds it, failed once the attempts are spent.

use std::sync::Arc;
use std::time::Duration;

use super::ok;
use super::tasks::{get, new_task, now_ms};
use crate::store::{
    CallbackLease, CallbackOutcome, CallbackStatus, Claim, Finished, Stores, TaskRecord, TaskState, TaskStore,
};

const HOOK: &str = "https://example.com/hook";

/// A queued task with a callback, finished at once (a never-claimed task
/// finishes under attempt 0).
async fn finished_with_callback(t: &dyn TaskStore, task_id: &str) -> TaskRecord {
    let task = TaskRecord {
        callback_url: Some(HOOK.into()),
        ..new_task(task_id, TaskState::Queued)
    };
    ok(t.create(&task).await, "create");
    let finished = ok(
        t.finish(task_id, 0, &Finished::Completed(serde_json::json!({"response": "4"})))
            .await,
        "finish",
    );
    assert!(finished, "{task_id} finishes");
    get(t, task_id).await
}

fn leased(lease: CallbackLease, what: &str) -> TaskRecord {
    match lease {
        CallbackLease::Leased(task) => task,
        other => panic!("{what}: expected Leased, got {other:?}"),
    }
}

fn attempts(task: &TaskRecord) -> (CallbackStatus, u32) {
    let callback = task
        .callback
        .as_ref()
        .unwrap_or_else(|| panic!("{} has a callback state", task.task_id));
    (callback.status, callback.attempts)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub async fn finishing_a_task_owes_its_callback(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let done = finished_with_callback(t, "callback-owed").await;
    assert_eq!(attempts(&done), (CallbackStatus::Pending, 0));
    assert!(done.callback_pending());

    // Without a callback_url nothing is owed.
    ok(t.create(&new_task("callback-none", TaskState::Queued)).await, "create");
    assert!(ok(
        t.finish("callback-none", 0, &Finished::Failed("x".into())).await,
        "finish"
    ));
    assert_eq!(get(t, "callback-none").await.callback, None);
    // Nor while the task is not finished.
    let queued = TaskRecord {
        callback_url: Some(HOOK.into()),
        ..new_task("callback-queued", TaskState::Queued)
    };
    ok(t.create(&queued).await, "create");
    assert_eq!(get(t, "callback-queued").await.callback, None);
    let lease = ok(
        t.lease_callback("callback-queued", secs(30), 3, now_ms()).await,
        "lease",
    );
    assert_eq!(lease, CallbackLease::NotFinished);
    let lease = ok(
        t.lease_callback("callback-missing", secs(30), 3, now_ms()).await,
        "lease",
    );
    assert_eq!(lease, CallbackLease::NotFound);

    // A cancel owes it too, in the same step.
    ok(t.cancel("callback-queued").await, "cancel");
    assert_eq!(attempts(&get(t, "callback-queued").await), (CallbackStatus::Pending, 0));
    // And a claim out of attempts.
    let spent = TaskRecord {
        callback_url: Some(HOOK.into()),
        ..new_task("callback-exhausted", TaskState::Queued)
    };
    ok(t.create(&spent).await, "create");
    let claim = ok(t.claim("callback-exhausted", "d", secs(30), 0, now_ms()).await, "claim");
    assert!(
        matches!(claim, Claim::Exhausted(ref task) if task.callback_pending()),
        "{claim:?}"
    );

    let due = ok(t.callbacks_due(now_ms(), 1000).await, "callbacks_due");
    for id in ["callback-owed", "callback-queued", "callback-exhausted"] {
        assert!(due.iter().any(|d| d == id), "{id} is due: {due:?}");
    }
    assert!(!due.iter().any(|d| d == "callback-none"), "{due:?}");

    // Owed and never leased, it can be settled under attempt 0 (a task
    // whose submission failed calls back nothing).
    let waived = CallbackOutcome::Failed("not sent".into());
    assert!(ok(t.settle_callback("callback-owed", 0, &waived).await, "waive"));
    assert_eq!(attempts(&get(t, "callback-owed").await), (CallbackStatus::Failed, 0));
}

pub async fn concurrent_callback_leases_have_one_winner(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let done = finished_with_callback(t, "callback-race").await;
    let now = now_ms();
    let (a, b) = tokio::join!(
        t.lease_callback("callback-race", secs(30), 3, now),
        t.lease_callback("callback-race", secs(30), 3, now)
    );
    let (a, b) = (ok(a, "lease a"), ok(b, "lease b"));
    let (won, lost) = match (&a, &b) {
        (CallbackLease::Leased(_), _) => (a, b),
        _ => (b, a),
    };
    let won = leased(won, "one lease wins");
    assert_eq!(
        lost,
        CallbackLease::Held { until: now + secs(30) },
        "the other finds it held"
    );
    assert_eq!(attempts(&won), (CallbackStatus::Pending, 1));
    assert_eq!(won.updated_at, done.updated_at, "the task itself is unchanged");
    assert!(
        !ok(t.callbacks_due(now, 1000).await, "due")
            .iter()
            .any(|d| d == "callback-race"),
        "a leased callback is not due"
    );

    assert!(ok(
        t.settle_callback("callback-race", 1, &CallbackOutcome::Delivered).await,
        "settle"
    ));
    assert!(
        !ok(
            t.settle_callback("callback-race", 1, &CallbackOutcome::Delivered).await,
            "again"
        ),
        "settled once"
    );
    let delivered = get(t, "callback-race").await;
    assert_eq!(attempts(&delivered), (CallbackStatus::Delivered, 1));
    let lease = ok(
        t.lease_callback("callback-race", secs(30), 3, now + secs(60)).await,
        "lease",
    );
    assert_eq!(
        lease,
        CallbackLease::Settled(delivered),
        "a delivered callback is never leased again"
    );
    assert!(
        !ok(t.callbacks_due(now + secs(60), 1000).await, "due")
            .iter()
            .any(|d| d == "callback-race")
    );
}

pub async fn an_expired_callback_lease_is_taken_over(stores: &Stores) {
    let t = stores.tasks.as_ref();
    finished_with_callback(t, "callback-expiry").await;
    let now = now_ms();
    leased(
        ok(t.lease_callback("callback-expiry", secs(10), 5, now).await, "first"),
        "first",
    );
    // The first deliverer died; its lease passes and a second takes over.
    let due = ok(t.callbacks_due(now + secs(10), 1000).await, "due");
    assert!(due.iter().any(|d| d == "callback-expiry"), "{due:?}");
    let second = leased(
        ok(
            t.lease_callback("callback-expiry", secs(10), 5, now + secs(10)).await,
            "second",
        ),
        "second",
    );
    assert_eq!(attempts(&second), (CallbackStatus::Pending, 2));
    assert!(
        !ok(
            t.settle_callback("callback-expiry", 1, &CallbackOutcome::Delivered)
                .await,
            "stale"
        ),
        "the first attempt, taken over, records nothing"
    );
    // A failed attempt holds the next one back until its backoff ends.
    let retry = CallbackOutcome::Retry {
        error: "the receiver answered 503".into(),
        not_before: now + secs(20),
    };
    assert!(ok(t.settle_callback("callback-expiry", 2, &retry).await, "retry"));
    let waiting = get(t, "callback-expiry").await;
    assert_eq!(attempts(&waiting), (CallbackStatus::Pending, 2));
    assert_eq!(
        waiting.callback.and_then(|c| c.last_error).as_deref(),
        Some("the receiver answered 503")
    );
    let lease = ok(
        t.lease_callback("callback-expiry", secs(10), 5, now + secs(15)).await,
        "early",
    );
    assert_eq!(lease, CallbackLease::Held { until: now + secs(20) });
    let third = leased(
        ok(
            t.lease_callback("callback-expiry", secs(10), 5, now + secs(20)).await,
            "third",
        ),
        "third",
    );
    assert_eq!(attempts(&third), (CallbackStatus::Pending, 3));
}

pub async fn spent_callback_attempts_fail(stores: &Stores) {
    let t = stores.tasks.as_ref();
    finished_with_callback(t, "callback-spent").await;
    let now = now_ms();
    leased(
        ok(t.lease_callback("callback-spent", secs(10), 2, now).await, "first"),
        "first",
    );
    let retry = CallbackOutcome::Retry {
        error: "no answer".into(),
        not_before: now + secs(10),
    };
    assert!(ok(t.settle_callback("callback-spent", 1, &retry).await, "retry"));
    leased(
        ok(
            t.lease_callback("callback-spent", secs(10), 2, now + secs(10)).await,
            "last",
        ),
        "last",
    );
    // The last attempt's deliverer dies: once its lease passes the
    // callback is failed, not attempted a third time.
    let lease = ok(
        t.lease_callback("callback-spent", secs(10), 2, now + secs(20)).await,
        "spent",
    );
    let CallbackLease::Settled(failed) = lease else {
        panic!("expected Settled, got {lease:?}");
    };
    assert_eq!(attempts(&failed), (CallbackStatus::Failed, 2));
    let error = failed.callback.and_then(|c| c.last_error).unwrap_or_default();
    assert!(error.contains("2 attempt") && error.contains("no answer"), "{error}");
    assert!(
        !ok(t.callbacks_due(now + secs(60), 1000).await, "due")
            .iter()
            .any(|d| d == "callback-spent")
    );

    // A receiver that refuses for good fails it at once.
    finished_with_callback(t, "callback-refused").await;
    leased(
        ok(t.lease_callback("callback-refused", secs(10), 5, now).await, "lease"),
        "lease",
    );
    let refused = CallbackOutcome::Failed("the callback receiver answered 400".into());
    assert!(ok(t.settle_callback("callback-refused", 1, &refused).await, "settle"));
    assert_eq!(attempts(&get(t, "callback-refused").await), (CallbackStatus::Failed, 1));
}

/// Deliverers on two stores over one database (two processes, two
/// instances) race for one finished task's callback: exactly one leases it,
/// and only its attempt settles.
pub async fn callback_leases_have_one_winner(a: &Arc<dyn TaskStore>, b: &Arc<dyn TaskStore>, id: &str) {
    finished_with_callback(a.as_ref(), id).await;
    let now = now_ms();
    let leases: Vec<_> = (0..10)
        .map(|i| {
            let tasks = if i % 2 == 0 { a.clone() } else { b.clone() };
            let id = id.to_string();
            tokio::spawn(async move { tasks.lease_callback(&id, secs(60), 3, now).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, lease) in leases.into_iter().enumerate() {
        match ok(lease.await.unwrap_or_else(|e| panic!("lease task: {e}")), "lease") {
            CallbackLease::Leased(task) => winners.push(task),
            CallbackLease::Held { .. } => {}
            other => panic!("lease {i} of {id}: {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one lease of {id}'s callback wins: {winners:?}"
    );
    assert_eq!(attempts(&winners[0]), (CallbackStatus::Pending, 1));
    assert!(ok(
        b.settle_callback(id, 1, &CallbackOutcome::Delivered).await,
        "settle"
    ));
    assert_eq!(attempts(&get(a.as_ref(), id).await), (CallbackStatus::Delivered, 1));
}
