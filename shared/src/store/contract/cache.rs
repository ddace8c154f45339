//! The response cache's shared tier: what is kept is found, by key only,
//! until it expires; keeping again replaces.

use std::time::{Duration, SystemTime};

use super::ok;
use crate::store::Stores;

pub async fn cached_answers_are_found_until_they_expire(stores: &Stores) {
    let cache = &stores.cache;
    let now = SystemTime::now();
    let key = format!("{:064x}", uuid::Uuid::new_v4().as_u128());
    let other = format!("{:064x}", uuid::Uuid::new_v4().as_u128());
    assert_eq!(ok(cache.cached(&key, now).await, "a lookup before any keep"), None);

    let value = br#"{"answer":"four"}"#.to_vec();
    ok(
        cache
            .keep(&key, "alice", value.clone(), now + Duration::from_secs(60))
            .await,
        "keep",
    );
    assert_eq!(
        ok(cache.cached(&key, now).await, "a lookup").as_deref(),
        Some(&value[..])
    );
    assert_eq!(ok(cache.cached(&other, now).await, "another key"), None);
    assert_eq!(
        ok(cache.cached(&key, now + Duration::from_secs(61)).await, "after expiry"),
        None,
        "an expired entry is not served, whether or not it is deleted yet"
    );

    // Keeping again replaces the value and its expiry; binary values are kept as they are.
    let replaced = vec![0u8, 159, 146, 150, 255];
    ok(
        cache
            .keep(&key, "alice", replaced.clone(), now + Duration::from_secs(3600))
            .await,
        "keep again",
    );
    assert_eq!(
        ok(
            cache.cached(&key, now + Duration::from_secs(61)).await,
            "the replacement"
        )
        .as_deref(),
        Some(&replaced[..])
    );
}
