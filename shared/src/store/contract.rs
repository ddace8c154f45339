//! The promises every store backend keeps, as one test suite.
//!
//! A backend's tests call [`run_all`] with a fresh [`Stores`]: SQLite on a
//! file (and two stores on one file), Firestore on its emulator. A backend
//! that breaks a promise fails here, whichever backend it is. Compiled for
//! tests and behind the `testing` feature (not only `cfg(test)`), so that
//! integration tests of any crate can run it; no release build has it.
//! Each case uses its own session and key names, so one store serves all.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{
    Claim, Finished, NewMessage, StoreError, Stores, TaskEvent, TaskRecord, TaskState, TaskStatus, TaskStore,
    held_for_good, whole_millis,
};
use crate::llm::Role;

fn message(role: Role, content: &str) -> NewMessage {
    NewMessage {
        role,
        content: content.to_string(),
    }
}

/// Runs every case; panics (failing the calling test) on the first broken promise.
pub async fn run_all(stores: &Stores) {
    sessions_keep_order_and_sequence(stores).await;
    identical_messages_are_all_kept(stores).await;
    recent_is_the_tail_oldest_first(stores).await;
    turns_append_after_their_history(stores).await;
    a_history_gone_stale_still_appends_in_order(stores).await;
    a_history_of_another_session_is_not_used(stores).await;
    large_messages_still_give_the_whole_history(stores).await;
    concurrent_appends_lose_nothing_and_never_interleave(stores).await;
    delete_removes_the_session(stores).await;
    rate_limit_counts_are_exact_under_concurrency(stores).await;
    rate_limit_windows_reset(stores).await;
    memory_is_per_session_and_case_insensitive(stores).await;
    tasks_are_created_once_as_given(stores).await;
    claims_take_turns_under_leases(stores).await;
    claims_run_out_of_attempts(stores).await;
    unknown_tasks_are_not_found(stores).await;
    queued_tasks_finish_with_attempt_zero(stores).await;
    synchronous_runs_are_held_for_good(stores).await;
    runnable_lists_queued_and_expired_oldest_first(stores).await;
    concurrent_claims_have_one_winner(stores).await;
    events_are_ordered_and_replaced(stores).await;
}

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what}: {err}"))
}

pub async fn sessions_keep_order_and_sequence(stores: &Stores) {
    let s = &stores.sessions;
    assert_eq!(
        ok(s.messages("contract-order").await, "messages"),
        None,
        "an unknown session is None"
    );
    let first = ok(
        s.append("contract-order", &[message(Role::User, "a"), message(Role::Model, "b")])
            .await,
        "append",
    );
    let second = ok(s.append("contract-order", &[message(Role::User, "c")]).await, "append");
    let seqs: Vec<u64> = first.iter().chain(&second).map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive sequence numbers: {seqs:?}"
    );
    let all = ok(s.messages("contract-order").await, "messages").expect("the session exists");
    let contents: Vec<&str> = all.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["a", "b", "c"]);
    assert_eq!(all[1].role, Role::Model);
    assert!(
        all.iter().all(|m| m.created_at.ends_with('Z')),
        "RFC 3339 UTC timestamps"
    );
}

pub async fn identical_messages_are_all_kept(stores: &Stores) {
    let s = &stores.sessions;
    for _ in 0..3 {
        ok(
            s.append(
                "contract-dup",
                &[message(Role::User, "same"), message(Role::Model, "same")],
            )
            .await,
            "append",
        );
    }
    let all = ok(s.messages("contract-dup").await, "messages").expect("exists");
    assert_eq!(all.len(), 6, "an identical message is never merged away");
}

