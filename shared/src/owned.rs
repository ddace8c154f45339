//! Records belong to the principal that wrote them, and the store keeps
//! principals apart.
//!
//! A session (its messages, and the agent's memory of it) is stored under
//! [`session_key`]: its owner and its id together, so two principals can
//! both name a session `default` and never meet, and a read of another
//! principal's session is a read of a key that does not exist: the same 404,
//! by the same path, as for a session nobody has. A task carries its owner
//! ([`crate::store::TaskRecord::owner`]), since task ids are ours and unique
//! already; a task read by anyone else is answered as one that does not
//! exist ([`owns`]).
//!
//! Records written before principals existed belong to `anonymous`, the
//! principal of every request when no credential is configured: an
//! anonymous session's key is its bare id, as every key was then, and a
//! stored task with no owner is anonymous's. Turning `API_KEYS` on later
//! leaves them with `anonymous`: a named key does not see them.

use sha2::{Digest, Sha256};

use crate::auth::Principal;

/// Between the owner and the session id in a key. Session ids never hold it
/// (`session::is_safe_id`), so the last one in a key ends the owner, and an
/// anonymous key, which has none, is never another principal's.
const SEPARATOR: char = '~';

/// An owner written in a key longer than this is replaced by its hash, so
/// that every key stays far below Firestore's 1,500-byte document ids.
const MAX_OWNER_BYTES: usize = 600;

/// The store key of `owner`'s session `session_id` (a valid session id).
///
/// The owner is written with `%` and `/` percent-encoded, so the key is a
/// valid Firestore document id and the encoding cannot make two owners
/// alike; an owner longer than 600 bytes once encoded (only an
/// ID token's subject can be) is written as `#` and its SHA-256, which no
/// principal's string form starts with.
pub fn session_key(owner: &str, session_id: &str) -> String {
    if owner == Principal::anonymous().as_str() {
        return session_id.to_string();
    }
    let mut key = key_owner(owner);
    key.push(SEPARATOR);
    key.push_str(session_id);
    key
}

/// The owner as its session keys write it, which the stores keep with each
/// session (`owner`) to list a principal's sessions: the principal's string
/// form with `%` and `/` percent-encoded, or `#` and its SHA-256 past 600
/// bytes (see [`session_key`]). A function of the principal alone, and
/// injective, so a listing filtered on it is the principal's sessions and
/// no other's; `anonymous` is written as itself, which no other principal's
/// form is (theirs hold a `:`, or start with `#`).
pub fn key_owner(owner: &str) -> String {
    let mut key = String::with_capacity(owner.len() + 1);
    for c in owner.chars() {
        match c {
            '%' => key.push_str("%25"),
            '/' => key.push_str("%2F"),
            c => key.push(c),
        }
    }
    if key.len() > MAX_OWNER_BYTES {
        key.clear();
        key.push('#');
        for byte in Sha256::digest(owner.as_bytes()) {
            key.push_str(&format!("{byte:02x}"));
        }
    }
    key
}

/// A session key taken apart: its owner as [`key_owner`] writes it, and the
/// session id the client named. A key with no separator is `anonymous`'s
/// (its bare id), as every key was before principals; otherwise the last
/// separator ends the owner, since session ids never hold one.
pub fn split_key(key: &str) -> (String, &str) {
    match key.rsplit_once(SEPARATOR) {
        Some((owner, id)) => (owner.to_string(), id),
        None => (Principal::anonymous().as_str().to_string(), key),
    }
}

/// Whether `principal` may see a record stored with `owner`. A record with
/// no owner stored (written before principals) is `anonymous`'s.
pub fn owns(principal: &Principal, owner: &str) -> bool {
    principal.as_str() == owner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_keys_are_the_bare_ids_so_older_records_stay_its_own() {
        assert_eq!(session_key("anonymous", "default"), "default");
    }

    #[test]
    fn each_owner_has_keys_of_its_own() {
        let alice = session_key("key:alice", "default");
        let bob = session_key("key:bob", "default");
        assert_eq!(alice, "key:alice~default");
        assert_ne!(alice, bob);
        assert_ne!(alice, session_key("anonymous", "default"));
        // A client cannot name another principal's key as a session id:
        // session ids never hold the separator.
        assert!(!crate::session::is_safe_id(&alice));
    }

    #[test]
    fn keys_are_injective_whatever_the_subject_holds() {
        let owners = [
            "firebase:a/b",
            "firebase:a%2Fb",
            "firebase:a~b",
            "firebase:a",
            "google:a~b",
            "key:a",
        ];
        let ids = ["b", "c", "b~c"];
        let mut seen = std::collections::HashSet::new();
        for owner in owners {
            for id in ids.iter().filter(|id| crate::session::is_safe_id(id)) {
                let key = session_key(owner, id);
                assert!(!key.contains('/'), "{key}");
                assert!(seen.insert(key.clone()), "{owner} {id} -> {key} twice");
            }
        }
    }

    #[test]
    fn a_long_subject_is_hashed_and_keys_stay_short() {
        let long = format!("firebase:{}", "/".repeat(512));
        let key = session_key(&long, &"x".repeat(128));
        assert!(key.starts_with('#'), "{key}");
        assert!(key.len() < 300, "{}", key.len());
        assert_ne!(
            key,
            session_key(&format!("firebase:{}", "/".repeat(511)), &"x".repeat(128))
        );
    }

    #[test]
    fn a_key_splits_into_its_owner_and_id() {
        for owner in [
            "anonymous",
            "key:alice",
            "firebase:a/b~c",
            &format!("google:{}", "x".repeat(700)),
        ] {
            let key = session_key(owner, "s-1");
            assert_eq!(split_key(&key), (key_owner(owner), "s-1"), "{owner}");
        }
        assert_eq!(key_owner("anonymous"), "anonymous");
        assert_ne!(key_owner("key:a"), key_owner("key:b"));
    }

    #[test]
    fn only_the_owner_owns() {
        let alice = Principal::api_key("alice").expect("a valid name");
        assert!(owns(&alice, "key:alice"));
        assert!(!owns(&alice, "key:bob"));
        assert!(!owns(&alice, "anonymous"));
        assert!(owns(&Principal::anonymous(), "anonymous"));
    }
}
