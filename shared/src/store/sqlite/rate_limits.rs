//! [`RateLimitStore`] on SQLite: one `rate_limit_logs` row per key, holding
//! its sliding log ([`rate_log`](crate::store::rate_log)) and when the log
//! will have emptied.
//!
//! A request reads the row, decides, and writes the new log only when it
//! admits, all in one write on the writer thread: inside its `BEGIN
//! IMMEDIATE` transaction, under the file's write lock, so instances sharing
//! the file decide one after another on each other's logs and admit exactly
//! the limit together. Rows whose logs have emptied are swept every
//! [`SWEEP_EVERY`] requests.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::config::RateLimit;
use crate::store::rate_log::decide;
use crate::store::{Admission, RateLimitStore, StoreError, unix_seconds};

/// Emptied rate-limit rows are swept once every this many requests.
const SWEEP_EVERY: u64 = 1000;

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn admit(&self, key: &str, limit: RateLimit, now: SystemTime) -> Result<Admission, StoreError> {
        let key = key.to_string();
        let sweep = self.inner.hits.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        self.write(move |conn| {
            let stored: Option<Vec<u8>> = conn
                .prepare_cached("SELECT log FROM rate_limit_logs WHERE key = ?1")?
                .query_row([&key], |r| r.get(0))
                .optional()?;
            let decision = decide(stored.as_deref().unwrap_or_default(), limit, now);
            if let Some(log) = &decision.log {
                conn.prepare_cached(
                    "INSERT INTO rate_limit_logs (key, log, expire_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET log = excluded.log, expire_at = excluded.expire_at",
                )?
                .execute(params![key, log, unix_seconds(decision.expire_at) + 1])?;
            }
            if sweep {
                conn.execute("DELETE FROM rate_limit_logs WHERE expire_at < ?1", [unix_seconds(now)])?;
            }
            Ok(decision.admission)
        })
        .await
    }
}
