//! The promises of [`RateLimitStore`](crate::store::RateLimitStore): a
//! sliding log, exact under concurrency within and across instances.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::ok;
use crate::config::RateLimit;
use crate::store::{RateLimitStore, Stores};

fn limit(max: u64, secs: u64) -> RateLimit {
    RateLimit {
        max,
        window: Duration::from_secs(secs),
    }
}

/// `requests` concurrent requests for `key` at `now`, alternating between
/// `a` and `b`; how many were admitted.
async fn admitted_together(
    a: &Arc<dyn RateLimitStore>,
    b: &Arc<dyn RateLimitStore>,
    key: &str,
    limit: RateLimit,
    requests: usize,
    now: SystemTime,
) -> usize {
    let calls: Vec<_> = (0..requests)
        .map(|i| {
            let limits = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.to_string();
            tokio::spawn(async move { limits.admit(&key, limit, now).await })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        let answer = ok(call.await.unwrap_or_else(|e| panic!("admit task: {e}")), "admit");
        if answer.admitted {
            admitted += 1;
        }
    }
    admitted
}

pub async fn rate_limits_admit_exactly_the_limit_under_concurrency(stores: &Stores) {
    rate_limits_admit_exactly_the_limit_across_stores(stores, stores, "contract:exact").await;
    let other = ok(
        stores
            .rate_limits
            .admit("contract:other", limit(10, 3600), SystemTime::now())
            .await,
        "admit",
    );
    assert!(other.admitted, "keys are counted apart");
    assert_eq!(other.remaining, 9);
}

/// 40 concurrent requests for one key through `a` and `b` (two stores on
/// one SQLite file, or two Firestore clients: two instances) admit exactly
/// the limit, 15; the refused ones write nothing, so the 15 admitted are
/// the whole log.
pub async fn rate_limits_admit_exactly_the_limit_across_stores(a: &Stores, b: &Stores, key: &str) {
    let l = limit(15, 3600);
    let now = SystemTime::now();
    let admitted = admitted_together(&a.rate_limits, &b.rate_limits, key, l, 40, now).await;
    assert_eq!(admitted, 15, "exactly the limit admitted");
    let later = ok(a.rate_limits.admit(key, l, now + Duration::from_secs(1)).await, "admit");
    assert!(!later.admitted);
    assert_eq!(later.remaining, 0);
    // Times are kept to the millisecond.
    let frees = later.resets_at + Duration::from_millis(1);
    assert!(
        frees > now + l.window && later.resets_at <= now + l.window,
        "the place frees when the first admission leaves: {:?} after it",
        later.resets_at.duration_since(now)
    );
}

pub async fn rate_limit_windows_slide(stores: &Stores) {
    let limits = &stores.rate_limits;
    let l = limit(3, 60);
    // The last second of a clock-aligned minute, then the first of the next:
    // fixed windows would admit 3 + 3 here.
    let boundary = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let before = boundary - Duration::from_millis(500);
    for expected_remaining in [2, 1, 0] {
        let a = ok(limits.admit("contract:slide", l, before).await, "admit");
        assert!(a.admitted);
        assert_eq!(a.remaining, expected_remaining);
        assert_eq!(a.resets_at, before + l.window);
    }
    for at in [
        boundary,
        boundary + Duration::from_secs(30),
        before + l.window - Duration::from_millis(1),
    ] {
        let refused = ok(limits.admit("contract:slide", l, at).await, "admit");
        assert!(!refused.admitted, "still 3 in the window before {at:?}");
        assert_eq!(
            refused.resets_at,
            before + l.window,
            "Retry-After: when the oldest leaves"
        );
    }
    let freed = before + l.window;
    for expected_remaining in [2, 1, 0] {
        let a = ok(limits.admit("contract:slide", l, freed).await, "admit");
        assert!(a.admitted, "a window after the burst, its places are free again");
        assert_eq!(a.remaining, expected_remaining);
    }
    assert!(!ok(limits.admit("contract:slide", l, freed).await, "admit").admitted);
}
