//! The Firestore store: the promises of [`super`] kept in Firestore, for
//! functions that run as many instances (Cloud Run, Lambda) and so cannot
//! share an SQLite file.
//!
//! # Files
//!
//! One file per store trait, each with its documents, its operations and
//! how they keep the trait's promises on Firestore:
//!
//! - `sessions`: [`SessionStore`](crate::store::SessionStore), in
//!   `sessions/{session_id}` and a `messages` subcollection.
//! - `rate_limits`: [`RateLimitStore`](crate::store::RateLimitStore), in
//!   `rate_limits/k-{key}@log`, one sliding log per key.
//! - `memory`: [`MemoryStore`](crate::store::MemoryStore), in
//!   `memories/{session_id}` and an `entries` subcollection.
//! - `tasks`: [`TaskStore`](crate::store::TaskStore), in `tasks/{task_id}`
//!   and an `events` subcollection: claims, leases, outcomes and progress.
//! - `listing`: pages of a session's messages, and a principal's sessions
//!   and tasks, newest first: one query each, with a cursor and a limit.
//! - `tail`: the bounded copy of a session's recent messages that its
//!   document carries, so that a chat turn is one read and one commit.
//! - `cache`: [`CacheStore`](crate::store::CacheStore), in
//!   `response_cache/{key}`, the response cache's shared tier.
//! - `cas`: the conditional commits every read-modify-write goes through.
//! - `counts`: the gets, queries, commits and documents counted for
//!   `/metrics`.
//! - `ids`: which ids can be document ids, and the encoding of keys.
//!
//! This file connects (to Firestore or the emulator) and holds what the
//! stores share: the time bounds, timestamps and the emulator's credentials.
//!
//! Session and task ids are document ids as they are (the HTTP layer lets
//! through only ids that can be); keys that come from clients (a rate-limit
//! key carries `X-Client-ID`) or from the model (memory keys) are encoded
//! first (`ids::key_id`), as a `/` in them would make a path.
//!
//! # Concurrency
//!
//! Each read-modify-write (an append, a remembered fact, a rate-limited
//! request admitted,
//! the end of a delete, a task's claim, renewal, release or outcome) is a
//! transaction with optimistic concurrency control: it reads the documents
//! it decides on, then makes all its writes in one atomic commit, each
//! conditioned on its document being as read (its update time, or its
//! absence). When another writer got there first, the commit fails whole,
//! nothing is written, and the call reads again after a random backoff, up
//! to [`MAX_ATTEMPTS`] times within [`RETRY_BUDGET`]; past that it fails
//! with `Unavailable` (a 503 the client may retry).
//! Firestore's own read-write transactions lock what they read instead, and
//! when many contend for one document (fifty appends to one session) the
//! emulator deadlocks them until its 2 s lock timeout aborts them all, round
//! after round; a conditional commit never waits for a lock. On top of that,
//! the calls of one process that change one document take turns on a local
//! lock, so that only calls from different instances ever conflict.
//!
//! # Expiry
//!
//! `expire_at` fields are Firestore timestamps for TTL policies, which
//! delete a document some time (usually within a day) after its `expire_at`:
//!
//! ```text
//! gcloud firestore fields ttls update expire_at --collection-group=sessions --enable-ttl
//! gcloud firestore fields ttls update expire_at --collection-group=messages --enable-ttl
//! gcloud firestore fields ttls update expire_at --collection-group=rate_limits --enable-ttl
//! ```
//!
//! A rate-limit log always has one: when its last admission leaves the
//! window, after which the log decides nothing. Sessions and their messages have one
//! when a session TTL is set: each append moves the session's `expire_at` to
//! now + TTL, and messages expire TTL after they were written. A TTL policy
//! deletes documents one by one in no set order, so an expired session's
//! last messages may outlive its document; a session started again under
//! the same id numbers its messages after them rather than overwriting them.
//! Memories, tasks and task events never expire, as in SQLite.
//!
//! # Time bounds
//!
//! Every call answers within [`CALL_TIMEOUT`], with `Unavailable` when
//! Firestore does not, so that a request fails with a 503 instead of hanging
//! while Firestore is unreachable; each request to Firestore is also limited
//! to [`REQUEST_TIMEOUT`].
//!
//! # Counts
//!
//! Every call the store makes to Firestore is counted into `/metrics` by
//! kind, with the documents it read and wrote (`counts`): the calls go
//! through `Counts` where they are made (`cas::read` for gets,
//! `cas::commit` for commits, `Counts::query` around each query), so a
//! call run again is counted again. Requests the client library sends again
//! by itself (a failed read, once: `READ_RETRIES`) are not seen.

