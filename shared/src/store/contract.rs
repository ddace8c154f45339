//! The promises every store backend keeps, as one test suite.
//!
//! A backend's tests call [`run_all`] with a fresh [`Stores`]: SQLite on a
//! file today, Firestore against its emulator next. A backend that breaks a
//! promise fails here, whichever backend it is. Public (not `cfg(test)`) so
//! integration tests of any crate can run it; production never calls it.
//! Each case uses its own session and key names, so one store serves all.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{NewMessage, StoreError, Stores, TaskRecord, TaskStatus};
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
    concurrent_appends_lose_nothing_and_never_interleave(stores).await;
    delete_removes_the_session(stores).await;
    rate_limit_counts_are_exact_under_concurrency(stores).await;
    rate_limit_windows_reset(stores).await;
    memory_is_per_session_and_case_insensitive(stores).await;
    tasks_are_created_once_and_finished(stores).await;
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

pub async fn tasks_are_created_once_and_finished(stores: &Stores) {
    let t: &Arc<dyn super::TaskStore> = &stores.tasks;
    let task = TaskRecord {
        task_id: "contract-t1".into(),
        status: TaskStatus::Running,
        task: "Calcula 2+2".into(),
        session_id: "s".into(),
        max_steps: 10,
        result: None,
        error: None,
        created_at: String::new(),
        updated_at: String::new(),
    };
    ok(t.create(&task).await, "create");
    assert!(t.create(&task).await.is_err(), "an id is created once");
    let got = ok(t.get("contract-t1").await, "get").expect("exists");
    assert_eq!(
        (got.status, got.max_steps, got.result.as_ref()),
        (TaskStatus::Running, 10, None)
    );
    let result = serde_json::json!({"response": "4", "steps": [{"tool": "calculate"}]});
    ok(
        t.finish("contract-t1", TaskStatus::Completed, Some(&result), None)
            .await,
        "finish",
    );
    let got = ok(t.get("contract-t1").await, "get").expect("exists");
    assert_eq!(got.status, TaskStatus::Completed);
    assert_eq!(got.result, Some(result));
    assert!(got.created_at.ends_with('Z') && got.updated_at >= got.created_at);
    ok(
        t.finish("contract-t1", TaskStatus::Failed, None, Some("boom")).await,
        "finish",
    );
    assert_eq!(
        ok(t.get("contract-t1").await, "get").expect("exists").error.as_deref(),
        Some("boom")
    );
    assert_eq!(ok(t.get("contract-nope").await, "get"), None);
    assert!(
        t.finish("contract-nope", TaskStatus::Failed, None, Some("x"))
            .await
            .is_err(),
        "finishing an unknown task fails"
    );
}
