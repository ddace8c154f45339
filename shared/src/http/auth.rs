//! API keys: `X-API-Key` must match one of `API_KEYS` when any is set.
//!
//! The comparison takes the same time whatever the key, so response timing
//! tells an attacker nothing about how much of a guess was right.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::error::ApiError;
use super::middleware::{Middleware, ResponseFuture, respond};
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

/// The keys `X-API-Key` must match one of, when there are any.
#[derive(Clone)]
pub(crate) struct RequireApiKey(pub(crate) Arc<[Secret]>);

impl Middleware for RequireApiKey {
    fn call<S>(&self, mut request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let keys = &self.0;
        if keys.is_empty() {
            return Box::pin(respond(inner.call(request)));
        }
        let Some(presented) = request.headers().get(HEADER) else {
            let refusal =
                ApiError::unauthenticated("this function requires an API key: send it in the X-API-Key header");
            return Box::pin(std::future::ready(refusal.into_response()));
        };
        match find_key(keys, presented.as_bytes()) {
            Some(index) => {
                request.extensions_mut().insert(index);
                Box::pin(respond(inner.call(request)))
            }
            None => {
                let refusal = ApiError::unauthenticated(
                    "the X-API-Key header does not hold a valid API key; check the key you were given",
                );
                Box::pin(std::future::ready(refusal.into_response()))
            }
        }
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
