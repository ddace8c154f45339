//! Document ids: which strings Firestore takes as they are, and how keys
//! that come from clients or the model become one.

use firestore::FirestoreDocumentId;

/// Firestore's limit on a document id.
const MAX_ID_BYTES: usize = 1500;

/// Whether Firestore accepts `id` as a document id: not empty, at most 1500
/// bytes, no `/`, not `.` or `..`, and not `__…__` (reserved). The HTTP layer
/// lets through only session and task ids that are, but a call with one that
/// is not must fail as "not found", as in SQLite, not as a Firestore error.
pub(super) fn is_document_id(id: &str) -> bool {
    let reserved = id.len() >= 4 && id.starts_with("__") && id.ends_with("__");
    !reserved && FirestoreDocumentId::validate_str(id).is_ok()
}

/// The document id of a client- or model-given key: `k-`, then the key with
/// `%`, `/` and control characters percent-encoded (UTF-8 bytes, as `%2F`).
/// Injective, because `%` itself is encoded; always a valid id, because the
/// prefix rules out `.`, `..` and `__…__` and no `/` is left. Readable in
/// the console, and short: only those characters grow, so the longest keys
/// this crate makes (a 128-character client id, a 200-character memory key)
/// stay far below 1500 bytes. `None` only past that limit, where any
/// injective id would need a hash.
pub(super) fn key_id(key: &str) -> Option<String> {
    let mut id = String::with_capacity(key.len() + 2);
    id.push_str("k-");
    for c in key.chars() {
        if c == '%' || c == '/' || c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                id.push_str(&format!("%{b:02X}"));
            }
        } else {
            id.push(c);
        }
    }
    (id.len() <= MAX_ID_BYTES).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_make_valid_distinct_document_ids() {
        let keys = [
            "",
            ".",
            "..",
            "__x__",
            "a/b",
            "a%2Fb",
            "%",
            "chat:id:alice",
            "Ünïcødé ✓",
            "tab\there",
            "k-",
            "/",
        ];
        let ids: Vec<String> = keys.iter().map(|k| key_id(k).expect("short keys fit")).collect();
        for (key, id) in keys.iter().zip(&ids) {
            assert!(is_document_id(id), "{key:?} -> {id:?}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{ids:?}");
        assert_eq!(key_id("a/b").as_deref(), Some("k-a%2Fb"));
        assert_eq!(key_id("a%2Fb").as_deref(), Some("k-a%252Fb"));
        assert_eq!(key_id("chat:id:alice").as_deref(), Some("k-chat:id:alice"));
    }

    #[test]
    fn the_longest_keys_the_crate_makes_fit() {
        assert!(key_id(&format!("agent:id:{}", "🦀".repeat(128))).is_some());
        assert!(key_id(&format!("agent:id:{}", "/".repeat(128))).is_some());
        assert!(key_id(&"İ".repeat(200).to_lowercase()).is_some());
        assert!(
            key_id(&"/".repeat(500)).is_none(),
            "past the limit it is refused, never cut"
        );
    }

    #[test]
    fn document_ids_follow_firestore_rules() {
        for ok in ["a", "user-42_chat.v2", "___", "_x_", "__x", &"x".repeat(1500)] {
            assert!(is_document_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "__x__", "____", &"x".repeat(1501)] {
            assert!(!is_document_id(bad), "{bad}");
        }
    }
}
