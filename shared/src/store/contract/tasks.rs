//! The promises of [`TaskStore`](crate::store::TaskStore).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::ok;
use crate::store::{
    Claim, Finished, Stores, TaskEvent, TaskKind, TaskRecord, TaskState, TaskStatus, TaskStore, held_for_good,
    whole_millis,
};

/// A task as a caller would create it; the times are the store's to set.
pub(super) fn new_task(task_id: &str, state: TaskState) -> TaskRecord {
    TaskRecord {
        state,
        ..TaskRecord::queued(task_id, "key:contract", "Calcula 2+2", format!("{task_id}-session"), 10)
    }
}

/// Now, to the millisecond: the precision of stored leases.
pub(super) fn now_ms() -> SystemTime {
    whole_millis(SystemTime::now())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) async fn get(t: &dyn TaskStore, task_id: &str) -> TaskRecord {
    ok(t.get(task_id).await, "get").unwrap_or_else(|| panic!("task {task_id} exists"))
}

fn claimed(claim: Claim, what: &str) -> TaskRecord {
    match claim {
        Claim::Claimed(task) => task,
        other => panic!("{what}: expected Claimed, got {other:?}"),
    }
}

pub async fn tasks_are_created_once_as_given(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let mut task = new_task("tasks-create", TaskState::Queued);
    task.system_instruction = Some("Answer in Spanish".into());
    task.callback_url = Some("https://example.com/hook?x=1".into());
    ok(t.create(&task).await, "create");
    assert!(t.create(&task).await.is_err(), "an id is created once");
    let got = get(t, "tasks-create").await;
    assert_eq!((got.status(), got.attempts, got.max_steps), (TaskStatus::Queued, 0, 10));
    assert_eq!(
        (got.task.as_str(), got.session_id.as_str()),
        ("Calcula 2+2", "tasks-create-session")
    );
    assert_eq!(got.system_instruction.as_deref(), Some("Answer in Spanish"));
    assert_eq!(got.callback_url.as_deref(), Some("https://example.com/hook?x=1"));
    assert_eq!(got.owner, "key:contract", "the task keeps who submitted it");
    assert!(
        got.created_at.ends_with('Z') && got.updated_at == got.created_at,
        "{got:?}"
    );
    assert_eq!(
        (got.delivery_id, got.lease_until, got.state.finished()),
        (None, None, None)
    );
    assert_eq!(
        (got.started_at, got.finished_at),
        (None, None),
        "a queued task has not started"
    );
    assert_eq!(ok(t.get("tasks-nope").await, "get"), None);
    assert_eq!(
        (got.kind, got.model, got.input),
        (TaskKind::Agent, None, None),
        "an agent run routed by the rules"
    );

    // A queued agent run that names its model, and a chat batch with its
    // request: what the worker runs them with is kept as given.
    // (and one that skips the response cache).
    assert!(got.cache, "an agent run may use the response cache unless it said not");
    let mut strong = new_task("tasks-create-model", TaskState::Queued);
    strong.model = Some("strong".into());
    strong.cache = false;
    ok(t.create(&strong).await, "create");
    let got = get(t, "tasks-create-model").await;
    assert_eq!(
        (got.kind, got.model.as_deref(), got.cache),
        (TaskKind::Agent, Some("strong"), false)
    );
    let batch = serde_json::json!({"requests": [{"message": "hola", "session_id": "s1"}], "concurrency": 2});
    let mut chat = new_task("tasks-create-batch", TaskState::Queued);
    chat.kind = TaskKind::ChatBatch;
    chat.session_id = String::new();
    chat.input = Some(batch.clone());
    ok(t.create(&chat).await, "create");
    let got = get(t, "tasks-create-batch").await;
    assert_eq!(
        (got.kind, got.input.as_ref(), got.session_id.as_str()),
        (TaskKind::ChatBatch, Some(&batch), "")
    );
}