pub async fn recent_is_the_tail_oldest_first(stores: &Stores) {
    let s = &stores.sessions;
    let turns: Vec<NewMessage> = (0..60).map(|i| message(Role::User, &format!("m{i}"))).collect();
    for chunk in turns.chunks(7) {
        ok(s.append("contract-recent", chunk).await, "append");
    }
    let tail = ok(s.recent("contract-recent", 20).await, "recent");
    let contents: Vec<String> = tail.iter().map(|m| m.content.clone()).collect();
    let expected: Vec<String> = (40..60).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, expected);
    assert!(ok(s.recent("contract-recent", 0).await, "recent").is_empty());
    assert_eq!(ok(s.recent("contract-recent", 1000).await, "recent").len(), 60);
    assert!(ok(s.recent("contract-nobody", 5).await, "recent").is_empty());
}

fn contents(messages: &[super::StoredMessage]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

/// What a chat turn does: the history, the model, then the append after it.
async fn turn(sessions: &Arc<dyn super::SessionStore>, session: &str, limit: usize, i: usize) -> Vec<String> {
    let history = ok(sessions.history(session, limit).await, "history");
    let turn = [
        message(Role::User, &format!("q{i}")),
        message(Role::Model, &format!("a{i}")),
    ];
    ok(sessions.append_after(session, &history, &turn).await, "append after");
    contents(&history.messages)
}

pub async fn turns_append_after_their_history(stores: &Stores) {
    let s = &stores.sessions;
    assert!(
        turn(s, "contract-turns", 4, 0).await.is_empty(),
        "a new session has no history"
    );
    assert_eq!(turn(s, "contract-turns", 4, 1).await, ["q0", "a0"]);
    for i in 2..12 {
        let history = turn(s, "contract-turns", 4, i).await;
        let expected = [
            format!("q{}", i - 2),
            format!("a{}", i - 2),
            format!("q{}", i - 1),
            format!("a{}", i - 1),
        ];
        assert_eq!(history, expected, "turn {i}: the last 4 messages, oldest first");
    }
    let all = ok(s.messages("contract-turns").await, "messages").expect("exists");
    assert_eq!(all.len(), 24);
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1), "consecutive numbers");
    let history = ok(s.history("contract-turns", 1000).await, "history");
    assert_eq!(
        history.messages, all,
        "a history longer than any tail is the whole session"
    );
}

pub async fn a_history_gone_stale_still_appends_in_order(stores: &Stores) {
    let s = &stores.sessions;
    turn(s, "contract-stale", 20, 0).await;
    // A turn reads, another turn is stored while its model call runs, then
    // it appends after what it read.
    let stale = ok(s.history("contract-stale", 20).await, "history");
    turn(s, "contract-stale", 20, 1).await;
    let late = [message(Role::User, "q2"), message(Role::Model, "a2")];
    let stored = ok(s.append_after("contract-stale", &stale, &late).await, "append after");
    let all = ok(s.messages("contract-stale").await, "messages").expect("exists");
    assert_eq!(contents(&all), ["q0", "a0", "q1", "a1", "q2", "a2"]);
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [all[4].seq, all[5].seq]
    );
    let history = ok(s.recent("contract-stale", 3).await, "recent");
    assert_eq!(
        contents(&history),
        ["a1", "q2", "a2"],
        "the history after it is in order"
    );
    // After a delete, the stale history starts the session again.
    let before_delete = ok(s.history("contract-stale", 20).await, "history");
    assert!(ok(s.delete("contract-stale").await, "delete"));
    ok(
        s.append_after("contract-stale", &before_delete, &late).await,
        "append after a delete",
    );
    let all = ok(s.messages("contract-stale").await, "messages").expect("exists again");
    assert_eq!(contents(&all), ["q2", "a2"]);
    assert_eq!(
        contents(&ok(s.recent("contract-stale", 20).await, "recent")),
        ["q2", "a2"]
    );
}

pub async fn a_history_of_another_session_is_not_used(stores: &Stores) {
    let s = &stores.sessions;
    for i in 0..3 {
        turn(s, "contract-mine", 20, i).await;
    }
    let mine = ok(s.history("contract-mine", 20).await, "history");
    let turn = [message(Role::User, "q"), message(Role::Model, "a")];
    ok(s.append_after("contract-theirs", &mine, &turn).await, "append after");
    let theirs = ok(s.messages("contract-theirs").await, "messages").expect("exists");
    assert_eq!(contents(&theirs), ["q", "a"]);
    assert_eq!(
        contents(&ok(s.recent("contract-theirs", 20).await, "recent")),
        ["q", "a"]
    );
    assert_eq!(
        ok(s.messages("contract-mine").await, "messages").expect("exists").len(),
        6
    );
}

