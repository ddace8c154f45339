//! API keys: `X-API-Key` must match one of `API_KEYS` when any is set.
//!
//! The comparison takes the same time whatever the key, so response timing
//! tells an attacker nothing about how much of a guess was right.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::config::Secret;

pub(crate) const HEADER: &str = "x-api-key";

/// Which configured key a request presented, by position in `API_KEYS`: the
/// rate limiter counts per key without ever storing the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyIndex(pub usize);

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// The index of the matching key; every key is compared, match or not.
pub(crate) fn find_key(keys: &[Secret], presented: &[u8]) -> Option<KeyIndex> {
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        if constant_time_eq(key.expose().as_bytes(), presented) && found.is_none() {
            found = Some(KeyIndex(i));
        }
    }
    found
}

pub(crate) async fn require_api_key(State(keys): State<Arc<[Secret]>>, mut request: Request, next: Next) -> Response {
    if keys.is_empty() {
        return next.run(request).await;
    }
    let Some(presented) = request.headers().get(HEADER) else {
        return ApiError::unauthenticated("this function requires an API key: send it in the X-API-Key header")
            .into_response();
    };
    match find_key(&keys, presented.as_bytes()) {
        Some(index) => {
            request.extensions_mut().insert(index);
            next.run(request).await
        }
        None => ApiError::unauthenticated(
            "the X-API-Key header does not hold a valid API key; check the key you were given",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exactly() {
        let keys = [Secret::new("k1"), Secret::new("k2")];
        assert_eq!(find_key(&keys, b"k2"), Some(KeyIndex(1)));
        assert_eq!(find_key(&keys, b"k1"), Some(KeyIndex(0)));
        for wrong in [&b""[..], b"k", b"k3", b"k11", b"K1"] {
            assert_eq!(find_key(&keys, wrong), None);
        }
    }
}