pub async fn claims_take_turns_under_leases(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "tasks-claim";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    let (base, lease) = (now_ms(), secs(60));

    let first = claimed(ok(t.claim(id, "d1", lease, 5, base).await, "claim"), "a queued task");
    assert_eq!((first.status(), first.attempts), (TaskStatus::Running, 1));
    assert_eq!(first.delivery_id.as_deref(), Some("d1"));
    assert_eq!(first.owner, "key:contract", "a claim keeps the owner");
    assert_eq!(first.lease_until, Some(base + lease));
    let started = first.started_at.clone().expect("started_at is set by the first claim");
    assert_eq!(first.finished_at, None);
    assert_eq!(get(t, id).await, first, "Claimed carries the record as stored");

    let later = base + secs(1);
    assert_eq!(
        ok(t.claim(id, "d2", lease, 5, later).await, "claim"),
        Claim::Held {
            same_delivery: false,
            lease_until: base + lease
        },
        "another delivery while the lease holds"
    );
    assert_eq!(
        ok(t.claim(id, "d1", lease, 5, later).await, "claim"),
        Claim::Held {
            same_delivery: true,
            lease_until: base + lease
        },
        "the same delivery again while the lease holds"
    );
    assert_eq!(get(t, id).await, first, "a held claim changes nothing");

    let expired = base + lease + secs(1);
    let second = claimed(
        ok(t.claim(id, "d2", lease, 5, expired).await, "claim"),
        "after the lease",
    );
    assert_eq!((second.status(), second.attempts), (TaskStatus::Running, 2));
    assert_eq!(second.delivery_id.as_deref(), Some("d2"));
    assert_eq!(second.lease_until, Some(expired + lease));
    assert_eq!(
        second.started_at.as_deref(),
        Some(started.as_str()),
        "started_at is kept"
    );

    assert!(
        !ok(t.renew(id, 1, lease, expired + secs(2)).await, "renew"),
        "the old attempt cannot renew"
    );
    assert_eq!(get(t, id).await.lease_until, Some(expired + lease));
    let renewed_at = expired + secs(30);
    assert!(
        ok(t.renew(id, 2, lease, renewed_at).await, "renew"),
        "the current attempt renews"
    );
    assert_eq!(
        get(t, id).await.lease_until,
        Some(renewed_at + lease),
        "the lease moved"
    );
    assert_eq!(
        ok(t.claim(id, "d3", lease, 5, expired + lease).await, "claim"),
        Claim::Held {
            same_delivery: false,
            lease_until: renewed_at + lease
        },
        "the renewed lease holds past the old one"
    );

    assert!(!ok(t.release(id, 1).await, "release"), "the old attempt cannot release");
    assert_eq!(get(t, id).await.status(), TaskStatus::Running);
    assert!(ok(t.release(id, 2).await, "release"));
    let released = get(t, id).await;
    assert_eq!(
        (released.status(), released.attempts, released.lease_until),
        (TaskStatus::Queued, 2, None)
    );
    assert!(
        !ok(t.renew(id, 2, lease, renewed_at).await, "renew"),
        "a released claim is gone"
    );
    assert!(!ok(t.release(id, 2).await, "release"), "released once");

    // Released: the next claim takes it at once, whatever the old lease said.
    let third = claimed(
        ok(t.claim(id, "d3", lease, 5, renewed_at).await, "claim"),
        "after a release",
    );
    assert_eq!(third.attempts, 3);
    assert_eq!(third.lease_until, Some(renewed_at + lease));

    let result = serde_json::json!({"response": "4", "steps": [{"tool": "calculate", "n": 12345678901234567_u64}]});
    assert!(
        !ok(t.finish(id, 2, &Finished::Completed(result.clone())).await, "finish"),
        "a stale attempt cannot finish"
    );
    assert_eq!(get(t, id).await, third, "nothing changed");
    assert!(ok(
        t.finish(id, 3, &Finished::Completed(result.clone())).await,
        "finish"
    ));
    let done = get(t, id).await;
    assert_eq!((done.status(), done.attempts), (TaskStatus::Completed, 3));
    assert_eq!(done.state, TaskState::Finished(Finished::Completed(result)));
    assert!(
        done.finished_at.as_deref().is_some_and(|f| f.ends_with('Z')),
        "{done:?}"
    );
    assert_eq!(done.lease_until, None, "a finished task holds no lease");
    assert!(
        !ok(t.finish(id, 3, &Finished::Failed("late".to_string())).await, "finish"),
        "finished once"
    );
    assert!(!ok(t.renew(id, 3, lease, renewed_at).await, "renew"));
    assert!(!ok(t.release(id, 3).await, "release"));
    assert_eq!(get(t, id).await, done, "nothing changes a finished task");
    assert_eq!(
        ok(t.claim(id, "d4", lease, 5, renewed_at + secs(3600)).await, "claim"),
        Claim::Finished(done)
    );
}

