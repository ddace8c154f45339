//! [`SessionStore`] on Firestore.
//!
//! - `sessions/{session_id}`: `{owner, next_seq, first_seq, tail,
//!   created_at, updated_at, expire_at?}`. `owner` is the owner part of the
//!   session's key (`owned::key_owner`), written with every append, for
//!   `list_sessions` (in `listing`). `next_seq` is the counter that hands out the
//!   session's sequence numbers; `tail` is a copy of the most recent
//!   messages (`{seq, role, content, created_at}`, oldest first), and
//!   `first_seq` the number the document started at, so that a tail that
//!   begins there holds the whole session. `usage` sums what its charged
//!   turns spent, written by the same commit (`usage`), as is the owner's
//!   day record.
//! - `sessions/{session_id}/messages/{seq}`, the id being `seq` zero-padded
//!   to 12 digits so that the console lists a session in order:
//!   `{seq, role ("user" | "model"), content, created_at, expire_at?}`.
//!   A document per message in a subcollection, never an array of them all
//!   in the session document: a document holds at most 1 MiB and is
//!   rewritten whole on every change, so an array would cap a session's
//!   length and make each append cost the whole history. The subcollection
//!   is the full history; the tail is bounded.
//!
//! # A turn: one read, one commit
//!
//! A chat turn reads the session document alone ([`SessionStore::history`]):
//! its tail is the history the model gets and its counter numbers the turn,
//! so no query runs. The append after the model call
//! ([`SessionStore::append_after`]) starts from that read and commits the
//! messages (each only if it does not exist) with the session document, its
//! counter advanced and its tail moved on (only if the document is as read),
//! in one conditional commit ([`super::cas`]): a turn is stored whole or not
//! at all, and two appends never get the same numbers. When another append
//! got there first, the commit fails whole and the append reads the
//! document again and recomputes the tail; the model is never called again.
//!
//! The tail holds the last [`FirestoreStore::with_session_tail`] messages
//! (`HISTORY_LIMIT`), fewer when they would pass [`TAIL_BYTES`]: the
//! document stays far below Firestore's 1 MiB whatever `MAX_MESSAGE_CHARS`
//! allows. A history the tail cannot cover (very large messages, a longer
//! limit, a session written before tails) is read with a query, counted in
//! `store_history_fallbacks_total`, and the turn's append then writes a tail
//! that covers it.
//!
//! `messages` reads in one read-only transaction, so the existence check and
//! the messages agree. A delete goes in chunks, the session document last
//! and only if no append came in between.
//!
//! # Sessions that expired
//!
//! A TTL policy may delete an expired session's document before its last
//! messages ([`super`], expiry). A session started again under that id
//! begins with an empty tail (the expired history is not the new session's)
//! and numbers its messages from 1; as the messages are only ever created,
//! never overwritten, a leftover at one of those numbers fails the commit,
//! and the append then looks up the highest number in use (one query, only
//! then) and numbers after it.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::{Precondition, Write};
use firestore::{
    FirestoreConsistencySelector, FirestoreDb, FirestoreTimestamp, FirestoreTransactionMode,
    FirestoreTransactionOptions,
};
use serde::{Deserialize, Serialize};

use super::cas::{Read, classify, commit_if_unchanged, delete, exists, put, read};
use super::ids::is_document_id;
use super::tail::{self, TailMessage};
use super::usage::{TotalsDoc, charge_day};
use super::{Counts, FirestoreStore, bounded, query_limit, timestamp};
use crate::owned;
use crate::store::{
    Charge, History, NewMessage, Page, SessionPosition, SessionStore, SessionSummary, StoreError, StoredMessage,
    Totals, rfc3339,
};

/// Messages deleted per commit: a commit stays small (Firestore long capped
/// one at 500 writes).
const DELETE_CHUNK: usize = 400;

pub(super) const SESSIONS: &str = "sessions";
pub(super) const MESSAGES: &str = "messages";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionDoc {
    /// Whose session it is, as its key writes it (`owned::key_owner`), for
    /// listings; absent in documents written before listings, which gain it
    /// with their next append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    next_seq: i64,
    /// The number the document started at; absent in documents written
    /// before tails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_seq: Option<i64>,
    #[serde(default)]
    tail: Vec<TailMessage>,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<FirestoreTimestamp>,
    /// What the session's charged turns spent (`usage`); absent until one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usage: Option<TotalsDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MessageDoc {
    seq: i64,
    role: String,
    content: String,
    created_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<FirestoreTimestamp>,
}

