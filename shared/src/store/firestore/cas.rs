//! Read-modify-writes as compare-and-set: read the documents a decision
//! rests on, then write in one atomic commit whose every write is
//! conditioned on its document being as it was read; run it all again when
//! another writer got there first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tracing::Instrument;

use firestore::FirestoreDb;
use firestore::errors::FirestoreDatabaseError;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{
    BatchGetDocumentsRequest, CommitRequest, Document, Precondition, Write, WriteResult, batch_get_documents_response,
    precondition, write,
};
use firestore::gcloud_sdk::tonic;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Counts, MAX_ATTEMPTS, REQUEST_TIMEOUT, RETRY_BUDGET};
use crate::retry::{Backoff, Jitter};
use crate::store::StoreError;

/// The first retry waits up to this long, each next one up to twice as long…
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// …up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Runs again after a failure that is not a conflict.
const OUTAGE_RETRIES: u32 = 2;
/// Past this many locks in the table, the next new one first sweeps out the
/// unused (the threshold then doubles from what is left, so sweeping costs
/// O(1) a lock).
const MIN_SWEEP: usize = 1024;

/// A document as read, and the precondition that it is still so.
pub(super) struct Read<T> {
    pub value: Option<T>,
    /// Its update time when it exists, its absence when it does not.
    pub unchanged: Precondition,
}

/// Reads one document of `collection` under `parent` (a document path, or
/// the database's documents path for a top-level collection): one get,
/// counted.
pub(super) async fn read<T: DeserializeOwned>(
    counts: &Counts,
    db: &FirestoreDb,
    parent: &str,
    collection: &str,
    id: &str,
) -> Result<Read<T>, FirestoreError> {
    counts.get();
    let doc = db
        .fluent()
        .select()
        .by_id_in(collection)
        .parent(parent)
        .one(id)
        .instrument(crate::store::span("firestore", "get"))
        .await?;
    if doc.is_some() {
        counts.found();
    }
    as_read(doc)
}

/// Reads the documents at `a` and `b` (full paths, in any collections) in
/// one request: a batched get, counted as one get.
pub(super) async fn read_two<A: DeserializeOwned, B: DeserializeOwned>(
    counts: &Counts,
    db: &FirestoreDb,
    a: &str,
    b: &str,
) -> Result<(Read<A>, Read<B>), FirestoreError> {
    let mut request = tonic::Request::new(BatchGetDocumentsRequest {
        database: db.get_database_path().clone(),
        documents: vec![a.to_string(), b.to_string()],
        ..Default::default()
    });
    request.set_timeout(REQUEST_TIMEOUT);
    counts.get();
    let found = async {
        let mut answers = db.client().get().batch_get_documents(request).await?.into_inner();
        let (mut found_a, mut found_b) = (None, None);
        while let Some(answer) = answers.message().await? {
            if let Some(batch_get_documents_response::Result::Found(doc)) = answer.result {
                counts.found();
                if doc.name == a {
                    found_a = Some(doc);
                } else if doc.name == b {
                    found_b = Some(doc);
                }
            }
        }
        Ok::<_, FirestoreError>((found_a, found_b))
    };
    let (found_a, found_b) = found.instrument(crate::store::span("firestore", "get")).await?;
    Ok((as_read(found_a)?, as_read(found_b)?))
}

fn as_read<T: DeserializeOwned>(doc: Option<Document>) -> Result<Read<T>, FirestoreError> {
    Ok(match doc {
        None => Read {
            value: None,
            unchanged: exists(false),
        },
        Some(doc) => Read {
            value: Some(FirestoreDb::deserialize_doc_to(&doc)?),
            unchanged: match doc.update_time {
                Some(t) => Precondition {
                    condition_type: Some(precondition::ConditionType::UpdateTime(t)),
                },
                None => exists(true),
            },
        },
    })
}

pub(super) fn exists(exists: bool) -> Precondition {
    Precondition {
        condition_type: Some(precondition::ConditionType::Exists(exists)),
    }
}

/// Writes `obj` whole at `path`.
pub(super) fn put<T: Serialize>(path: &str, obj: &T, only_if: Option<Precondition>) -> Result<Write, FirestoreError> {
    Ok(Write {
        update_mask: None,
        update_transforms: Vec::new(),
        current_document: only_if,
        operation: Some(write::Operation::Update(FirestoreDb::serialize_to_doc(path, obj)?)),
    })
}

pub(super) fn delete(path: String, only_if: Option<Precondition>) -> Write {
    Write {
        update_mask: None,
        update_transforms: Vec::new(),
        current_document: only_if,
        operation: Some(write::Operation::Delete(path)),
    }
}

