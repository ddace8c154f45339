//! The promises of [`SessionStore`](crate::store::SessionStore).

use std::collections::HashSet;
use std::sync::Arc;

use super::{message, ok};
use crate::llm::Role;
use crate::store::{NewMessage, SessionStore, StoredMessage, Stores};

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

fn contents(messages: &[StoredMessage]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

/// What a chat turn does: the history, the model, then the append after it.
async fn turn(sessions: &Arc<dyn SessionStore>, session: &str, limit: usize, i: usize) -> Vec<String> {
    let history = ok(sessions.history(session, limit).await, "history");
    let turn = [
        message(Role::User, &format!("q{i}")),
        message(Role::Model, &format!("a{i}")),
    ];
    ok(
        sessions.append_after(session, &history, &turn, None).await,
        "append after",
    );
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
    let stored = ok(
        s.append_after("contract-stale", &stale, &late, None).await,
        "append after",
    );
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
        s.append_after("contract-stale", &before_delete, &late, None).await,
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
    ok(
        s.append_after("contract-theirs", &mine, &turn, None).await,
        "append after",
    );
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
        ok(
            s.append_after("contract-large", &history, &turn, None).await,
            "append after",
        );
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