mod cache;
mod callback;
mod cancel;
mod cas;
mod counts;
mod fan;
mod ids;
mod listing;
mod memory;
mod rate_limits;
mod sessions;
mod sweep;
mod tail;
mod task_doc;
mod tasks;
mod usage;

use std::future::Future;
use std::time::{Duration, SystemTime};

use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use firestore::gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreTimestamp};
use serde::Deserialize;

use self::cas::KeyLocks;
use self::counts::Counts;
use self::ids::is_document_id;
use super::{StoreError, rfc3339};
use crate::http::Metrics;

/// The longest any store call takes before it answers `Unavailable`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`FirestoreStore::connect`] waits for its first answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one request to Firestore takes; a call makes a few.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of one read-modify-write at most, the first included.
pub const MAX_ATTEMPTS: u32 = 30;
/// How long a read-modify-write is tried again; less than [`CALL_TIMEOUT`],
/// so that a contended call reports the contention, not a timeout.
pub const RETRY_BUDGET: Duration = Duration::from_secs(9);
/// Messages a session document's tail keeps unless told otherwise:
/// `HISTORY_LIMIT`'s default.
const DEFAULT_SESSION_TAIL: usize = 20;
/// Times the client sends a failed read again (after a random wait of up to
/// 1 s): once, as the calls that write run again on their own.
const READ_RETRIES: usize = 1;

/// The document Firestore sends back after a write, not needed: whatever it
/// holds, reading it as this never fails a write that succeeded.
#[derive(Debug, Deserialize)]
struct Written {}

pub struct FirestoreStore {
    db: FirestoreDb,
    /// Which project and database, for errors: `project P, database D`.
    target: String,
    session_ttl: Option<Duration>,
    /// Messages a session document's tail keeps: [`Self::with_session_tail`].
    session_tail: usize,
    locks: KeyLocks,
    counts: Counts,
}

/// Shorthand for [`FirestoreStore::connect`].
pub async fn connect(
    project: &str,
    database: &str,
    session_ttl: Option<Duration>,
    metrics: &Metrics,
) -> anyhow::Result<FirestoreStore> {
    FirestoreStore::connect(project, database, session_ttl, metrics).await
}

impl FirestoreStore {
    /// Connects to `database` of `project`: the emulator when
    /// `FIRESTORE_EMULATOR_HOST` is set, else Firestore with the Application
    /// Default Credentials. Reads once, so that a wrong project or database,
    /// missing credentials or an unreachable emulator stop the process
    /// before it serves rather than failing its requests. Its calls to
    /// Firestore are counted into `metrics` (`store_operations_total` and
    /// `store_documents_total`, see the module's counts section).
    pub async fn connect(
        project: &str,
        database: &str,
        session_ttl: Option<Duration>,
        metrics: &Metrics,
    ) -> anyhow::Result<FirestoreStore> {
        FirestoreStore::connect_to(None, project, database, session_ttl, metrics).await
    }