/// Runs `body` (reads, returning a value and the writes to make) and commits
/// its writes atomically. Both run again after a random backoff while the
/// commit meets a conflict, up to [`MAX_ATTEMPTS`] times within
/// [`RETRY_BUDGET`], and at most [`OUTAGE_RETRIES`] times after a passing
/// failure (Firestore unreachable or overloaded), so that a call fails fast
/// while Firestore is down. `body` must read what it decides on every time,
/// and condition its writes on it (see [`read`]).
pub(super) async fn commit_if_unchanged<T, F, Fut>(
    counts: &Counts,
    db: &FirestoreDb,
    what: &str,
    body: F,
) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(T, Vec<Write>), FirestoreError>>,
{
    let started = Instant::now();
    let (mut attempt, mut outages) = (0, 0);
    loop {
        attempt += 1;
        let (err, conflicted) = match body().await {
            Err(err) if retryable(&err) => (err, false),
            Err(err) => return Err(classify(err)),
            Ok((value, writes)) => match commit(counts, db, writes).await {
                Ok(_) => return Ok(value),
                Err(err) if conflict(&err) => (err, true),
                Err(err) if retryable(&err) => (err, false),
                Err(err) => return Err(classify(err)),
            },
        };
        if !conflicted {
            outages += 1;
            if outages > OUTAGE_RETRIES {
                return Err(classify(err));
            }
        }
        let delay = backoff(attempt);
        if attempt >= MAX_ATTEMPTS || started.elapsed() + delay > RETRY_BUDGET {
            return Err(StoreError::Unavailable(format!(
                "{what}: gave up after {attempt} attempts in {:.1} s; last: {err}",
                started.elapsed().as_secs_f64()
            )));
        }
        tracing::debug!(%err, attempt, ?delay, "{what}: trying again");
        tokio::time::sleep(delay).await;
    }
}

/// Applies `writes` all or none, with their preconditions: one `Commit`
/// request outside any transaction (a batched write, atomic all the same).
/// The crate's fluent API commits atomically only in a transaction, and
/// opening one costs a `BeginTransaction` round trip before every commit;
/// the preconditions already say what a transaction would check, so the
/// commit goes straight to the gRPC client (pinned by `Cargo.lock`).
async fn commit(counts: &Counts, db: &FirestoreDb, writes: Vec<Write>) -> Result<Vec<WriteResult>, FirestoreError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let n = writes.len();
    let mut request = tonic::Request::new(CommitRequest {
        database: db.get_database_path().clone(),
        writes,
        transaction: Vec::new(),
        request_options: None,
    });
    request.set_timeout(REQUEST_TIMEOUT);
    counts.commit();
    let response = db
        .client()
        .get()
        .commit(request)
        .instrument(crate::store::span("firestore", "commit"))
        .await
        .map_err(|status| {
            // Only an abort is sure to have written nothing; after any other
            // failure (a dropped connection) the writes may have been applied,
            // and running the call again could apply them twice.
            let retry_possible = status.code() == tonic::Code::Aborted;
            match FirestoreError::from(status) {
                FirestoreError::DatabaseError(e) => {
                    FirestoreError::DatabaseError(FirestoreDatabaseError { retry_possible, ..e })
                }
                other => other,
            }
        })?;
    counts.written(n);
    Ok(response.into_inner().write_results)
}

/// A commit refused because a document was no longer as read: written
/// (FAILED_PRECONDITION), created (ALREADY_EXISTS) or deleted (NOT_FOUND)
/// by someone else in the meantime, or contention (ABORTED).
fn conflict(err: &FirestoreError) -> bool {
    match err {
        FirestoreError::DataConflictError(_) | FirestoreError::DataNotFoundError(_) => true,
        FirestoreError::DatabaseError(e) => matches!(e.public.code.as_str(), "FailedPrecondition" | "Aborted"),
        _ => false,
    }
}

/// A failure that running the call again may cure, with nothing written:
/// Firestore unreachable, overloaded or aborting. A commit that fails
/// otherwise may have been applied, and the client marks it not retryable.
fn retryable(err: &FirestoreError) -> bool {
    match err {
        FirestoreError::DatabaseError(e) => e.retry_possible,
        FirestoreError::NetworkError(_) => true,
        _ => false,
    }
}

