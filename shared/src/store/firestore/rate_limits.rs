//! [`RateLimitStore`] on Firestore.
//!
//! - `rate_limits/k-{key}@{window_secs}@{window_start}`: `{window_start,
//!   window_secs, count, expire_at}`, one document per client, limit and
//!   window.
//!
//! A hit is one commit that reads nothing: it adds 1 to the window's
//! `count` with Firestore's increment transform (creating the document on
//! the window's first hit) and reads the count back from the commit's
//! answer ([`super::cas::increment`]). Firestore applies the increments to a
//! document one after another, so each hit is counted exactly once and
//! instances sharing the database admit exactly the limit together, without
//! the conflicts and retries a read-then-write would meet under load. A new
//! window is a new document, so nothing is reset; the old one expires
//! [`RATE_LIMIT_MARGIN`] after its end. The window's length is part of the
//! id, so that changing a limit's window never continues an old count.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use super::cas::{classify, increment};
use super::ids::key_id;
use super::{FirestoreStore, bounded, timestamp};
use crate::store::{RateLimitStore, StoreError, WindowCount, unix_seconds};

/// How long a rate-limit window's document outlives the window, so that a
/// TTL policy never deletes a window still counting.
const RATE_LIMIT_MARGIN: Duration = Duration::from_secs(3600);

const RATE_LIMITS: &str = "rate_limits";

/// The fields a hit sets; `count` is the one it increments.
#[derive(Debug, Serialize, Deserialize)]
struct RateLimitDoc {
    window_start: i64,
    window_secs: i64,
    expire_at: FirestoreTimestamp,
}

impl FirestoreStore {
    async fn hit_now(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError> {
        let window_secs = window.as_secs().max(1) as i64;
        let now_secs = unix_seconds(now);
        let window_start = now_secs - now_secs.rem_euclid(window_secs);
        let resets_at = SystemTime::UNIX_EPOCH + Duration::from_secs((window_start + window_secs).max(0) as u64);
        let id = window_id(key, window_secs, window_start).ok_or_else(|| {
            StoreError::Internal(format!(
                "a rate-limit key of {} bytes is too long for a Firestore document id",
                key.len()
            ))
        })?;
        let path = format!("{}/{RATE_LIMITS}/{id}", self.documents());
        let doc = RateLimitDoc {
            window_start,
            window_secs,
            expire_at: timestamp(resets_at + RATE_LIMIT_MARGIN).map_err(classify)?,
        };
        let count = increment(&self.counts, &self.db, &path, &doc, "count").await?;
        Ok(WindowCount {
            count: count.max(0) as u64,
            resets_at,
        })
    }
}

/// The id of `key`'s window: the key's id ([`key_id`]) and then the window's
/// length and start, after `@`s. Injective, as the two numbers after the
/// last two `@`s are always the window's.
fn window_id(key: &str, window_secs: i64, window_start: i64) -> Option<String> {
    key_id(&format!("{key}@{window_secs}@{window_start}"))
}

#[async_trait]
impl RateLimitStore for FirestoreStore {
    async fn hit(&self, key: &str, window: Duration, now: SystemTime) -> Result<WindowCount, StoreError> {
        bounded(self.hit_now(key, window, now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::firestore::tests::{emulator, expire_at, project, raw_fields, seconds_between, store};

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn rate_limit_windows_carry_expire_at() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let window = Duration::from_secs(60);
        let now = SystemTime::now();
        let hit = store.hit("ttl:key", window, now).await.expect("hit");
        assert_eq!(hit.count, 1);
        let id = window_id("ttl:key", 60, unix_seconds(hit.resets_at) - 60).expect("a short key has an id");
        let fields = raw_fields(&store, store.documents(), RATE_LIMITS, &id).await;
        assert!(fields.contains_key("window_start"), "a rate-limit document: {fields:?}");
        assert!(matches!(
            fields["count"].value_type,
            Some(firestore::gcloud_sdk::google::firestore::v1::value::ValueType::IntegerValue(1))
        ));
        let at = expire_at(&fields).unwrap_or_else(|| panic!("the rate-limit window has no expire_at: {fields:?}"));
        let after_end = seconds_between(at, hit.resets_at);
        assert!(
            (0.0..=2.0 * 3600.0).contains(&after_end),
            "expire_at is {after_end:.1} s after the window's end (should be 0 to 2 h)"
        );
        // The window's end is itself a minute or less away.
        let ends_in = seconds_between(hit.resets_at, now);
        assert!(ends_in > 0.0 && ends_in <= 60.0, "resets in {ends_in:.1} s");
    }
}
