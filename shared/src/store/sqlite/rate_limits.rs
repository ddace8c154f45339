//! [`RateLimitStore`] on SQLite: one `rate_limits` row per key, holding
//! the start of its current fixed window and the hits counted in it.
//!
//! A hit is one upsert statement that counts it, or starts the count again
//! when the window has changed, and returns the count: atomic on the writer
//! thread and under the file's write lock, so instances sharing the file
//! count each hit exactly once and admit exactly the limit together. Rows of
//! windows long ended are swept every [`SWEEP_EVERY`] hits.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::store::{RateLimitStore, StoreError, WindowCount, unix_seconds};

/// Expired rate-limit rows are swept once every this many hits.
const SWEEP_EVERY: u64 = 1000;

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn hit(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError> {
        let key = key.to_string();
        let window_secs = window.as_secs().max(1) as i64;
        let now_secs = unix_seconds(now);
        let window_start = now_secs - now_secs.rem_euclid(window_secs);
        let resets_at = window_start + window_secs;
        let sweep = self.inner.hits.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        let count = self
            .write(move |conn| {
                // One statement: the increment and the window reset are atomic
                // across every process sharing the file.
                let count: i64 = conn
                    .prepare_cached(
                        "INSERT INTO rate_limits (key, window_start, count, expire_at) VALUES (?1, ?2, 1, ?3)
                         ON CONFLICT (key) DO UPDATE SET
                            count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END,
                            window_start = excluded.window_start,
                            expire_at = excluded.expire_at
                         RETURNING count",
                    )?
                    .query_row(params![key, window_start, resets_at], |r| r.get(0))?;
                if sweep {
                    conn.execute("DELETE FROM rate_limits WHERE expire_at < ?1", [now_secs])?;
                }
                Ok(count)
            })
            .await?;
        Ok(WindowCount {
            count: count.max(0) as u64,
            resets_at: SystemTime::UNIX_EPOCH + Duration::from_secs(resets_at.max(0) as u64),
        })
    }
}