/// What a turn's history read, handed back (in a [`History`]) to the
/// append after the model call.
struct TurnRead {
    session_path: String,
    session: Read<SessionDoc>,
    /// The history, when the tail could not give it and a query found it:
    /// the next tail starts from it.
    queried: Option<Vec<TailMessage>>,
    /// Whether `queried` is the whole session (fewer than asked for).
    queried_whole: bool,
}

impl FirestoreStore {
    fn expiry(&self, now: SystemTime) -> Result<Option<FirestoreTimestamp>, FirestoreError> {
        self.session_ttl.map(|ttl| timestamp(now + ttl)).transpose()
    }

    async fn history_now(&self, session_id: &str, limit: usize) -> Result<History, StoreError> {
        if !is_document_id(session_id) {
            return Ok(History::default());
        }
        let session_path = format!("{}/{SESSIONS}/{session_id}", self.documents());
        let session = read::<SessionDoc>(&self.counts, &self.db, self.documents(), SESSIONS, session_id)
            .await
            .map_err(classify)?;
        let from_tail = match &session.value {
            // A new session (or one whose document expired): no history.
            None => Some(Vec::new()),
            Some(doc) => tail::history(&doc.tail, doc.first_seq, doc.next_seq, limit),
        };
        let (messages, queried, queried_whole) = match from_tail {
            Some(messages) => (messages, None, false),
            None => {
                self.counts.history_fallback();
                let queried = self.query_recent(&session_path, limit).await?;
                let messages = queried.iter().map(TailMessage::to_stored).collect();
                let whole = queried.len() < limit;
                (messages, Some(queried), whole)
            }
        };
        let read = TurnRead {
            session_path,
            session,
            queried,
            queried_whole,
        };
        Ok(History::with_read(messages, read))
    }

    /// The last `limit` messages by a query, oldest first.
    async fn query_recent(&self, session_path: &str, limit: usize) -> Result<Vec<TailMessage>, StoreError> {
        let query = self
            .db
            .fluent()
            .select()
            .from(MESSAGES)
            .parent(session_path)
            .order(|o| o.fields([o.field("seq").descending()]))
            .limit(query_limit(limit))
            .obj()
            .query();
        let docs: Vec<MessageDoc> = self.counts.query(query).await.map_err(classify)?;
        Ok(docs.into_iter().rev().map(MessageDoc::into_tail).collect())
    }