pub async fn claims_run_out_of_attempts(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let (id, lease, base) = ("tasks-exhausted", secs(10), now_ms());
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    claimed(ok(t.claim(id, "d1", lease, 2, base).await, "claim"), "first");
    let second = base + lease;
    claimed(
        ok(t.claim(id, "d2", lease, 2, second).await, "claim"),
        "second, as the lease ends",
    );
    assert_eq!(
        ok(t.claim(id, "d3", lease, 2, second + secs(1)).await, "claim"),
        Claim::Held {
            same_delivery: false,
            lease_until: second + lease
        },
        "a held task is not exhausted"
    );
    let exhausted = match ok(t.claim(id, "d3", lease, 2, second + lease).await, "claim") {
        Claim::Exhausted(task) => task,
        other => panic!("a third claim of at most 2: {other:?}"),
    };
    assert_eq!((exhausted.status(), exhausted.attempts), (TaskStatus::Failed, 2));
    let error = exhausted
        .state
        .finished()
        .and_then(Finished::error)
        .expect("an error says why");
    assert!(error.contains("2 attempts"), "{error}");
    assert!(
        exhausted.finished_at.is_some() && exhausted.lease_until.is_none(),
        "{exhausted:?}"
    );
    assert_eq!(get(t, id).await, exhausted);
    assert_eq!(
        ok(t.claim(id, "d4", lease, 5, second + secs(3600)).await, "claim"),
        Claim::Finished(exhausted),
        "exhausted is finished, even for a larger limit"
    );

    // Created as given, out of attempts already, and queued.
    let mut spent = new_task("tasks-spent", TaskState::Queued);
    spent.attempts = 3;
    ok(t.create(&spent).await, "create");
    match ok(t.claim("tasks-spent", "d1", lease, 3, base).await, "claim") {
        Claim::Exhausted(task) => {
            assert_eq!((task.status(), task.attempts), (TaskStatus::Failed, 3));
            assert!(
                task.state
                    .finished()
                    .and_then(Finished::error)
                    .is_some_and(|e| e.contains("3 attempts"))
            );
        }
        other => panic!("a queued task with 3 of 3 attempts: {other:?}"),
    }
}

pub async fn unknown_tasks_are_not_found(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let lease = secs(60);
    for id in ["tasks-unknown", "tasks/bad/id"] {
        assert_eq!(
            ok(t.claim(id, "d1", lease, 3, now_ms()).await, "claim"),
            Claim::NotFound,
            "{id}"
        );
        assert!(!ok(t.renew(id, 1, lease, now_ms()).await, "renew"), "{id}");
        assert!(!ok(t.release(id, 1).await, "release"), "{id}");
        // Documented in the trait: false, not an error.
        assert!(
            !ok(t.finish(id, 0, &Finished::Failed("x".to_string())).await, "finish"),
            "{id}"
        );
        assert_eq!(ok(t.get(id).await, "get"), None, "{id}");
        assert!(ok(t.events(id, None, 10).await, "events").is_empty(), "{id}");
    }
}

