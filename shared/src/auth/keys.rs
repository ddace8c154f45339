//! API keys: `API_KEYS` read into named keys, and the key a request
//! presents in `X-API-Key` found among them.
//!
//! Each entry of `API_KEYS` is `NAME:KEY` or a bare `KEY`. The name is what
//! the key's requests are known by (their principal is `key:NAME`), so
//! records survive a key's rotation: `ops:old-key,ops:new-key` are one
//! client. A bare key is named by the first 12 hex digits of its SHA-256,
//! which identifies it without storing or logging it (but could help guess
//! a short, weak key: name those). A key holding a `:` must be given a
//! name, since the entry is split at its first `:`.
//!
//! The comparison takes the same time whatever the key, and every key is
//! compared, so response timing tells an attacker nothing about how much of
//! a guess was right. Keys are [`Secret`]s: never in a log line, an error or
//! a `Debug` output.

use std::fmt;

use sha2::{Digest, Sha256};

use super::principal::{MAX_KEY_NAME_CHARS, Principal};
use crate::config::Secret;

/// One key of `API_KEYS` and the principal its requests act for.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    principal: Principal,
    key: Secret,
}

impl ApiKey {
    /// `key:NAME`.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn key(&self) -> &Secret {
        &self.key
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, ***)", self.principal)
    }
}

/// Why `API_KEYS` cannot be used. The messages never hold a key, nor text
/// that might be part of one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error(
        "entry {entry}: the text before its first ':' is not a name (1 to {MAX_KEY_NAME_CHARS} of \
         A-Z a-z 0-9 . _ -); write each entry as KEY or NAME:KEY, and name a key that holds a ':'"
    )]
    BadName { entry: usize },
    #[error("entry {entry} names a key but gives none after the ':'")]
    NoKey { entry: usize },
    #[error("entries {first} and {second} hold the same key under different names; a key has one name")]
    Ambiguous { first: usize, second: usize },
}

/// The name of a bare key: the first 12 hex digits of its SHA-256.
pub fn bare_key_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..6])
}

/// Reads `API_KEYS`: comma-separated `NAME:KEY` or `KEY` entries (entries
/// are counted from 1 in errors; blank ones are skipped).
pub fn parse_list(value: &str) -> Result<Vec<ApiKey>, KeyListError> {
    let mut keys: Vec<(usize, ApiKey)> = Vec::new();
    for (index, entry) in value.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let entry_number = index + 1;
        let (principal, key) = match entry.split_once(':') {
            Some((name, key)) => {
                let principal = Principal::api_key(name.trim()).ok_or(KeyListError::BadName { entry: entry_number })?;
                let key = key.trim();
                if key.is_empty() {
                    return Err(KeyListError::NoKey { entry: entry_number });
                }
                (principal, key)
            }
            None => match Principal::api_key(&bare_key_name(entry)) {
                Some(principal) => (principal, entry),
                // A hex digest is always a valid name.
                None => return Err(KeyListError::BadName { entry: entry_number }),
            },
        };
        if let Some((first, same)) = keys.iter().find(|(_, k)| k.key.expose() == key) {
            if same.principal != principal {
                return Err(KeyListError::Ambiguous {
                    first: *first,
                    second: entry_number,
                });
            }
            continue;
        }
        keys.push((
            entry_number,
            ApiKey {
                principal,
                key: Secret::new(key),
            },
        ));
    }
    Ok(keys.into_iter().map(|(_, k)| k).collect())
}

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

/// The principal of the key `presented` matches; every key is compared,
/// match or not.
pub(crate) fn find<'a>(keys: &'a [ApiKey], presented: &[u8]) -> Option<&'a Principal> {
    let mut found = None;
    for key in keys {
        if constant_time_eq(key.key.expose().as_bytes(), presented) && found.is_none() {
            found = Some(&key.principal);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(keys: &[ApiKey]) -> Vec<&str> {
        keys.iter().map(|k| k.principal().as_str()).collect()
    }

    #[test]
    fn entries_are_named_or_named_by_their_hash() {
        let keys = parse_list(" ops:k1 , k2,,ops:k3, ci.bot_2-x:a:b ").expect("valid");
        // printf k2 | sha256sum
        let k2 = "key:015f7e6bc5ae";
        assert_eq!(bare_key_name("k2"), "015f7e6bc5ae");
        assert_eq!(names(&keys), ["key:ops", k2, "key:ops", "key:ci.bot_2-x"]);
        assert_eq!(keys[3].key().expose(), "a:b", "split at the first colon");
        assert_eq!(find(&keys, b"k1").map(Principal::as_str), Some("key:ops"));
        assert_eq!(
            find(&keys, b"k3").map(Principal::as_str),
            Some("key:ops"),
            "rotation: one client"
        );
        assert_eq!(find(&keys, b"k2").map(Principal::as_str), Some(k2));
        for wrong in [&b""[..], b"k", b"k4", b"k11", b"K1", b"ops:k1", b"a"] {
            assert_eq!(find(&keys, wrong), None, "{wrong:?}");
        }
        assert!(parse_list("").expect("empty").is_empty());
        assert_eq!(names(&parse_list("k,k").expect("repeated")), ["key:8254c329a928"]);
    }

    #[test]
    fn bad_entries_are_refused_without_showing_a_key() {
        let cases = [
            ("a b:secret-1", KeyListError::BadName { entry: 1 }),
            ("ok:k, :secret-1", KeyListError::BadName { entry: 2 }),
            ("ok:k, é:secret-1", KeyListError::BadName { entry: 2 }),
            ("ok:", KeyListError::NoKey { entry: 1 }),
            ("a:secret-1,b:secret-1", KeyListError::Ambiguous { first: 1, second: 2 }),
            ("secret-1,b:secret-1", KeyListError::Ambiguous { first: 1, second: 2 }),
        ];
        for (value, expected) in cases {
            let err = parse_list(value).expect_err(value);
            assert_eq!(err, expected, "{value}");
            assert!(!err.to_string().contains("secret-1"), "{err}");
        }
        let long = format!("{}:k", "n".repeat(65));
        assert_eq!(parse_list(&long), Err(KeyListError::BadName { entry: 1 }));
    }

    #[test]
    fn debug_hides_the_key() {
        let keys = parse_list("ops:hunter2").expect("valid");
        assert_eq!(format!("{keys:?}"), "[ApiKey(key:ops, ***)]");
    }
}