    /// [`connect`](Self::connect), to the emulator at `emulator_host`
    /// (`host:port`) when one is given, whatever `FIRESTORE_EMULATOR_HOST`
    /// says: for tests, which may not change the environment.
    pub async fn connect_to(
        emulator_host: Option<&str>,
        project: &str,
        database: &str,
        session_ttl: Option<Duration>,
        metrics: &Metrics,
    ) -> anyhow::Result<FirestoreStore> {
        let store = FirestoreStore::open_to(emulator_host, project, database, session_ttl, metrics).await?;
        store.check().await?;
        Ok(store)
    }

    /// [`connect_to`](Self::connect_to) without its [`check`](Self::check):
    /// the connection is open (an unreachable emulator or endpoint fails
    /// here), but nothing has yet shown that the project, the database and
    /// the credentials are good. For a process that starts serving at once
    /// and checks beside its first requests.
    pub async fn open_to(
        emulator_host: Option<&str>,
        project: &str,
        database: &str,
        session_ttl: Option<Duration>,
        metrics: &Metrics,
    ) -> anyhow::Result<FirestoreStore> {
        let at = emulator_host.map(|h| format!(", emulator {h}")).unwrap_or_default();
        let target = format!("project {project}, database {database}{at}");
        let options = FirestoreDbOptions::new(project.to_string())
            .with_database_id(database.to_string())
            .with_max_retries(READ_RETRIES)
            .with_request_timeout(REQUEST_TIMEOUT);
        let attempt = async {
            match emulator_host {
                Some(host) => {
                    let url = if host.contains("://") {
                        host.to_string()
                    } else {
                        format!("http://{host}")
                    };
                    FirestoreDb::with_options_auth(options.with_firebase_api_url(url), EmulatorOwner::credentials())
                        .await
                }
                None => FirestoreDb::with_options(options).await,
            }
        };
        let cause = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(db)) => {
                return Ok(FirestoreStore {
                    db,
                    target,
                    session_ttl,
                    session_tail: DEFAULT_SESSION_TAIL,
                    locks: KeyLocks::default(),
                    counts: Counts::new(metrics),
                });
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer".to_string(),
        };
        Err(unreachable(&target, &cause))
    }

    /// Reads once, so that a wrong project or database, or credentials
    /// Firestore refuses, show up as one clear error at start-up rather
    /// than on every request.
    pub async fn check(&self) -> anyhow::Result<()> {
        // A query, not a get: a get answers NOT_FOUND for a missing document
        // and for a missing database alike, a query only for the latter.
        let query = self
            .counts
            .query(self.db.fluent().select().from("_meta").limit(1).query());
        match tokio::time::timeout(CONNECT_TIMEOUT, query).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(unreachable(&self.target, &err.to_string())),
            Err(_) => Err(unreachable(&self.target, "no answer")),
        }
    }

    /// Keeps the last `messages` of each session in its document, so that a
    /// chat turn asking for at most that many reads no query: set it to the
    /// history limit (`HISTORY_LIMIT`). At most 1,000.
    pub fn with_session_tail(mut self, messages: usize) -> FirestoreStore {
        self.session_tail = messages.min(1000);
        self
    }

    fn documents(&self) -> &str {
        self.db.get_documents_path()
    }

    /// The path of a top-level document; an error naming `what` when `id`
    /// cannot be a document id.
    fn doc_path(&self, collection: &str, id: &str, what: &str) -> Result<String, StoreError> {
        if !is_document_id(id) {
            return Err(StoreError::Internal(format!(
                "{what} {id:?} cannot be a Firestore document id"
            )));
        }
        Ok(format!("{}/{collection}/{id}", self.documents()))
    }
}

fn unreachable(target: &str, cause: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach Firestore ({target}) within {} s: {cause}. \
         Check FIRESTORE_PROJECT / credentials, or FIRESTORE_EMULATOR_HOST for the emulator",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// Bounds a call in time, so that it answers `Unavailable` when Firestore
/// does not.
async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "Firestore did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        )))
    })
}