pub async fn queued_tasks_finish_with_attempt_zero(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "tasks-never-claimed";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    // Running is not an outcome: `Finished` cannot say it.
    assert!(
        !ok(t.finish(id, 1, &Finished::Failed("x".to_string())).await, "finish"),
        "it has no attempt 1"
    );
    assert_eq!(get(t, id).await.status(), TaskStatus::Queued);
    assert!(ok(
        t.finish(id, 0, &Finished::Failed("cancelled".to_string())).await,
        "finish"
    ));
    let got = get(t, id).await;
    assert_eq!(
        (&got.state, got.attempts),
        (&TaskState::Finished(Finished::Failed("cancelled".to_string())), 0)
    );
    assert!(got.finished_at.is_some(), "{got:?}");
    assert_eq!(got.started_at, None, "never started");
    assert!(matches!(
        ok(t.claim(id, "d1", secs(60), 3, now_ms()).await, "claim"),
        Claim::Finished(_)
    ));
}

pub async fn synchronous_runs_are_held_for_good(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "tasks-sync";
    let mut task = new_task(id, TaskState::Running);
    task.attempts = 1;
    ok(t.create(&task).await, "create");
    let got = get(t, id).await;
    assert_eq!(
        (got.status(), got.attempts, got.lease_until),
        (TaskStatus::Running, 1, None)
    );
    assert!(got.started_at.is_some(), "a task created running has started: {got:?}");
    let far = now_ms() + secs(10 * 365 * 86_400);
    assert!(
        !ok(t.runnable(far, 10_000).await, "runnable").iter().any(|r| r == id),
        "a synchronous run is never runnable"
    );
    assert_eq!(
        ok(t.claim(id, "d1", secs(60), 3, far).await, "claim"),
        Claim::Held {
            same_delivery: false,
            lease_until: held_for_good()
        }
    );
    assert_eq!(get(t, id).await, got, "and a claim changes nothing");
    assert!(ok(
        t.finish(id, 1, &Finished::Completed(serde_json::json!("4"))).await,
        "finish"
    ));
    assert_eq!(get(t, id).await.status(), TaskStatus::Completed);
}

pub async fn runnable_lists_queued_and_expired_oldest_first(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let (base, lease) = (now_ms(), secs(300));
    let ids = [
        "tasks-run-q1",
        "tasks-run-leased",
        "tasks-run-sync",
        "tasks-run-done",
        "tasks-run-q2",
    ];
    for id in ids {
        let mut task = new_task(id, TaskState::Queued);
        if id == "tasks-run-sync" {
            task.state = TaskState::Running;
            task.attempts = 1;
        }
        ok(t.create(&task).await, "create");
    }
    claimed(
        ok(t.claim("tasks-run-leased", "d1", lease, 3, base).await, "claim"),
        "leased",
    );
    assert!(ok(
        t.finish("tasks-run-done", 0, &Finished::Failed("x".to_string())).await,
        "finish"
    ));
    let mine =
        |listed: Vec<String>| -> Vec<String> { listed.into_iter().filter(|id| ids.contains(&id.as_str())).collect() };

    let held = mine(ok(t.runnable(base + secs(1), 10_000).await, "runnable"));
    assert_eq!(
        held,
        ["tasks-run-q1", "tasks-run-q2"],
        "queued ones, oldest first; not the held, sync or finished"
    );
    let expired = mine(ok(t.runnable(base + lease, 10_000).await, "runnable"));
    assert_eq!(
        expired,
        ["tasks-run-q1", "tasks-run-leased", "tasks-run-q2"],
        "and a running one once its lease has passed"
    );
    // At least those three are runnable then, whatever else the store holds.
    assert_eq!(
        ok(t.runnable(base + lease, 2).await, "runnable").len(),
        2,
        "the limit holds"
    );
    assert!(ok(t.runnable(base + lease, 0).await, "runnable").is_empty());
    // Claimed again, it is held again; released, queued.
    claimed(
        ok(t.claim("tasks-run-leased", "d2", lease, 3, base + lease).await, "claim"),
        "expired",
    );
    let listed = mine(ok(t.runnable(base + lease, 10_000).await, "runnable"));
    assert_eq!(listed, ["tasks-run-q1", "tasks-run-q2"]);
    assert!(ok(t.release("tasks-run-leased", 2).await, "release"));
    let listed = mine(ok(t.runnable(base, 10_000).await, "runnable"));
    assert_eq!(
        listed,
        ["tasks-run-q1", "tasks-run-leased", "tasks-run-q2"],
        "a released task is queued"
    );
}