/// Messages too large for a Firestore session document to keep many of:
/// the history is whole and in order all the same.
pub async fn large_messages_still_give_the_whole_history(stores: &Stores) {
    let s = &stores.sessions;
    let big = |i: usize| format!("{i}:{}", "x".repeat(90_000));
    for i in 0..4 {
        let history = ok(s.history("contract-large", 20).await, "history");
        let turn = [message(Role::User, &big(2 * i)), message(Role::Model, &big(2 * i + 1))];
        assert_eq!(history.messages.len(), 2 * i, "turn {i}: every earlier message");
        ok(s.append_after("contract-large", &history, &turn).await, "append after");
    }
    let history = ok(s.recent("contract-large", 20).await, "recent");
    let expected: Vec<String> = (0..8).map(big).collect();
    assert_eq!(contents(&history), expected);
    assert_eq!(
        contents(&ok(s.recent("contract-large", 3).await, "recent")),
        expected[5..]
    );
}

/// Turns on one session from two stores on one database (two instances):
/// none lost, each turn's two messages together.
pub async fn turns_across_stores_lose_nothing(a: &Stores, b: &Stores, session: &str, turns: usize) {
    let writers: Vec<_> = (0..turns)
        .map(|i| {
            let sessions = if i % 2 == 0 {
                a.sessions.clone()
            } else {
                b.sessions.clone()
            };
            let session = session.to_string();
            tokio::spawn(async move { turn(&sessions, &session, 20, i).await })
        })
        .collect();
    for w in writers {
        w.await.unwrap_or_else(|e| panic!("writer task: {e}"));
    }
    let all = ok(a.sessions.messages(session).await, "messages").expect("exists");
    assert_eq!(all.len(), 2 * turns, "no message lost");
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1), "consecutive numbers");
    for pair in all.chunks(2) {
        let q = pair[0].content.strip_prefix('q').expect("a question first");
        assert_eq!(pair[1].content, format!("a{q}"), "a turn's messages stay together");
    }
    let recent = ok(b.sessions.recent(session, 20).await, "recent");
    assert_eq!(
        recent,
        all[all.len() - 20.min(all.len())..],
        "either store's history is the last messages"
    );
}

pub async fn concurrent_appends_lose_nothing_and_never_interleave(stores: &Stores) {
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let sessions = stores.sessions.clone();
            tokio::spawn(async move {
                let turn = [
                    message(Role::User, &format!("q{i}")),
                    message(Role::Model, &format!("a{i}")),
                ];
                sessions.append("contract-busy", &turn).await
            })
        })
        .collect();
    for w in writers {
        ok(
            w.await.unwrap_or_else(|e| panic!("writer task: {e}")),
            "concurrent append",
        );
    }
    let all = ok(stores.sessions.messages("contract-busy").await, "messages").expect("exists");
    assert_eq!(all.len(), 100, "no message lost");
    let seqs: HashSet<u64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(seqs.len(), 100, "no sequence number given twice");
    for pair in all.chunks(2) {
        let q = pair[0].content.strip_prefix('q').expect("a question first");
        assert_eq!(pair[1].content, format!("a{q}"), "a turn's messages stay together");
    }
}

pub async fn delete_removes_the_session(stores: &Stores) {
    let s = &stores.sessions;
    ok(s.append("contract-delete", &[message(Role::User, "x")]).await, "append");
    assert!(ok(s.delete("contract-delete").await, "delete"));
    assert_eq!(ok(s.messages("contract-delete").await, "messages"), None);
    assert!(ok(s.recent("contract-delete", 10).await, "recent").is_empty());
    assert!(
        !ok(s.delete("contract-delete").await, "delete"),
        "deleting twice reports nothing deleted"
    );
    ok(s.append("contract-delete", &[message(Role::User, "y")]).await, "append");
    let again = ok(s.messages("contract-delete").await, "messages").expect("recreated");
    assert_eq!(again.len(), 1, "a recreated session starts empty");
}

