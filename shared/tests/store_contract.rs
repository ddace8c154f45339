//! The store contract (`agent_core::store::contract`) on SQLite: a file on
//! disk, and two stores on one file, as two processes sharing it would be.

use agent_core::config::{StoreKind, StoreSettings};
use agent_core::store::{self, contract};

fn settings(path: &std::path::Path) -> StoreSettings {
    StoreSettings {
        kind: StoreKind::Sqlite,
        sqlite_path: path.to_path_buf(),
        firestore_project: None,
        firestore_database: "(default)".into(),
    }
}

#[tokio::test]
async fn sqlite_keeps_every_promise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = store::open(&settings(&dir.path().join("contract.db")))
        .await
        .expect("open");
    contract::run_all(&stores).await;
}

#[tokio::test]
async fn two_sqlite_stores_on_one_file_count_and_append_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let (a, b) = (
        store::open(&settings(&path)).await.expect("open"),
        store::open(&settings(&path)).await.expect("open"),
    );
    let window = std::time::Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    let hits = (0..40).map(|i| {
        let limits = if i % 2 == 0 {
            a.rate_limits.clone()
        } else {
            b.rate_limits.clone()
        };
        tokio::spawn(async move { limits.hit("shared:key", window, now).await.expect("hit").count })
    });
    let mut counts: Vec<u64> = futures_util::future::join_all(hits)
        .await
        .into_iter()
        .map(|c| c.expect("task"))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>());

    let appends = (0..40).map(|i| {
        let sessions = if i % 2 == 0 {
            a.sessions.clone()
        } else {
            b.sessions.clone()
        };
        tokio::spawn(async move {
            let turn = [
                agent_core::store::NewMessage {
                    role: agent_core::llm::Role::User,
                    content: format!("q{i}"),
                },
                agent_core::store::NewMessage {
                    role: agent_core::llm::Role::Model,
                    content: format!("a{i}"),
                },
            ];
            sessions.append("shared-session", &turn).await.expect("append")
        })
    });
    futures_util::future::join_all(appends).await;
    let all = a
        .sessions
        .messages("shared-session")
        .await
        .expect("messages")
        .expect("exists");
    assert_eq!(all.len(), 80);
    for pair in all.chunks(2) {
        assert_eq!(pair[1].content, pair[0].content.replacen('q', "a", 1));
    }
}