    async fn append_now(
        &self,
        session_id: &str,
        messages: &[NewMessage],
        after: Option<&TurnRead>,
        charge: Option<&Charge>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let owner = owned::split_key(session_id).0;
        let owner = &owner;
        let session_path = &self.doc_path(SESSIONS, session_id, "the session id")?;
        let n = messages.len() as i64;
        let (_turn, waited) = self.locks.lock_telling_wait(session_path).await;
        // The turn's read serves the first attempt, if it is of this session
        // and no append of this process came in since (one that did makes
        // the read out of date, and the commit would only fail).
        let given = &Mutex::new(after.filter(|r| r.session_path == *session_path && !waited));
        // The session document as the previous attempt read it.
        let previous: &Mutex<Option<Precondition>> = &Mutex::new(None);
        commit_if_unchanged(&self.counts, &self.db, "append", move || async move {
            let now = SystemTime::now();
            let (ts, expire_at) = (timestamp(now)?, self.expiry(now)?);
            let given = given.lock().unwrap_or_else(PoisonError::into_inner).take();
            let fresh;
            let (session, queried, queried_whole) = match given {
                Some(r) => (&r.session, r.queried.as_deref(), r.queried_whole),
                None => {
                    fresh = read::<SessionDoc>(&self.counts, &self.db, self.documents(), SESSIONS, session_id).await?;
                    (&fresh, None, false)
                }
            };
            // The document has not changed since the attempt that failed, so
            // a message was in the way: one an expired session left behind.
            let blocked = {
                let mut previous = previous.lock().unwrap_or_else(PoisonError::into_inner);
                let blocked = previous.as_ref() == Some(&session.unchanged);
                *previous = Some(session.unchanged);
                blocked
            };
            let usage = session.value.as_ref().and_then(|doc| doc.usage).map(|u| u.totals());
            let usage = match charge {
                Some(charge) => Some(usage.unwrap_or_default().plus(charge.sum())),
                None => usage,
            };
            let (mut first, created_at, first_seq, base) = match &session.value {
                Some(doc) => {
                    let base = queried.map_or_else(|| doc.tail.clone(), <[TailMessage]>::to_vec);
                    // A document from before tails learns where it starts
                    // when a query found the whole session.
                    let first_seq = doc
                        .first_seq
                        .or_else(|| queried_whole.then(|| base.first().map_or(doc.next_seq, |m| m.seq)));
                    (doc.next_seq, doc.created_at, first_seq, base)
                }
                None => (1, ts, None, Vec::new()),
            };
            if blocked {
                first = first.max(first_free_seq(&self.counts, &self.db, session_path).await?);
            }
            // Reserve n sequence numbers: the session document's condition
            // makes the reservation and the messages one atomic step.
            let mut writes = Vec::with_capacity(messages.len() + 2);
            let mut stored = Vec::with_capacity(messages.len());
            let mut added = Vec::with_capacity(messages.len());
            for (i, m) in messages.iter().enumerate() {
                let seq = first + i as i64;
                let doc = MessageDoc {
                    seq,
                    role: m.role.as_str().to_string(),
                    content: m.content.clone(),
                    created_at: ts,
                    expire_at,
                };
                // A message is never overwritten, whatever the counter says.
                writes.push(put(&message_path(session_path, seq), &doc, Some(exists(false)))?);
                stored.push(StoredMessage {
                    seq: seq.max(0) as u64,
                    role: m.role,
                    content: m.content.clone(),
                    created_at: rfc3339(now),
                });
                added.push(TailMessage {
                    seq,
                    role: doc.role,
                    content: doc.content,
                    created_at: ts,
                });
            }
            let doc = SessionDoc {
                owner: Some(owner.clone()),
                next_seq: first + n,
                first_seq: first_seq.or(Some(first)),
                tail: tail::extend(base, added, self.session_tail),
                created_at,
                updated_at: ts,
                expire_at,
                usage: usage.map(TotalsDoc::of),
            };
            writes.push(put(session_path, &doc, Some(session.unchanged))?);
            // The owner's day record, in the same commit: it counts the
            // turn exactly when the turn is stored.
            if let Some(charge) = charge {
                writes.extend(charge_day(self.documents(), owner, charge)?);
            }
            Ok((stored, writes))
        })
        .await
    }

    async fn messages_now(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        if !is_document_id(session_id) {
            return Ok(None);
        }
        let session_path = format!("{}/{SESSIONS}/{session_id}", self.documents());
        // One read-only transaction (it locks nothing), so that the
        // existence check and the messages agree.
        self.counts.begin_transaction();
        let transaction = self
            .db
            .begin_transaction_with_options(
                FirestoreTransactionOptions::new().with_mode(FirestoreTransactionMode::ReadOnly),
            )
            .await
            .map_err(classify)?;
        let db = self
            .db
            .clone_with_consistency_selector(FirestoreConsistencySelector::Transaction(
                transaction.transaction_id().clone(),
            ));
        let result = async {
            let session = read::<SessionDoc>(&self.counts, &db, self.documents(), SESSIONS, session_id).await?;
            if session.value.is_none() {
                return Ok(None);
            }
            let query = db
                .fluent()
                .select()
                .from(MESSAGES)
                .parent(&session_path)
                .order(|o| o.fields([o.field("seq").ascending()]))
                .obj()
                .query();
            let docs: Vec<MessageDoc> = self.counts.query(query).await?;
            Ok(Some(docs.into_iter().map(to_message).collect()))
        }
        .await
        .map_err(classify);
        // Nothing to write or release: committing only ends it early, and
        // its failure changes nothing that was read.
        self.counts.commit();
        transaction.commit().await.ok();
        result
    }

