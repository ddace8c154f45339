//! [`RateLimitStore`] on Firestore.
//!
//! - `rate_limits/k-{key}@log`: `{log, expire_at}`, one document per key:
//!   its sliding log ([`rate_log`](crate::store::rate_log)) as bytes. The
//!   id is the key's ([`key_id`]) and `@log`: never the id of a fixed
//!   window of an earlier version (`…@{window}@{start}`, all digits at the
//!   end), so that they expire beside the logs and never pass for one.
//!
//! A request is one get and, when admitted, one commit conditioned on the
//! document's update time (or its absence) ([`commit_if_unchanged`]); a
//! refused request writes nothing. Two instances that decide on the same
//! log cannot both commit: the second's commit fails, and it reads the log
//! again and decides again, so instances sharing the database admit exactly
//! the limit together. The calls of one process take turns on a local lock
//! per key, so only different instances ever conflict. `expire_at` is when
//! the log will hold nothing live, so a TTL policy deleting the document
//! after it changes no answer.

use std::time::SystemTime;

use async_trait::async_trait;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use super::cas::{commit_if_unchanged, put, read};
use super::ids::key_id;
use super::{FirestoreStore, bounded, timestamp};
use crate::config::RateLimit;
use crate::store::rate_log::decide;
use crate::store::{Admission, RateLimitStore, StoreError};

const RATE_LIMITS: &str = "rate_limits";

#[derive(Debug, Serialize, Deserialize)]
struct RateLimitDoc {
    /// A Firestore bytes value (one field, one index entry), not an array
    /// of up to [`MAX_LIMIT`](crate::store::rate_log::MAX_LIMIT) integers.
    #[serde(with = "bytes")]
    log: Vec<u8>,
    expire_at: FirestoreTimestamp,
}

impl FirestoreStore {
    async fn admit_now(&self, key: &str, limit: RateLimit, now: SystemTime) -> Result<Admission, StoreError> {
        let id = log_id(key).ok_or_else(|| {
            StoreError::Internal(format!(
                "a rate-limit key of {} bytes is too long for a Firestore document id",
                key.len()
            ))
        })?;
        let path = &format!("{}/{RATE_LIMITS}/{id}", self.documents());
        let id = &id;
        let _turn = self.locks.lock(path).await;
        commit_if_unchanged(&self.counts, &self.db, "rate limit", move || async move {
            let stored = read::<RateLimitDoc>(&self.counts, &self.db, self.documents(), RATE_LIMITS, id).await?;
            let decision = decide(stored.value.as_ref().map_or(&[][..], |d| d.log.as_slice()), limit, now);
            let writes = match decision.log {
                Some(log) => {
                    let doc = RateLimitDoc {
                        log,
                        expire_at: timestamp(decision.expire_at)?,
                    };
                    vec![put(path, &doc, Some(stored.unchanged))?]
                }
                None => Vec::new(),
            };
            Ok((decision.admission, writes))
        })
        .await
    }
}

/// The id of `key`'s log; `None` past Firestore's limit on ids.
fn log_id(key: &str) -> Option<String> {
    key_id(&format!("{key}@log"))
}

#[async_trait]
impl RateLimitStore for FirestoreStore {
    async fn admit(&self, key: &str, limit: RateLimit, now: SystemTime) -> Result<Admission, StoreError> {
        bounded(self.admit_now(key, limit, now)).await
    }
}

/// `Vec<u8>` as a serde byte string, which the Firestore serializer writes
/// as a bytes value (serde's default for `Vec<u8>` is a sequence).
pub(super) mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub(in crate::store::firestore) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(in crate::store::firestore) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::firestore::tests::{emulator, expire_at, project, raw_fields, seconds_between, store};

    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn rate_limit_logs_are_bytes_and_carry_expire_at() {
        let (host, project) = (emulator(), project());
        let store = store(&host, &project).await;
        let limit = RateLimit {
            max: 5,
            window: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        let key = format!("ttl:key:{}", crate::store::unix_seconds(now));
        for _ in 0..2 {
            assert!(store.admit(&key, limit, now).await.expect("admit").admitted);
        }
        let id = log_id(&key).expect("a short key has an id");
        let fields = raw_fields(&store, store.documents(), RATE_LIMITS, &id).await;
        match &fields["log"].value_type {
            Some(firestore::gcloud_sdk::google::firestore::v1::value::ValueType::BytesValue(b)) => {
                assert_eq!(b.len(), 16, "two admissions of 8 bytes each")
            }
            other => panic!("the log is not a bytes value: {other:?}"),
        }
        let at = expire_at(&fields).unwrap_or_else(|| panic!("the rate-limit log has no expire_at: {fields:?}"));
        let after = seconds_between(at, now);
        assert!(
            (59.0..=61.0).contains(&after),
            "expire_at is {after:.1} s after the last admission (should be the window, 60 s)"
        );
    }
}
