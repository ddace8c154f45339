//! [`SessionStore`] on Firestore.
//!
//! - `sessions/{session_id}`: `{next_seq, created_at, updated_at, expire_at?}`.
//!   `next_seq` is the counter that hands out the session's sequence numbers.
//! - `sessions/{session_id}/messages/{seq}`, the id being `seq` zero-padded
//!   to 12 digits so that the console lists a session in order:
//!   `{seq, role ("user" | "model"), content, created_at, expire_at?}`.
//!   A document per message in a subcollection, never an array in the
//!   session document: a document holds at most 1 MiB and is rewritten whole
//!   on every change, so an array would cap a session's length and make each
//!   append cost the whole history. Here an append writes its own messages
//!   only, and `recent` is one query ordered by `seq` descending with a
//!   limit: `limit` documents read, however long the session.
//!
//! An append reads the session document, takes the next sequence numbers
//! from its counter, and commits the messages (each only if it does not
//! exist) with the counter (only if the session is as read) in one
//! conditional commit ([`super::cas`]): a turn is stored whole or not at
//! all, and two appends never get the same numbers. `messages` reads in one
//! read-only transaction, so the existence check and the messages agree. A
//! delete goes in chunks, the session document last and only if no append
//! came in between. A session started again after its document expired
//! numbers its messages after the leftovers ([`first_free_seq`]).

use std::time::SystemTime;

use async_trait::async_trait;
use firestore::errors::FirestoreError;
use firestore::gcloud_sdk::google::firestore::v1::Write;
use firestore::{
    FirestoreConsistencySelector, FirestoreDb, FirestoreTimestamp, FirestoreTransactionMode,
    FirestoreTransactionOptions,
};
use serde::{Deserialize, Serialize};

use super::cas::{classify, commit_if_unchanged, delete, exists, put, read};
use super::ids::is_document_id;
use super::{Counts, FirestoreStore, bounded, query_limit, time_of, timestamp};
use crate::llm::Role;
use crate::store::{NewMessage, SessionStore, StoreError, StoredMessage, rfc3339};

/// Messages deleted per commit: a commit stays small (Firestore long capped
/// one at 500 writes).
const DELETE_CHUNK: usize = 400;

const SESSIONS: &str = "sessions";
const MESSAGES: &str = "messages";

#[derive(Debug, Serialize, Deserialize)]
struct SessionDoc {
    next_seq: i64,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<FirestoreTimestamp>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MessageDoc {
    seq: i64,
    role: String,
    content: String,
    created_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<FirestoreTimestamp>,
}

impl FirestoreStore {
    fn expiry(&self, now: SystemTime) -> Result<Option<FirestoreTimestamp>, FirestoreError> {
        self.session_ttl.map(|ttl| timestamp(now + ttl)).transpose()
    }

    async fn append_now(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        let session_path = &self.doc_path(SESSIONS, session_id, "the session id")?;
        let n = messages.len() as i64;
        let _turn = self.locks.lock(session_path).await;
        commit_if_unchanged(&self.counts, &self.db, "append", move || async move {
            let now = SystemTime::now();
            let (ts, expire_at) = (timestamp(now)?, self.expiry(now)?);
            let session = read::<SessionDoc>(&self.counts, &self.db, self.documents(), SESSIONS, session_id).await?;
            // Reserve n sequence numbers: the session document's condition
            // makes the reservation and the messages one atomic step.
            let (first, created_at) = match &session.value {
                Some(s) => (s.next_seq, s.created_at),
                None => (first_free_seq(&self.counts, &self.db, session_path).await?, ts),
            };
            let mut writes = Vec::with_capacity(messages.len() + 1);
            let mut stored = Vec::with_capacity(messages.len());
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
            }
            let doc = SessionDoc {
                next_seq: first + n,
                created_at,
                updated_at: ts,
                expire_at,
            };
            writes.push(put(session_path, &doc, Some(session.unchanged))?);
            Ok((stored, writes))
        })
        .await
    }

    async fn recent_now(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 || !is_document_id(session_id) {
            return Ok(Vec::new());
        }
        let session_path = format!("{}/{SESSIONS}/{session_id}", self.documents());
        let query = self
            .db
            .fluent()
            .select()
            .from(MESSAGES)
            .parent(&session_path)
            .order(|o| o.fields([o.field("seq").descending()]))
            .limit(query_limit(limit))
            .obj()
            .query();
        let mut docs: Vec<MessageDoc> = self.counts.query(query).await.map_err(classify)?;
        docs.reverse();
        Ok(docs.into_iter().map(to_message).collect())
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

fn message_path(session_path: &str, seq: i64) -> String {
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

fn role_from(s: &str) -> Role {
    if s == "model" { Role::Model } else { Role::User }
}

fn to_message(doc: MessageDoc) -> StoredMessage {
    StoredMessage {
        seq: doc.seq.max(0) as u64,
        role: role_from(&doc.role),
        content: doc.content,
        created_at: time_of(doc.created_at),
    }
}

#[async_trait]
impl SessionStore for FirestoreStore {
    async fn append(&self, session_id: &str, messages: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        bounded(self.append_now(session_id, messages)).await
    }

    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        bounded(self.recent_now(session_id, limit)).await
    }

    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        bounded(self.messages_now(session_id)).await
    }

    async fn delete(&self, session_id: &str) -> Result<bool, StoreError> {
        bounded(self.delete_now(session_id)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::firestore::tests::{emulator, expire_at, project, raw_fields, seconds_between, store};

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