    async fn delete_now(&self, session_id: &str) -> Result<bool, StoreError> {
        if !is_document_id(session_id) {
            return Ok(false);
        }
        let session_path = &format!("{}/{SESSIONS}/{session_id}", self.documents());
        let _turn = self.locks.lock(session_path).await;
        // At most DELETE_CHUNK messages a commit, the session document with
        // the last ones, and only if no append came in between: a delete cut
        // short leaves a session without its oldest messages, never
        // messages without their session.
        let mut existed = None;
        loop {
            let (exists_now, done) = commit_if_unchanged(&self.counts, &self.db, "delete", move || async move {
                let session =
                    read::<SessionDoc>(&self.counts, &self.db, self.documents(), SESSIONS, session_id).await?;
                let query = self
                    .db
                    .fluent()
                    .select()
                    .fields(["seq"])
                    .from(MESSAGES)
                    .parent(session_path)
                    .limit(query_limit(DELETE_CHUNK))
                    .query();
                let docs = self.counts.query(query).await?;
                let done = docs.len() < DELETE_CHUNK;
                let exists = session.value.is_some();
                let mut writes: Vec<Write> = docs.into_iter().map(|d| delete(d.name, None)).collect();
                if done && exists {
                    writes.push(delete(session_path.clone(), Some(session.unchanged)));
                }
                Ok(((exists, done), writes))
            })
            .await?;
            let existed = *existed.get_or_insert(exists_now);
            if done {
                return Ok(existed);
            }
        }
    }
}

pub(super) fn message_path(session_path: &str, seq: i64) -> String {
    format!("{session_path}/{MESSAGES}/{seq:012}")
}

/// The sequence number a new session starts at: 1, or after the messages an
/// expired session left behind (see the expiry section of [`super`]).
async fn first_free_seq(counts: &Counts, db: &FirestoreDb, session_path: &str) -> Result<i64, FirestoreError> {
    let query = db
        .fluent()
        .select()
        .from(MESSAGES)
        .parent(session_path)
        .order(|o| o.fields([o.field("seq").descending()]))
        .limit(1)
        .obj()
        .query();
    let last: Vec<MessageDoc> = counts.query(query).await?;
    Ok(last.first().map_or(1, |m| m.seq + 1))
}

impl MessageDoc {
    /// The message as a tail keeps it (and so as a history returns it).
    fn into_tail(self) -> TailMessage {
        TailMessage {
            seq: self.seq,
            role: self.role,
            content: self.content,
            created_at: self.created_at,
        }
    }
}

pub(super) fn to_message(doc: MessageDoc) -> StoredMessage {
    doc.into_tail().into_stored()
}

#[async_trait]
impl SessionStore for FirestoreStore {
    async fn append_charged(
        &self,
        session_id: &str,
        messages: &[NewMessage],
        charge: Option<&Charge>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        bounded(self.append_now(session_id, messages, None, charge)).await
    }

