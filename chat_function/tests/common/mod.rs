//! What the rate-limit tests of several files share: bursts of chat
//! requests against two processes, and a burst on each side of a clock
//! window's boundary.

use std::time::Duration;

use serde_json::json;

/// Sends `n` chat requests at once, alternately to the two processes, each
/// with the headers `headers(i)` gives; their statuses in order.
pub async fn burst(urls: [&str; 2], n: usize, headers: impl Fn(usize) -> Vec<(&'static str, String)>) -> Vec<u16> {
    let http = reqwest::Client::new();
    let sends = (0..n).map(|i| {
        let mut request = http
            .post(format!("{}/api/v1/chat", urls[i % 2]))
            .json(&json!({"message": format!("m{i}")}));
        for (name, value) in headers(i) {
            request = request.header(name, value);
        }
        request.send()
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("response").status().as_u16())
        .collect()
}

/// How many were admitted; every answer must be a 200 or a 429.
pub fn admitted(statuses: &[u16]) -> usize {
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + refused, statuses.len(), "only 200s and 429s: {statuses:?}");
    ok
}

/// Six requests under one key half a second before a multiple of 10 s, and
/// six half a second after it; the statuses of each burst. Fixed windows of
/// 10 s would admit the limit on each side.
pub async fn bursts_around_a_boundary(urls: [&str; 2], key: &'static str) -> (Vec<u16>, Vec<u16>) {
    let with_key = |_| vec![("x-api-key", key.to_string())];
    let window = Duration::from_secs(10);
    tokio::time::sleep(until_next_boundary(window).saturating_sub(Duration::from_millis(500))).await;
    let before = burst(urls, 6, with_key).await;
    tokio::time::sleep(until_next_boundary(window).min(Duration::from_secs(1)) + Duration::from_millis(500)).await;
    let after = burst(urls, 6, with_key).await;
    (before, after)
}

/// How long until the clock reaches the next multiple of `window`.
fn until_next_boundary(window: Duration) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let into = (now.as_millis() % window.as_millis()) as u64;
    window - Duration::from_millis(into)
}
