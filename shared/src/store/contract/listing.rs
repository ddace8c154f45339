//! The promises of the pages and listings of
//! [`SessionStore`](crate::store::SessionStore) and
//! [`TaskStore`](crate::store::TaskStore).

use std::time::Duration;

use super::tasks::new_task;
use super::{message, ok};
use crate::llm::Role;
use crate::owned::session_key;
use crate::store::{SessionPosition, Stores, TaskPosition, TaskRecord, TaskState, TaskStatus};

/// Long enough for the next write to be stored at a later millisecond
/// (SQLite's precision), so that "newest first" has one answer.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

pub async fn long_sessions_page_through_every_message_once_in_order(stores: &Stores) {
    let s = stores.sessions.as_ref();
    let key = session_key("key:contract-pages", "long");
    for turn in 0..13 {
        let messages = [
            message(Role::User, &format!("q{turn}")),
            message(Role::Model, &format!("a{turn}")),
        ];
        ok(s.append(&key, &messages).await, "append");
    }
    for limit in [1, 5, 7, 26, 100] {
        let (mut seen, mut after, mut pages) = (Vec::new(), 0, 0);
        loop {
            let page = ok(s.messages_page(&key, after, limit).await, "page");
            assert!(page.items.len() <= limit, "limit {limit}: {} items", page.items.len());
            pages += 1;
            seen.extend(page.items.iter().map(|m| (m.seq, m.content.clone())));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(next), page.items.last().map(|m| m.seq), "limit {limit}");
                    after = next;
                }
                None => break,
            }
        }
        let expected: Vec<(u64, String)> = (0..26)
            .map(|i| (i + 1, format!("{}{}", if i % 2 == 0 { 'q' } else { 'a' }, i / 2)))
            .collect();
        assert_eq!(seen, expected, "limit {limit}: every message once, in order");
        assert_eq!(pages, 26usize.div_ceil(limit), "limit {limit}: no empty last page");
    }
    let past = ok(s.messages_page(&key, 26, 10).await, "page past the end");
    assert_eq!((past.items.len(), past.next), (0, None));
    let missing = ok(s.messages_page("contract-no-such-session", 0, 10).await, "page");
    assert_eq!(
        (missing.items.len(), missing.next),
        (0, None),
        "no session, no messages"
    );
    let other = ok(
        s.messages_page(&session_key("key:contract-other", "long"), 0, 10).await,
        "page",
    );
    assert!(other.items.is_empty(), "another owner's key is another session");
}

pub async fn sessions_are_listed_newest_first_paged_and_per_owner(stores: &Stores) {
    let s = stores.sessions.as_ref();
    let (alice, bob) = ("key:contract-list-a", "key:contract-list-b");
    let say = |text: &str| [message(Role::User, text)];
    for (owner, id) in [(alice, "s1"), (alice, "s2"), (bob, "s1"), (alice, "s3"), (alice, "s1")] {
        ok(s.append(&session_key(owner, id), &say(id)).await, "append");
        tick().await;
    }
    let first = ok(s.list_sessions(alice, None, 2).await, "list");
    let ids: Vec<_> = first.items.iter().map(|x| (x.id.as_str(), x.message_count)).collect();
    assert_eq!(ids, [("s1", 2), ("s3", 1)], "last written first, with their counts");
    let s1 = &first.items[0];
    assert!(s1.created_at < s1.updated_at, "{s1:?}");
    let next = first.next.expect("a second page");
    let second = ok(s.list_sessions(alice, Some(&next), 2).await, "list");
    let ids: Vec<_> = second.items.iter().map(|x| x.id.as_str()).collect();
    assert_eq!((ids, second.next), (vec!["s2"], None));
    let theirs = ok(s.list_sessions(bob, None, 10).await, "list");
    let ids: Vec<_> = theirs.items.iter().map(|x| x.id.as_str()).collect();
    assert_eq!((ids, theirs.next), (vec!["s1"], None), "only the owner's own");
    // A position taken from another owner's listing still lists only the
    // caller's sessions.
    let forged = SessionPosition {
        updated_at: next.updated_at + Duration::from_secs(3600),
        id: "zzz".into(),
    };
    let listed = ok(s.list_sessions(bob, Some(&forged), 10).await, "list");
    let ids: Vec<_> = listed.items.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["s1"]);
    let nobody = ok(s.list_sessions("key:contract-list-nobody", None, 10).await, "list");
    assert_eq!((nobody.items.len(), nobody.next), (0, None));
    // A deleted session is no longer listed.
    ok(s.delete(&session_key(alice, "s3")).await, "delete");
    let after_delete = ok(s.list_sessions(alice, None, 10).await, "list");
    let ids: Vec<_> = after_delete.items.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2"]);
}

pub async fn tasks_are_listed_newest_first_paged_per_owner_and_by_status(stores: &Stores) {
    let t = stores.tasks.as_ref();
    let (alice, bob) = ("key:contract-tasks-a", "key:contract-tasks-b");
    let owned_task = |id: &str, owner: &str, state: TaskState| TaskRecord {
        owner: owner.to_string(),
        ..new_task(id, state)
    };
    let created = [
        owned_task("list-t1", alice, TaskState::Queued),
        owned_task("list-t2", alice, TaskState::Running),
        owned_task("list-t3", bob, TaskState::Queued),
        owned_task("list-t4", alice, TaskState::Queued),
        owned_task("list-t5", alice, TaskState::Running),
    ];
    for task in &created {
        ok(t.create(task).await, "create");
        tick().await;
    }
    let ids = |tasks: &[TaskRecord]| tasks.iter().map(|x| x.task_id.clone()).collect::<Vec<_>>();
    let mut all = Vec::new();
    let mut after: Option<TaskPosition> = None;
    loop {
        let page = ok(t.list_tasks(alice, None, after.as_ref(), 2).await, "list");
        assert!(page.items.len() <= 2);
        assert!(page.items.iter().all(|x| x.owner == alice), "only the owner's own");
        all.extend(ids(&page.items));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        all,
        ["list-t5", "list-t4", "list-t2", "list-t1"],
        "newest first, each once"
    );
    let queued = ok(t.list_tasks(alice, Some(TaskStatus::Queued), None, 10).await, "list");
    assert_eq!(
        (ids(&queued.items), queued.next),
        (vec!["list-t4".to_string(), "list-t1".to_string()], None)
    );
    let running = ok(t.list_tasks(alice, Some(TaskStatus::Running), None, 1).await, "list");
    assert_eq!(ids(&running.items), ["list-t5"]);
    let rest = ok(
        t.list_tasks(alice, Some(TaskStatus::Running), running.next.as_ref(), 1)
            .await,
        "list",
    );
    assert_eq!((ids(&rest.items), rest.next), (vec!["list-t2".to_string()], None));
    let failed = ok(t.list_tasks(alice, Some(TaskStatus::Failed), None, 10).await, "list");
    assert!(failed.items.is_empty());
    let theirs = ok(t.list_tasks(bob, None, None, 10).await, "list");
    assert_eq!(ids(&theirs.items), ["list-t3"]);
}
