//! [`MemoryStore`] on Firestore.
//!
//! - `memories/{session_id}`: `{next_seq, created_at, updated_at}`, and
//!   `memories/{session_id}/entries/k-{normalised key}`:
//!   `{key, value, seq, created_at, updated_at}`. `seq` comes from the
//!   session's counter and orders facts as they were first told; two facts
//!   told within one millisecond would tie on a timestamp.
//!
//! Keys compare without case or surrounding space, as the entry's id is the
//! normalised key. Remembering reads the entry and the counter together (one
//! batched get) and commits the entry (and, for a new fact, the counter)
//! only if they are as read ([`super::cas`]), so a fact told twice at once
//! is one entry and no two facts share a `seq`: one read request and one
//! commit a fact.

use std::time::SystemTime;

use async_trait::async_trait;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use super::cas::{classify, commit_if_unchanged, put, read, read_two};
use super::ids::{is_document_id, key_id};
use super::{FirestoreStore, bounded, query_limit, time_of, timestamp};
use crate::store::{MemoryEntry, MemoryStore, StoreError};

const MEMORIES: &str = "memories";
const ENTRIES: &str = "entries";

#[derive(Debug, Serialize, Deserialize)]
struct MemoryCounterDoc {
    next_seq: i64,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemoryEntryDoc {
    key: String,
    value: String,
    seq: i64,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
}

impl FirestoreStore {
    async fn remember_now(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError> {
        let counter_path = &self.doc_path(MEMORIES, session_id, "the session id")?;
        let key = key.trim();
        let id = &key_id(&normalise_key(key))
            .ok_or_else(|| StoreError::Internal(format!("a memory key of {} bytes is too long to store", key.len())))?;
        let entry_path = &format!("{counter_path}/{ENTRIES}/{id}");
        let _turn = self.locks.lock(counter_path).await;
        commit_if_unchanged(&self.counts, &self.db, "remember", move || async move {
            let now = SystemTime::now();
            let ts = timestamp(now)?;
            // The entry and the session's counter in one request: a new fact
            // takes the counter's next number.
            let (entry, counter) =
                read_two::<MemoryEntryDoc, MemoryCounterDoc>(&self.counts, &self.db, entry_path, counter_path).await?;
            let mut writes = Vec::with_capacity(2);
            let (seq, created_at) = match &entry.value {
                Some(old) => (old.seq, old.created_at),
                None => {
                    let (seq, counter_created) = counter.value.map_or((1, ts), |c| (c.next_seq, c.created_at));
                    let doc = MemoryCounterDoc {
                        next_seq: seq + 1,
                        created_at: counter_created,
                        updated_at: ts,
                    };
                    writes.push(put(counter_path, &doc, Some(counter.unchanged))?);
                    (seq, ts)
                }
            };
            let doc = MemoryEntryDoc {
                key: key.to_string(),
                value: value.to_string(),
                seq,
                created_at,
                updated_at: ts,
            };
            writes.push(put(entry_path, &doc, Some(entry.unchanged))?);
            Ok((to_memory(doc), writes))
        })
        .await
    }

    async fn recall_now(
        &self,
        session_id: &str,
        key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>, StoreError> {
        if !is_document_id(session_id) {
            return Ok(Vec::new());
        }
        let counter_path = format!("{}/{MEMORIES}/{session_id}", self.documents());
        match key {
            Some(key) => {
                // A key too long to store was never stored.
                let Some(id) = key_id(&normalise_key(key)) else {
                    return Ok(Vec::new());
                };
                let entry = read::<MemoryEntryDoc>(&self.counts, &self.db, &counter_path, ENTRIES, &id)
                    .await
                    .map_err(classify)?;
                Ok(entry.value.into_iter().map(to_memory).collect())
            }
            None if limit == 0 => Ok(Vec::new()),
            None => {
                let query = self
                    .db
                    .fluent()
                    .select()
                    .from(ENTRIES)
                    .parent(&counter_path)
                    .order(|o| o.fields([o.field("seq").ascending()]))
                    .limit(query_limit(limit))
                    .obj()
                    .query();
                let docs: Vec<MemoryEntryDoc> = self.counts.query(query).await.map_err(classify)?;
                Ok(docs.into_iter().map(to_memory).collect())
            }
        }
    }
}

/// Memory keys compare without case or surrounding space.
fn normalise_key(key: &str) -> String {
    key.trim().to_lowercase()
}

fn to_memory(doc: MemoryEntryDoc) -> MemoryEntry {
    MemoryEntry {
        key: doc.key,
        value: doc.value,
        updated_at: time_of(doc.updated_at),
    }
}

#[async_trait]
impl MemoryStore for FirestoreStore {
    async fn remember(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError> {
        bounded(self.remember_now(session_id, key, value)).await
    }

    async fn recall(&self, session_id: &str, key: Option<&str>, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        bounded(self.recall_now(session_id, key, limit)).await
    }
}
