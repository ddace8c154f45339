//! [`CacheStore`] on Firestore: `response_cache/{key}`:
//! `{owner, value, expire_at}`.
//!
//! The key (64 hex digits) is the document id. A lookup is one get, and
//! keeping an answer one unconditional commit: two instances that keep
//! the same key at once both wrote the same model input's answer, and
//! either may stay. A TTL policy on `expire_at` (`deploy.sh` sets it)
//! deletes what has expired, within a day or so of it; until then the
//! lookup itself refuses an expired entry. `value` is a bytes field with
//! its index disabled (`deploy.sh`): nothing is looked up by it.

use std::time::SystemTime;

use async_trait::async_trait;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use super::cas::{classify, commit_if_unchanged, put, read};
use super::rate_limits::bytes;
use super::{FirestoreStore, bounded, timestamp};
use crate::store::{CacheStore, StoreError};

const RESPONSE_CACHE: &str = "response_cache";

#[derive(Debug, Serialize, Deserialize)]
struct CacheDoc {
    owner: String,
    #[serde(with = "bytes")]
    value: Vec<u8>,
    expire_at: FirestoreTimestamp,
}

impl FirestoreStore {
    async fn cached_now(&self, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, StoreError> {
        // A key that cannot be an id was never kept.
        let Ok(_) = self.doc_path(RESPONSE_CACHE, key, "the cache key") else {
            return Ok(None);
        };
        let found = read::<CacheDoc>(&self.counts, &self.db, self.documents(), RESPONSE_CACHE, key)
            .await
            .map_err(classify)?;
        Ok(found
            .value
            .filter(|doc| SystemTime::from(doc.expire_at) > now)
            .map(|doc| doc.value))
    }

    async fn keep_now(&self, key: &str, owner: &str, value: Vec<u8>, expire_at: SystemTime) -> Result<(), StoreError> {
        let path = &self.doc_path(RESPONSE_CACHE, key, "the cache key")?;
        let doc = &CacheDoc {
            owner: owner.to_string(),
            value,
            expire_at: timestamp(expire_at).map_err(classify)?,
        };
        commit_if_unchanged(&self.counts, &self.db, "keep a cached answer", move || async move {
            Ok(((), vec![put(path, doc, None)?]))
        })
        .await
    }
}

#[async_trait]
impl CacheStore for FirestoreStore {
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, StoreError> {
        bounded(self.cached_now(key, now)).await
    }

    async fn keep(&self, key: &str, owner: &str, value: Vec<u8>, expire_at: SystemTime) -> Result<(), StoreError> {
        bounded(self.keep_now(key, owner, value, expire_at)).await
    }
}