pub async fn concurrent_claims_have_one_winner(stores: &Stores) {
    claims_have_one_winner(&stores.tasks, &stores.tasks, "tasks-race").await;
}

/// Twenty concurrent claims of a new queued task `id`, alternating between
/// `a` and `b` (one store twice, or two stores on one database as two
/// processes would be): exactly one wins, the rest find it held.
pub async fn claims_have_one_winner(a: &Arc<dyn TaskStore>, b: &Arc<dyn TaskStore>, id: &str) {
    ok(a.create(&new_task(id, TaskState::Queued)).await, "create");
    let now = now_ms();
    let claims: Vec<_> = (0..20)
        .map(|i| {
            let tasks = if i % 2 == 0 { a.clone() } else { b.clone() };
            let id = id.to_string();
            tokio::spawn(async move { tasks.claim(&id, &format!("d{i}"), secs(60), 3, now).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, c) in claims.into_iter().enumerate() {
        match ok(c.await.unwrap_or_else(|e| panic!("claim task: {e}")), "claim") {
            Claim::Claimed(task) => winners.push(task),
            Claim::Held {
                same_delivery: false, ..
            } => {}
            other => panic!("claim {i} of {id}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim of {id} wins: {winners:?}");
    let stored = get(b.as_ref(), id).await;
    assert_eq!((stored.status(), stored.attempts), (TaskStatus::Running, 1));
    assert_eq!(stored, winners[0]);
}

pub async fn events_are_ordered_and_replaced(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "tasks-events";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    let event = |attempt: u32, index: u32, created_at: &str| TaskEvent {
        attempt,
        index,
        data: serde_json::json!({"step": format!("{attempt}.{index}"), "args": {"z": 1, "a": [1, 2]}}),
        created_at: created_at.to_string(),
    };
    // Out of order, and index 10 after 1 (not between 1 and 2 as text).
    let given = "2030-01-02T03:04:05.678Z";
    for (attempt, index) in [(2, 1), (1, 10), (1, 0), (2, 0), (1, 1)] {
        ok(t.add_event(id, &event(attempt, index, given)).await, "add_event");
    }
    let positions = |events: &[TaskEvent]| -> Vec<(u32, u32)> { events.iter().map(|e| (e.attempt, e.index)).collect() };
    let all = ok(t.events(id, None, 100).await, "events");
    assert_eq!(positions(&all), [(1, 0), (1, 1), (1, 10), (2, 0), (2, 1)]);
    assert_eq!(all[2], event(1, 10, given), "stored as given");
    assert_eq!(
        positions(&ok(t.events(id, Some((1, 1)), 100).await, "events")),
        [(1, 10), (2, 0), (2, 1)]
    );
    assert_eq!(positions(&ok(t.events(id, None, 2).await, "events")), [(1, 0), (1, 1)]);
    assert_eq!(positions(&ok(t.events(id, Some((1, 10)), 1).await, "events")), [(2, 0)]);
    assert_eq!(
        positions(&ok(t.events(id, Some((1, 5)), 100).await, "events")),
        [(1, 10), (2, 0), (2, 1)],
        "after a position with no event"
    );
    assert!(ok(t.events(id, Some((2, 1)), 100).await, "events").is_empty());
    assert!(ok(t.events(id, None, 0).await, "events").is_empty());

    let mut again = event(1, 1, "");
    again.data = serde_json::json!("retried");
    ok(t.add_event(id, &again).await, "add_event");
    let all = ok(t.events(id, None, 100).await, "events");
    assert_eq!(all.len(), 5, "the same position is replaced, not added");
    assert_eq!(all[1].data, serde_json::json!("retried"));
    assert!(
        all[1].created_at.ends_with('Z') && all[1].created_at != given,
        "set by the store: {all:?}"
    );
    assert!(
        ok(t.events("tasks-create", None, 10).await, "events").is_empty(),
        "events are per task"
    );
}
