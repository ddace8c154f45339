//! [`CacheStore`] on SQLite: the `response_cache` table, one row per key.
//!
//! A lookup is one read on a reader connection; keeping an answer is one
//! upsert on the writer thread, which also deletes the expired rows once
//! every [`SWEEP_EVERY`] keeps, so the table holds about what is live.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::{CacheStore, StoreError, unix_seconds};

/// Expired cache rows are deleted once every this many keeps.
const SWEEP_EVERY: u64 = 500;

#[async_trait]
impl CacheStore for SqliteStore {
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT value FROM response_cache WHERE key = ?1 AND expire_at > ?2")?
                .query_row(params![key, unix_seconds(now)], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn keep(&self, key: &str, owner: &str, value: Vec<u8>, expire_at: SystemTime) -> Result<(), StoreError> {
        let (key, owner) = (key.to_string(), owner.to_string());
        let sweep = self.inner.cache_keeps.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO response_cache (key, owner, value, expire_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, value = excluded.value,
                 expire_at = excluded.expire_at",
            )?
            .execute(params![key, owner, value, unix_seconds(expire_at)])?;
            if sweep {
                conn.execute(
                    "DELETE FROM response_cache WHERE expire_at <= ?1",
                    [unix_seconds(SystemTime::now())],
                )?;
            }
            Ok(())
        })
        .await
    }
}