/// Worth retrying later (`Unavailable`, answered 503) or not (`Internal`).
///
/// A query whose composite index is missing fails with
/// `FailedPrecondition` ("The query requires an index"): on a new
/// deployment that is an index `deploy.sh` created and Firestore is still
/// building, which a retry in a few minutes cures, so it is `Unavailable`,
/// with a detail (for the log) that says which.
pub(super) fn classify(err: FirestoreError) -> StoreError {
    if let FirestoreError::DatabaseError(e) = &err
        && e.public.code == "FailedPrecondition"
        && e.details.contains("index")
    {
        return StoreError::Unavailable(format!(
            "a composite index this query needs is missing or still building (deploy.sh creates them; \
             the README's Firestore section lists them): {err}"
        ));
    }
    const TRANSIENT: [&str; 8] = [
        "Unavailable",
        "DeadlineExceeded",
        "Aborted",
        "ResourceExhausted",
        "Cancelled",
        "CONNECTION_CLOSED",
        "CONNECTION_TIMEOUT",
        "CONNECTION_ERROR",
    ];
    let transient = match &err {
        FirestoreError::DatabaseError(e) => e.retry_possible || TRANSIENT.contains(&e.public.code.as_str()),
        FirestoreError::NetworkError(_) => true,
        _ => false,
    };
    if transient {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Internal(err.to_string())
    }
}

/// A random wait before retry number `attempt` (1 for the first): up to
/// [`FIRST_BACKOFF`] doubled each time, at most [`MAX_BACKOFF`]. Wholly
/// random ("full jitter"), so that writers that collided spread out.
fn backoff(attempt: u32) -> Duration {
    Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, Jitter::Full).delay(attempt.saturating_sub(1))
}

/// One lock per document path, so that the calls of one process that change
/// one document take turns instead of conflicting: only calls from different
/// processes ever retry.
#[derive(Default)]
pub(super) struct KeyLocks {
    table: Mutex<LockTable>,
}

#[derive(Default)]
struct LockTable {
    locks: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

impl KeyLocks {
    /// Waits for `key`'s turn (first come, first served); it lasts until the
    /// guard drops.
    pub(super) async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock_telling_wait(key).await.0
    }

    /// [`lock`](Self::lock), and whether it had to wait: another call of
    /// this process changed the document meanwhile, so what was read of it
    /// before is likely out of date.
    pub(super) async fn lock_telling_wait(&self, key: &str) -> (tokio::sync::OwnedMutexGuard<()>, bool) {
        let lock = {
            let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
            match table.locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if table.locks.len() >= table.sweep_at.max(MIN_SWEEP) {
                        table.locks.retain(|_, lock| lock.strong_count() > 0);
                        table.sweep_at = table.locks.len() * 2;
                    }
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    table.locks.insert(key.to_string(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        match lock.clone().try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (lock.lock_owned().await, true),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).locks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(1) <= FIRST_BACKOFF);
        for attempt in 1..=MAX_ATTEMPTS + 40 {
            assert!(backoff(attempt) <= MAX_BACKOFF);
        }
    }

    #[test]
    fn outages_are_unavailable_and_the_rest_internal() {
        use firestore::gcloud_sdk::tonic::{Code, Status};
        let status = |code| FirestoreError::from(Status::new(code, "x"));
        for code in [
            Code::Aborted,
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(matches!(classify(status(code)), StoreError::Unavailable(_)), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::NotFound,
        ] {
            assert!(matches!(classify(status(code)), StoreError::Internal(_)), "{code:?}");
        }
        for code in [
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::NotFound,
            Code::Aborted,
        ] {
            assert!(conflict(&status(code)), "{code:?}");
        }
        assert!(!conflict(&status(Code::InvalidArgument)));

        // A listing before its index is built: retry later (503), and the
        // log says why.
        let building = FirestoreError::from(Status::new(
            Code::FailedPrecondition,
            "The query requires an index. You can create it here: https://console.firebase.google.com/...",
        ));
        match classify(building) {
            StoreError::Unavailable(detail) => assert!(detail.contains("composite index"), "{detail}"),
            other => panic!("a missing index is worth a retry: {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_key_takes_turns_and_unused_locks_are_swept() {
        let locks = KeyLocks::default();
        let first = locks.lock("a").await;
        let second = locks.lock("a");
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut second)
                .await
                .is_err(),
            "the second waits"
        );
        let _other = locks.lock("b").await;
        drop(first);
        drop(
            tokio::time::timeout(Duration::from_secs(1), second)
                .await
                .expect("then it has its turn"),
        );
        for i in 0..3 * MIN_SWEEP {
            drop(locks.lock(&format!("k{i}")).await);
        }
        assert!(locks.len() <= 2 * MIN_SWEEP, "{}", locks.len());
    }
}