fn timestamp(t: SystemTime) -> Result<FirestoreTimestamp, FirestoreError> {
    FirestoreTimestamp::try_from(t)
}

fn time_of(t: FirestoreTimestamp) -> String {
    rfc3339(SystemTime::from(t))
}

fn query_limit(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

/// Credentials for an emulator named explicitly: the stub token the
/// emulators take from admin clients, and no lookup of Google credentials,
/// which a test machine does not have.
#[derive(Debug)]
struct EmulatorOwner {
    tag: EntityTag,
}

impl EmulatorOwner {
    fn credentials() -> Credentials {
        Credentials::from(EmulatorOwner { tag: EntityTag::new() })
    }
}

impl CredentialsProvider for EmulatorOwner {
    async fn headers(
        &self,
        extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer owner"),
        );
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RateLimit;
    use crate::llm::Role;
    use crate::store::{DOCUMENTS, OPERATIONS};
    use crate::store::{MemoryStore, NewMessage, RateLimitStore, SessionStore};

    pub(super) fn emulator() -> String {
        match std::env::var("FIRESTORE_EMULATOR_HOST") {
            Ok(host) if !host.is_empty() => host,
            _ => {
                panic!("FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test.sh, which starts the Firestore emulator")
            }
        }
    }

    pub(super) async fn store(host: &str, project: &str) -> Arc<FirestoreStore> {
        let store = FirestoreStore::connect_to(Some(host), project, "(default)", None, &Metrics::new("test")).await;
        Arc::new(store.unwrap_or_else(|err| panic!("{err:#}")))
    }

    /// Turn `i`: the user's `q{i}` and the model's `a{i}`.
    pub(super) fn question_and_answer(i: usize) -> [NewMessage; 2] {
        [
            NewMessage {
                role: Role::User,
                content: format!("q{i}"),
            },
            NewMessage {
                role: Role::Model,
                content: format!("a{i}"),
            },
        ]
    }

    pub(super) fn project() -> String {
        format!("unit-{}", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn two_stores_on_one_database_limit_and_append_together() {
        // Two stores stand for two instances: their local locks do not see
        // each other, so only the conditional commits keep them exact.
        let (host, project) = (emulator(), project());
        let (a, b) = (store(&host, &project).await, store(&host, &project).await);
        let limit = RateLimit {
            max: 15,
            window: Duration::from_secs(3600),
        };
        let now = SystemTime::now();
        let started = std::time::Instant::now();
        let hits = (0..40).map(|i| {
            let limits = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { limits.admit("shared:key", limit, now).await.map(|w| w.admitted) })
        });
        let admitted = futures_util::future::join_all(hits)
            .await
            .into_iter()
            .filter(|c| *c.as_ref().expect("task").as_ref().expect("admit"))
            .count();
        assert_eq!(admitted, 15);
        let hits_took = started.elapsed();

        let started = std::time::Instant::now();
        let appends = (0..40).map(|i| {
            let sessions = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { sessions.append("shared-session", &question_and_answer(i)).await })
        });
        for r in futures_util::future::join_all(appends).await {
            r.expect("task").expect("append");
        }
        let all = a.messages("shared-session").await.expect("messages").expect("exists");
        assert_eq!(all.len(), 80);
        for pair in all.chunks(2) {
            assert_eq!(pair[1].content, pair[0].content.replacen('q', "a", 1));
        }
        eprintln!(
            "40 rate-limited requests took {hits_took:?}, 40 appends {:?}",
            started.elapsed()
        );
    }

    /// What the store asked of Firestore, read off `store_operations_total`
    /// and `store_documents_total`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub(super) struct Cost {
        pub(super) get: u64,
        pub(super) query: u64,
        pub(super) begin_transaction: u64,
        pub(super) commit: u64,
        pub(super) write: u64,
        pub(super) read: u64,
        pub(super) written: u64,
    }

    impl Cost {
        fn of(metrics: &Metrics) -> Cost {
            let op = |op| metrics.counter(OPERATIONS, &[("store", "firestore"), ("op", op)]);
            let docs = |kind| metrics.counter(DOCUMENTS, &[("store", "firestore"), ("kind", kind)]);
            Cost {
                get: op("get"),
                query: op("query"),
                begin_transaction: op("begin_transaction"),
                commit: op("commit"),
                write: op("write"),
                read: docs("read"),
                written: docs("written"),
            }
        }

        /// What `call` cost, counted on `metrics`.
        pub(super) async fn measure<T>(metrics: &Metrics, call: impl Future<Output = T>) -> (T, Cost) {
            let before = Cost::of(metrics);
            let out = call.await;
            let after = Cost::of(metrics);
            let cost = Cost {
                get: after.get - before.get,
                query: after.query - before.query,
                begin_transaction: after.begin_transaction - before.begin_transaction,
                commit: after.commit - before.commit,
                write: after.write - before.write,
                read: after.read - before.read,
                written: after.written - before.written,
            };
            (out, cost)
        }
    }

    /// How many messages a chat turn reads back: `HISTORY_LIMIT`'s default.
    const HISTORY_LIMIT: usize = 20;
    /// Turns already in the session before the measured one.
    const EARLIER_TURNS: usize = 2;

    /// What one chat turn on an existing session costs: the history from the
    /// session document's tail, then the append from that same read.
    const TURN_ON_EXISTING_SESSION: Cost = Cost {
        // `history`: the session document, whose tail is the history and
        // whose counter numbers the turn. No query.
        get: 1,
        query: 0,
        // `append_after`: one commit, with no transaction to open for it…
        begin_transaction: 0,
        commit: 1,
        write: 0,
        read: 1,
        // …of the user's message, the answer, the session document (with
        // its usage totals) and the owner's day record (`usage`: increment
        // transforms, no read).
        written: 4,
    };

    /// A new session's first turn: the get finds nothing (0 read), and no
    /// query looks for what an expired session may have left.
    const FIRST_TURN_OF_A_NEW_SESSION: Cost = Cost {
        read: 0,
        ..TURN_ON_EXISTING_SESSION
    };

    /// A rate-limited request refused: one get of the key's log, no commit.
    const RATE_LIMIT_REFUSED: Cost = Cost {
        get: 1,
        query: 0,
        begin_transaction: 0,
        commit: 0,
        write: 0,
        read: 1,
        written: 0,
    };

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_chat_turn_is_one_read_and_one_commit_a_rate_limit_hit_at_most_that_and_so_on() {
        let metrics = Metrics::new("test");
        let store = FirestoreStore::connect_to(Some(&emulator()), &project(), "(default)", None, &metrics)
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        let turn = question_and_answer;
        // What chat_function does with a turn: the history, then the append.
        let chat_turn = |session: &'static str, i: usize| {
            let store = &store;
            async move {
                let history = store.history(session, HISTORY_LIMIT).await.expect("history");
                let charge = crate::store::Charge::now("m", crate::store::contract::spend(i as u64));
                store
                    .append_after(session, &history, &turn(i), Some(&charge))
                    .await
                    .expect("append");
                history.messages.len()
            }
        };

        let (history, first) = Cost::measure(&metrics, chat_turn("s", 0)).await;
        assert_eq!(history, 0);
        assert_eq!(first, FIRST_TURN_OF_A_NEW_SESSION, "a new session's first turn");
        for i in 1..EARLIER_TURNS {
            chat_turn("s", i).await;
        }
        let (history, cost) = Cost::measure(&metrics, chat_turn("s", EARLIER_TURNS)).await;
        assert_eq!(history, 2 * EARLIER_TURNS);
        assert_eq!(cost, TURN_ON_EXISTING_SESSION, "a turn on an existing session");
        // Past the history limit, the tail still covers the turn.
        for i in EARLIER_TURNS + 1..HISTORY_LIMIT {
            chat_turn("s", i).await;
        }
        let (history, cost) = Cost::measure(&metrics, chat_turn("s", HISTORY_LIMIT)).await;
        assert_eq!(history, HISTORY_LIMIT);
        assert_eq!(cost, TURN_ON_EXISTING_SESSION, "a turn on a session past the limit");
        assert_eq!(
            metrics.counter("store_history_fallbacks_total", &[("store", "firestore")]),
            0
        );

        // A rate-limited request: the key's log read, and written back only
        // when admitted.
        let limit = RateLimit {
            max: 2,
            window: Duration::from_secs(3600),
        };
        let now = SystemTime::now();
        let (hit, cost) = Cost::measure(&metrics, store.admit("client", limit, now)).await;
        assert!(hit.expect("admit").admitted);
        let admitted = Cost {
            get: 1,
            commit: 1,
            written: 1,
            ..Cost::default()
        };
        assert_eq!(cost, admitted, "a new key's first request");
        let (hit, cost) = Cost::measure(&metrics, store.admit("client", limit, now)).await;
        assert!(hit.expect("admit").admitted);
        assert_eq!(cost, Cost { read: 1, ..admitted }, "a request within the limit");
        let (hit, cost) = Cost::measure(&metrics, store.admit("client", limit, now)).await;
        assert!(!hit.expect("admit").admitted);
        assert_eq!(cost, RATE_LIMIT_REFUSED, "a request over the limit writes nothing");

        // A fact remembered: the entry and the counter in one batched get,
        // then one commit (the entry, and for a new fact the counter too).
        let (_, cost) = Cost::measure(&metrics, store.remember("s", "colour", "blue")).await;
        let new_fact = Cost {
            get: 1,
            commit: 1,
            written: 2,
            ..Cost::default()
        };
        assert_eq!(cost, new_fact, "the first fact of a session");
        let (_, cost) = Cost::measure(&metrics, store.remember("s", "shape", "round")).await;
        assert_eq!(cost, Cost { read: 1, ..new_fact }, "a new fact: the counter is read");
        let (_, cost) = Cost::measure(&metrics, store.remember("s", "Colour", "green")).await;
        let again = Cost {
            read: 2,
            written: 1,
            ..new_fact
        };
        assert_eq!(cost, again, "a fact told again: both read, the entry written");
    }

    /// The raw fields of the document `id` of `collection` under `parent`
    /// (a document path, or the database's documents path), as stored.
    pub(super) async fn raw_fields(
        store: &FirestoreStore,
        parent: &str,
        collection: &str,
        id: &str,
    ) -> std::collections::HashMap<String, firestore::gcloud_sdk::google::firestore::v1::Value> {
        store
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .parent(parent)
            .one(id)
            .await
            .unwrap_or_else(|err| panic!("read {parent}/{collection}/{id}: {err}"))
            .unwrap_or_else(|| panic!("{parent}/{collection}/{id} does not exist"))
            .fields
    }

    /// The `expire_at` field of `fields` as a time: `None` when it is absent,
    /// a panic when it is there but not a timestamp.
    pub(super) fn expire_at(
        fields: &std::collections::HashMap<String, firestore::gcloud_sdk::google::firestore::v1::Value>,
    ) -> Option<SystemTime> {
        use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
        let value = fields.get("expire_at")?;
        match &value.value_type {
            Some(ValueType::TimestampValue(t)) => {
                let seconds = u64::try_from(t.seconds).expect("expire_at after 1970");
                let nanos = u32::try_from(t.nanos).expect("nanos in range");
                Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
            }
            other => panic!("expire_at is not a timestamp: {other:?}"),
        }
    }

    /// `a - b` in seconds, negative when `a` is before `b`.
    pub(super) fn seconds_between(a: SystemTime, b: SystemTime) -> f64 {
        match a.duration_since(b) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}
