//! ID tokens already verified, so that a client sending the same token with
//! every request (a Firebase app does, for up to an hour) pays for its RSA
//! signature once, not on every request.
//!
//! An entry is the SHA-256 of the whole token (every byte of header, claims
//! and signature: an altered token is another entry) and what it proved:
//! its principal, until its `exp` plus the clock skew. A hit checks only
//! that time; every other check passed when the token was verified and
//! cannot change for the same bytes, except one: a key its issuer stops
//! publishing no longer signs new tokens, but the tokens it signed stay
//! accepted until they expire, as each issuer means them to (Google rotates
//! keys well before their tokens run out). Refused tokens are never kept,
//! so a client cannot fill the cache with guesses, and it holds at most
//! [`CAPACITY`] tokens (emptied of expired ones when full, then cleared).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use sha2::{Digest, Sha256};

use super::principal::Principal;

/// Tokens kept at most: about 100 bytes each.
pub(crate) const CAPACITY: usize = 4096;

/// A token's cache key.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    let mut out = [0; 32];
    out.copy_from_slice(&Sha256::digest(token.as_bytes()));
    out
}

struct Entry {
    principal: Principal,
    /// The last second (Unix time) the token is accepted: `exp` plus the
    /// skew.
    until: i64,
}

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: RwLock<HashMap<TokenDigest, Entry>>,
}

impl VerifiedTokens {
    /// The principal of a token verified before and not expired at `now`.
    pub(crate) fn get(&self, token: &TokenDigest, now: i64) -> Option<Principal> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(token)
            .filter(|entry| now <= entry.until)
            .map(|entry| entry.principal.clone())
    }

    /// Keeps a token that passed every check, accepted until `until`.
    pub(crate) fn insert(&self, token: TokenDigest, principal: Principal, until: i64, now: i64) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, entry| now <= entry.until);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(token, Entry { principal, until });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_all_its_bytes_until_it_expires() {
        let cache = VerifiedTokens::default();
        let user = Principal::firebase("uid-1").expect("uid");
        cache.insert(digest("h.c.s"), user.clone(), 1_000, 500);
        assert_eq!(cache.get(&digest("h.c.s"), 999), Some(user.clone()));
        assert_eq!(cache.get(&digest("h.c.s"), 1_000), Some(user));
        assert_eq!(cache.get(&digest("h.c.s"), 1_001), None, "expired");
        for other in ["h.c.t", "h.d.s", "H.c.s", "h.c.s ", ""] {
            assert_eq!(cache.get(&digest(other), 500), None, "{other:?}");
        }
    }

    #[test]
    fn it_stays_bounded() {
        let cache = VerifiedTokens::default();
        let user = Principal::google("1").expect("sub");
        for i in 0..CAPACITY {
            // Half of them expired by the time the cache is full.
            let until = if i % 2 == 0 { 10 } else { 1_000 };
            cache.insert(digest(&i.to_string()), user.clone(), until, 0);
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.insert(digest("one more"), user.clone(), 1_000, 100);
        assert_eq!(cache.len(), CAPACITY / 2 + 1, "the expired ones went");
        for i in 0..CAPACITY {
            cache.insert(digest(&format!("fresh {i}")), user.clone(), 1_000, 100);
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        let last = digest(&format!("fresh {}", CAPACITY - 1));
        assert!(cache.get(&last, 100).is_some(), "the newest is kept");
    }
}