    async fn totals(&self, session_id: &str) -> Result<Option<Totals>, StoreError> {
        bounded(self.session_totals_now(session_id)).await
    }

    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(bounded(self.history_now(session_id, limit)).await?.messages)
    }

    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        bounded(self.messages_now(session_id)).await
    }

    async fn delete(&self, session_id: &str) -> Result<bool, StoreError> {
        bounded(self.delete_now(session_id)).await
    }

    async fn messages_page(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Page<StoredMessage, u64>, StoreError> {
        bounded(self.messages_page_now(session_id, after, limit)).await
    }

    async fn list_sessions(
        &self,
        owner: &str,
        after: Option<&SessionPosition>,
        limit: usize,
    ) -> Result<Page<SessionSummary, SessionPosition>, StoreError> {
        bounded(self.list_sessions_now(owner, after, limit)).await
    }

    async fn history(&self, session_id: &str, limit: usize) -> Result<History, StoreError> {
        bounded(self.history_now(session_id, limit)).await
    }

    async fn append_after(
        &self,
        session_id: &str,
        history: &History,
        messages: &[NewMessage],
        charge: Option<&Charge>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        bounded(self.append_now(session_id, messages, history.read::<TurnRead>(), charge)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::Role;
    use crate::store::firestore::tests::{emulator, expire_at, project, raw_fields, seconds_between, store};

    fn say(content: &str) -> NewMessage {
        NewMessage {
            role: Role::User,
            content: content.to_string(),
        }
    }

    /// Deletes documents as a TTL policy may, one by one.
    async fn expire(store: &FirestoreStore, paths: Vec<String>) {
        let writes: Vec<Write> = paths.into_iter().map(|p| delete(p, None)).collect();
        commit_if_unchanged(&store.counts, &store.db, "expire", || async {
            Ok(((), writes.clone()))
        })
        .await
        .expect("delete as a TTL policy would");
    }

    fn fallbacks(store: &FirestoreStore) -> u64 {
        store
            .counts
            .metrics()
            .counter("store_history_fallbacks_total", &[("store", "firestore")])
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_leftover_in_the_way_is_stepped_over_not_overwritten() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let old: Vec<NewMessage> = (1..=4).map(|i| say(&format!("old {i}"))).collect();
        store.append("gap", &old).await.expect("append");
        // The TTL policy took the session document and the first messages,
        // not yet the fourth.
        let session_path = format!("{}/{SESSIONS}/gap", store.documents());
        let mut gone = vec![session_path.clone()];
        gone.extend((1..=3).map(|seq| message_path(&session_path, seq)));
        expire(&store, gone).await;
        // The new session numbers from 1, and when it reaches the leftover,
        // numbers after it.
        let mut seqs = Vec::new();
        for i in 0..3 {
            let history = store.history("gap", 20).await.expect("history");
            let stored = store
                .append_after("gap", &history, &[say(&format!("new {i}"))], None)
                .await
                .expect("append after");
            seqs.push(stored[0].seq);
        }
        assert_eq!(seqs, [1, 2, 3]);
        let history = store.history("gap", 20).await.expect("history");
        let stored = store
            .append_after("gap", &history, &[say("new 3")], None)
            .await
            .expect("append");
        assert_eq!(stored[0].seq, 5, "after the leftover at 4, which it never overwrites");
        let all = store.messages("gap").await.expect("messages").expect("exists");
        let contents: Vec<&str> = all.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["new 0", "new 1", "new 2", "old 4", "new 3"]);
        let recent = store.recent("gap", 20).await.expect("recent");
        let contents: Vec<&str> = recent.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            contents,
            ["new 0", "new 1", "new 2", "new 3"],
            "the expired session is not this one's history"
        );
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_session_from_before_tails_is_queried_once_then_read_from_its_tail() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        store.append("legacy", &[say("q0"), say("a0")]).await.expect("append");
        // What the document looked like before tails: its counter and times.
        let session_path = format!("{}/{SESSIONS}/legacy", store.documents());
        let ts = timestamp(SystemTime::now()).expect("now");
        #[derive(Serialize)]
        struct Legacy {
            next_seq: i64,
            created_at: FirestoreTimestamp,
            updated_at: FirestoreTimestamp,
        }
        let legacy = Legacy {
            next_seq: 3,
            created_at: ts,
            updated_at: ts,
        };
        let writes = vec![put(&session_path, &legacy, None).expect("a document")];
        commit_if_unchanged(&store.counts, &store.db, "legacy", || async {
            Ok(((), writes.clone()))
        })
        .await
        .expect("write the old shape");

        let history = store.history("legacy", 20).await.expect("history");
        assert_eq!(history.messages.len(), 2);
        assert_eq!(fallbacks(&store), 1, "the old document has no tail: a query");
        store
            .append_after("legacy", &history, &[say("q1"), say("a1")], None)
            .await
            .expect("append after");
        let history = store.history("legacy", 20).await.expect("history");
        let contents: Vec<&str> = history.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["q0", "a0", "q1", "a1"]);
        assert_eq!(fallbacks(&store), 1, "the next turn reads the tail the first one wrote");
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn large_messages_fall_back_to_the_query_and_say_so() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let big = |i: usize| format!("{i}{}", "x".repeat(100_000));
        for i in 0..3 {
            let history = store.history("large", 20).await.expect("history");
            assert_eq!(history.messages.len(), i);
            store
                .append_after("large", &history, &[say(&big(i))], None)
                .await
                .expect("append");
        }
        assert_eq!(fallbacks(&store), 0, "two fit in the tail");
        let history = store.history("large", 20).await.expect("history");
        let expected: Vec<String> = (0..3).map(big).collect();
        let contents: Vec<String> = history.messages.iter().map(|m| m.content.clone()).collect();
        assert_eq!(contents, expected, "the whole history, from the query");
        assert_eq!(fallbacks(&store), 1, "the third did not: a query, counted");
        let session = raw_fields(&store, store.documents(), SESSIONS, "large").await;
        let size: usize = format!("{session:?}").len();
        assert!(
            size < super::tail::TAIL_BYTES + 4096,
            "the session document stays bounded: {size} bytes"
        );
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_session_started_again_after_expiry_numbers_after_its_leftovers() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let say = |content: &str| NewMessage {
            role: Role::User,
            content: content.to_string(),
        };
        store.append("s", &[say("old 1"), say("old 2")]).await.expect("append");
        // What a TTL policy may do: delete the session document first.
        let path = format!("{}/{SESSIONS}/s", store.documents());
        let writes = vec![delete(path, None)];
        commit_if_unchanged(&store.counts, &store.db, "expire", || async {
            Ok(((), writes.clone()))
        })
        .await
        .expect("delete the session document");
        assert_eq!(store.messages("s").await.expect("messages"), None);
        let again = store.append("s", &[say("new")]).await.expect("append again");
        assert_eq!(
            again[0].seq, 3,
            "numbered after the leftovers, which it never overwrites"
        );
        let all = store.messages("s").await.expect("messages").expect("exists");
        assert_eq!(all.len(), 3);
    }

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn sessions_and_messages_carry_expire_at_only_with_a_ttl() {
        let host = emulator();
        let ttl = Duration::from_secs(86_400);
        let turn = [
            NewMessage {
                role: Role::User,
                content: "q".to_string(),
            },
            NewMessage {
                role: Role::Model,
                content: "a".to_string(),
            },
        ];

        let with_ttl = FirestoreStore::connect_to(
            Some(&host),
            &project(),
            "(default)",
            Some(ttl),
            &crate::http::Metrics::new("test"),
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
        let before = SystemTime::now();
        let stored = with_ttl.append("ttl", &turn).await.expect("append");
        let after = SystemTime::now();
        assert_eq!(stored.len(), 2);
        let session_path = format!("{}/{SESSIONS}/ttl", with_ttl.documents());
        let session = raw_fields(&with_ttl, with_ttl.documents(), SESSIONS, "ttl").await;
        let message = raw_fields(&with_ttl, &session_path, MESSAGES, &format!("{:012}", stored[0].seq)).await;
        // The message the model wrote, too: every message of the turn.
        let reply = raw_fields(&with_ttl, &session_path, MESSAGES, &format!("{:012}", stored[1].seq)).await;
        for (what, fields) in [("session", &session), ("message", &message), ("reply", &reply)] {
            let at = expire_at(fields).unwrap_or_else(|| panic!("the {what} has no expire_at: {fields:?}"));
            // now + ttl, now being between `before` and `after`; a few
            // minutes of slack for clocks and rounding.
            let early = seconds_between(at, before + ttl);
            let late = seconds_between(at, after + ttl);
            assert!(
                early > -180.0 && late < 180.0,
                "the {what}'s expire_at is {early:.1} s from append time + 1 day (should be ~0)"
            );
        }

        let without = store(&host, &project()).await;
        let stored = without.append("ttl", &turn).await.expect("append");
        let session_path = format!("{}/{SESSIONS}/ttl", without.documents());
        let session = raw_fields(&without, without.documents(), SESSIONS, "ttl").await;
        let message = raw_fields(&without, &session_path, MESSAGES, &format!("{:012}", stored[0].seq)).await;
        assert!(session.contains_key("next_seq"), "a session document: {session:?}");
        assert!(message.contains_key("seq"), "a message document: {message:?}");
        assert!(
            !session.contains_key("expire_at"),
            "no TTL, yet the session has expire_at: {session:?}"
        );
        assert!(
            !message.contains_key("expire_at"),
            "no TTL, yet the message has expire_at: {message:?}"
        );
    }
}
