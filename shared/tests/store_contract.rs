//! The store contract (`agent_core::store::contract`) on every backend:
//! SQLite on a file on disk (and two stores on one file, as two processes
//! sharing it would be), and Firestore on Google's emulator.

use agent_core::config::{StoreKind, StoreSettings};
use agent_core::http::Metrics;
use agent_core::store::{self, contract};

fn settings(path: &std::path::Path) -> StoreSettings {
    StoreSettings {
        kind: StoreKind::Sqlite,
        sqlite_path: path.to_path_buf(),
        firestore_project: None,
        firestore_database: "(default)".into(),
        firestore_emulator_host: None,
        session_ttl: None,
        session_tail: 20,
    }
}

/// A store on the SQLite file at `path`: two on one file stand for two
/// processes sharing it.
async fn open(path: &std::path::Path) -> agent_core::store::Stores {
    store::open(&settings(path), &Metrics::new("test")).await.expect("open")
}

#[tokio::test]
async fn sqlite_keeps_every_promise() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::run_all(&open(&dir.path().join("contract.db")).await).await;
}

#[tokio::test]
async fn two_sqlite_stores_on_one_file_limit_and_append_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let (a, b) = (open(&path).await, open(&path).await);
    contract::rate_limits_admit_exactly_the_limit_across_stores(&a, &b, "shared:key").await;

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

#[tokio::test]
async fn two_sqlite_stores_on_one_file_take_turns_on_one_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("turns.db");
    let (a, b) = (open(&path).await, open(&path).await);
    contract::turns_across_stores_lose_nothing(&a, &b, "two-stores", 100).await;
}

/// 100 charged turns at once from two stores on one file (two processes):
/// the session's totals and the day's record are exact.
#[tokio::test]
async fn two_sqlite_stores_on_one_file_sum_usage_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("usage.db");
    let (a, b) = (open(&path).await, open(&path).await);
    contract::charged_turns_across_stores_are_exact(&a, &b, "key:two-stores", 100).await;
}

#[tokio::test]
async fn two_sqlite_stores_on_one_file_claim_a_task_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("claims.db");
    let (a, b) = (open(&path).await, open(&path).await);
    for round in 0..10 {
        contract::claims_have_one_winner(&a.tasks, &b.tasks, &format!("two-stores-{round}")).await;
        contract::callback_leases_have_one_winner(&a.tasks, &b.tasks, &format!("two-stores-cb-{round}")).await;
    }
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn firestore_keeps_every_promise() {
    use agent_core::store::{Stores, firestore::FirestoreStore};
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok_and(|h| !h.is_empty()),
        "FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test.sh, which starts the Firestore emulator"
    );
    // A project of this run's own: the emulator keeps projects apart, so
    // runs never see each other's sessions or counts.
    let project = format!("contract-{}", uuid::Uuid::new_v4().simple());
    let ttl = Some(std::time::Duration::from_secs(86_400));
    let store = std::sync::Arc::new(
        FirestoreStore::connect(&project, "(default)", ttl, &Metrics::new("test"))
            .await
            .unwrap_or_else(|err| panic!("{err:#}")),
    );
    let stores = Stores {
        sessions: store.clone(),
        rate_limits: store.clone(),
        memory: store.clone(),
        tasks: store.clone(),
        usage: store.clone(),
        cache: store,
    };
    contract::run_all(&stores).await;
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn two_firestore_stores_take_turns_on_one_session_and_one_rate_limit() {
    use agent_core::store::{Stores, firestore::FirestoreStore};
    // Two stores stand for two instances: their local locks do not see each
    // other, so only the conditional commits keep them exact.
    let project = format!("contract-{}", uuid::Uuid::new_v4().simple());
    let open = || async {
        let store = std::sync::Arc::new(
            FirestoreStore::connect(&project, "(default)", None, &Metrics::new("test"))
                .await
                .unwrap_or_else(|err| panic!("{err:#}")),
        );
        Stores {
            sessions: store.clone(),
            rate_limits: store.clone(),
            memory: store.clone(),
            tasks: store.clone(),
            usage: store.clone(),
            cache: store,
        }
    };
    let (a, b) = (open().await, open().await);
    contract::turns_across_stores_lose_nothing(&a, &b, "two-stores", 100).await;
    contract::rate_limits_admit_exactly_the_limit_across_stores(&a, &b, "two-stores:key").await;
    contract::charged_turns_across_stores_are_exact(&a, &b, "key:two-stores", 100).await;
}

/// Needs no emulator: a closed port stands for an unreachable one.
#[tokio::test]
async fn firestore_unreachable_fails_fast_and_clearly() {
    use agent_core::store::firestore::FirestoreStore;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let host = closed.to_string();
    let started = std::time::Instant::now();
    let err = FirestoreStore::connect_to(Some(&host), "nowhere", "(default)", None, &Metrics::new("test"))
        .await
        .err()
        .expect("nothing listens there");
    let message = format!("{err:#}");
    assert!(
        message.starts_with("cannot reach Firestore (project nowhere, database (default)"),
        "{message}"
    );
    assert!(message.contains("FIRESTORE_EMULATOR_HOST"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}
