//! Session ids: generated when a client sends none, validated when it does.
//!
//! A given id must be safe as a Firestore document id and in a URL path
//! without escaping: 1 to 128 characters of `A-Z a-z 0-9 _ . -`. Firestore
//! also reserves `.`, `..` and ids of the form `__x__`, so those are refused
//! too.

use crate::http::error::ApiError;

pub const MAX_LEN: usize = 128;

/// The rules of [`validate`] as a JSON Schema, for the OpenAPI document.
/// The reserved names are only described: a `not` keyword for them breaks
/// schemathesis 4.32's generation of path parameters.
pub fn id_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z0-9_.-]{1,128}$",
        "description": "1 to 128 characters of A-Z, a-z, 0-9, _, . and -, except the reserved ., .. and __name__",
    })
}

/// An optional id in a body: absent or null starts a new session.
pub fn optional_id_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let id = id_schema(generator).to_value();
    schemars::json_schema!({"anyOf": [id, {"type": "null"}], "default": null})
}

/// A new random session id (a UUID v4, which fits the rules).
pub fn generate() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `id` is safe as a store key and in a URL path: the rules of the
/// module (1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 _ . -`, not `.`,
/// `..` or `__x__`). Task ids keep to them too ([`crate::task::validate_id`]).
pub(crate) fn is_safe_id(id: &str) -> bool {
    let valid_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let reserved = id == "." || id == ".." || (id.len() >= 4 && id.starts_with("__") && id.ends_with("__"));
    !id.is_empty() && id.len() <= MAX_LEN && valid_chars && !reserved
}

/// Checks a client-given session id, naming the field in the message.
pub fn validate(field: &str, id: &str) -> Result<(), ApiError> {
    if !is_safe_id(id) {
        return Err(ApiError::invalid_argument(format!(
            "{field} must be 1 to {MAX_LEN} characters of A-Z, a-z, 0-9, _, . and - (and not ., .. or __name__); \
             omit it to start a new session"
        )));
    }
    Ok(())
}

/// The session id to use: the given one if valid, else a new one.
pub fn given_or_new(given: Option<&str>) -> Result<String, ApiError> {
    match given {
        Some(id) => validate("session_id", id).map(|_| id.to_string()),
        None => Ok(generate()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        for ok in ["a", "user-42_chat.v2", &"x".repeat(128), &generate()] {
            assert!(validate("session_id", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "__x__",
            "____",
            "a/b",
            "a b",
            "é",
            &"x".repeat(129),
            "__x__?",
        ] {
            let err = validate("session_id", bad).expect_err(bad);
            assert_eq!(err.code, "invalid_argument");
            assert!(err.message.starts_with("session_id must be"));
        }
        assert_ne!(given_or_new(None).expect("new"), given_or_new(None).expect("new"));
    }
}
