//! The promises of [`RateLimitStore`](crate::store::RateLimitStore).

use std::time::{Duration, SystemTime};

use super::ok;
use crate::store::Stores;

pub async fn rate_limit_counts_are_exact_under_concurrency(stores: &Stores) {
    let now = SystemTime::now();
    let window = Duration::from_secs(3600);
    let hits: Vec<_> = (0..30)
        .map(|_| {
            let limits = stores.rate_limits.clone();
            tokio::spawn(async move { limits.hit("contract:exact", window, now).await })
        })
        .collect();
    let mut counts = Vec::new();
    for h in hits {
        counts.push(ok(h.await.unwrap_or_else(|e| panic!("hit task: {e}")), "hit").count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=30).collect::<Vec<u64>>(), "every hit counted once");
    let other = ok(stores.rate_limits.hit("contract:other", window, now).await, "hit");
    assert_eq!(other.count, 1, "keys are counted apart");
}

pub async fn rate_limit_windows_reset(stores: &Stores) {
    let window = Duration::from_secs(60);
    // A fixed instant at the start of a window (a multiple of 60 s), so the
    // test never straddles one.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let limits = &stores.rate_limits;
    let first = ok(limits.hit("contract:window", window, start).await, "hit");
    assert_eq!(first.count, 1);
    assert_eq!(first.resets_at, start + window);
    let second = ok(
        limits
            .hit("contract:window", window, start + Duration::from_secs(59))
            .await,
        "hit",
    );
    assert_eq!(second.count, 2);
    let next = ok(limits.hit("contract:window", window, start + window).await, "hit");
    assert_eq!(next.count, 1, "a new window starts at zero");
    assert_eq!(next.resets_at, start + window + window);
}
