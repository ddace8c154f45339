//! The response cache's shared tier: model answers every instance can
//! reuse, kept until they expire (see `crate::cache`).
//!
//! The store only keeps bytes under a key; what they hold, and whether
//! they are whole, is the cache's business. A lookup that fails is a miss
//! to the cache, never a failed request, so these calls report errors
//! rather than retrying long.

use std::time::SystemTime;

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The bytes kept under `key`, unless they expired before `now`.
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, StoreError>;

    /// Keeps `value` under `key` for `owner` (a principal, or `*`) until
    /// `expire_at`, replacing what was there.
    async fn keep(&self, key: &str, owner: &str, value: Vec<u8>, expire_at: SystemTime) -> Result<(), StoreError>;
}