pub async fn rate_limit_counts_are_exact_under_concurrency(stores: &Stores) {
    let now = SystemTime::now();
    let window = Duration::from_secs(3600);
    let hits: Vec<_> = (0..30)
        .map(|_| {
            let limits = stores.rate_limits.clone();
            tokio::spawn(async move { limits.hit("contract:exact", window, now).await })
        })
        .collect();
    let mut counts = Vec::new();
    for h in hits {
        counts.push(ok(h.await.unwrap_or_else(|e| panic!("hit task: {e}")), "hit").count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=30).collect::<Vec<u64>>(), "every hit counted once");
    let other = ok(stores.rate_limits.hit("contract:other", window, now).await, "hit");
    assert_eq!(other.count, 1, "keys are counted apart");
}

pub async fn rate_limit_windows_reset(stores: &Stores) {
    let window = Duration::from_secs(60);
    // A fixed instant at the start of a window (a multiple of 60 s), so the
    // test never straddles one.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let limits = &stores.rate_limits;
    let first = ok(limits.hit("contract:window", window, start).await, "hit");
    assert_eq!(first.count, 1);
    assert_eq!(first.resets_at, start + window);
    let second = ok(
        limits
            .hit("contract:window", window, start + Duration::from_secs(59))
            .await,
        "hit",
    );
    assert_eq!(second.count, 2);
    let next = ok(limits.hit("contract:window", window, start + window).await, "hit");
    assert_eq!(next.count, 1, "a new window starts at zero");
    assert_eq!(next.resets_at, start + window + window);
}

pub async fn memory_is_per_session_and_case_insensitive(stores: &Stores) {
    let m = &stores.memory;
    ok(m.remember("contract-m1", "Favourite colour", "green").await, "remember");
    ok(m.remember("contract-m1", "favourite colour ", "teal").await, "remember");
    ok(m.remember("contract-m1", "city", "Oslo").await, "remember");
    ok(m.remember("contract-m2", "city", "Lima").await, "remember");
    let all = ok(m.recall("contract-m1", None, 10).await, "recall");
    let pairs: Vec<(&str, &str)> = all.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
    assert_eq!(
        pairs,
        [("favourite colour", "teal"), ("city", "Oslo")],
        "oldest first, last value kept"
    );
    let one = ok(m.recall("contract-m1", Some("FAVOURITE COLOUR"), 10).await, "recall");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].value, "teal");
    assert_eq!(ok(m.recall("contract-m2", None, 10).await, "recall")[0].value, "Lima");
    assert!(ok(m.recall("contract-m3", None, 10).await, "recall").is_empty());
    assert_eq!(
        ok(m.recall("contract-m1", None, 1).await, "recall").len(),
        1,
        "the limit holds"
    );
}

/// A task as a caller would create it; the times are the store's to set.
fn new_task(task_id: &str, state: TaskState) -> TaskRecord {
    TaskRecord {
        state,
        ..TaskRecord::queued(task_id, "Calcula 2+2", format!("{task_id}-session"), 10)
    }
}

/// Now, to the millisecond: the precision of stored leases.
fn now_ms() -> SystemTime {
    whole_millis(SystemTime::now())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn get(t: &dyn TaskStore, task_id: &str) -> TaskRecord {
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
}

pub async fn claims_take_turns_under_leases(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let id = "tasks-claim";
    ok(t.create(&new_task(id, TaskState::Queued)).await, "create");
    let (base, lease) = (now_ms(), secs(60));

    let first = claimed(ok(t.claim(id, "d1", lease, 5, base).await, "claim"), "a queued task");
    assert_eq!((first.status(), first.attempts), (TaskStatus::Running, 1));
    assert_eq!(first.delivery_id.as_deref(), Some("d1"));
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
