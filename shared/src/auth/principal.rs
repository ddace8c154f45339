//! Who a request acts for: its principal.
//!
//! Every request that reaches a function's routes carries one, put there by
//! the authentication layer: the API key it presented, the end user of the
//! ID token it carried, or `anonymous` when the function requires no
//! credential. What a request reads and writes belongs to its principal, so
//! the principal's string form ([`Principal::as_str`]) is what the stores
//! key records by and the rate limiter counts under. It is stable (the same
//! credential always gives the same string, across instances and restarts)
//! and unambiguous:
//!
//! | form | who |
//! |---|---|
//! | `anonymous` | anyone, when no credential is configured |
//! | `key:NAME` | an API key named `NAME` in `API_KEYS` (1 to 64 of `A-Z a-z 0-9 . _ -`); a bare key is named by the first 12 hex digits of its SHA-256 |
//! | `firebase:UID` | a Firebase Authentication user: the ID token's `sub` |
//! | `google:SUB` | a Google account or service account: the Google-signed ID token's `sub` |
//!
//! The kind is the text before the first `:`; everything after it is the
//! name or subject verbatim (1 to [`MAX_SUBJECT_BYTES`] bytes, no control
//! characters), which may itself hold a `:`. A store must treat the whole
//! string as opaque and encode it for its own key syntax.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::http::ApiError;

/// The longest subject (token `sub`) a principal carries, in bytes. Firebase
/// user ids are at most 128 characters and Google's `sub` at most 255 ASCII
/// characters; a longer one is refused rather than stored as a key.
pub const MAX_SUBJECT_BYTES: usize = 512;

/// The longest API key name.
pub const MAX_KEY_NAME_CHARS: usize = 64;

/// What kind of credential a principal was established by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// No credential is configured: the function is open.
    Anonymous,
    /// An API key (`X-API-Key`), by its name.
    ApiKey,
    /// A Firebase Authentication ID token (`Authorization: Bearer`).
    Firebase,
    /// A Google-signed ID token (`Authorization: Bearer`), as Cloud Run and
    /// IAP send.
    Google,
}

impl PrincipalKind {
    /// The prefix of the string form, before the `:`.
    pub fn prefix(self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::ApiKey => "key",
            PrincipalKind::Firebase => "firebase",
            PrincipalKind::Google => "google",
        }
    }
}

/// Who a request acts for. Cheap to clone (a reference count).
///
/// A handler takes it as an extractor, like any other:
///
/// ```
/// use agent_core::auth::Principal;
///
/// async fn whoami(principal: Principal) -> String {
///     principal.as_str().to_string()
/// }
/// ```
///
/// The extractor answers 500 `internal` (and logs why) on a route that is
/// not behind the shared HTTP layer (`http::wrap`), rather than guess: a
/// guess would mix different clients' records.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Anonymous,
    /// The whole string form, and where its name or subject starts.
    Named {
        kind: PrincipalKind,
        id: Arc<str>,
    },
}

impl Principal {
    /// The principal of every request when no credential is configured.
    pub fn anonymous() -> Principal {
        Principal(Repr::Anonymous)
    }

    /// The principal of an API key named `name`, if the name is valid (see
    /// [`valid_key_name`]).
    pub fn api_key(name: &str) -> Option<Principal> {
        valid_key_name(name).then(|| Principal::named(PrincipalKind::ApiKey, name))
    }

    /// The principal of a Firebase user, if `uid` is a valid subject (see
    /// [`valid_subject`]).
    pub fn firebase(uid: &str) -> Option<Principal> {
        valid_subject(uid).then(|| Principal::named(PrincipalKind::Firebase, uid))
    }

    /// The principal of a Google account, if `sub` is a valid subject (see
    /// [`valid_subject`]).
    pub fn google(sub: &str) -> Option<Principal> {
        valid_subject(sub).then(|| Principal::named(PrincipalKind::Google, sub))
    }

    /// Reads a string form back (`key:ops`, `firebase:abc`, `anonymous`);
    /// `None` for anything [`Principal::as_str`] could not have written.
    pub fn parse(s: &str) -> Option<Principal> {
        if s == "anonymous" {
            return Some(Principal::anonymous());
        }
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "key" => Principal::api_key(rest),
            "firebase" => Principal::firebase(rest),
            "google" => Principal::google(rest),
            _ => None,
        }
    }

    fn named(kind: PrincipalKind, name: &str) -> Principal {
        let mut id = String::with_capacity(kind.prefix().len() + 1 + name.len());
        id.push_str(kind.prefix());
        id.push(':');
        id.push_str(name);
        Principal(Repr::Named { kind, id: id.into() })
    }

    /// The stable string form, which the stores key records by (see the
    /// module documentation).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Anonymous => "anonymous",
            Repr::Named { id, .. } => id,
        }
    }

    pub fn kind(&self) -> PrincipalKind {
        match &self.0 {
            Repr::Anonymous => PrincipalKind::Anonymous,
            Repr::Named { kind, .. } => *kind,
        }
    }

    /// The key's name or the token's subject: the string form after its
    /// `kind:` prefix. Empty for `anonymous`.
    pub fn subject(&self) -> &str {
        match &self.0 {
            Repr::Anonymous => "",
            Repr::Named { kind, id } => id.get(kind.prefix().len() + 1..).unwrap_or_default(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self.0, Repr::Anonymous)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.as_str())
    }
}

/// An API key name: 1 to 64 of `A-Z a-z 0-9 . _ -`, safe in a store key, a
/// log line and a metric label.
pub fn valid_key_name(name: &str) -> bool {
    (1..=MAX_KEY_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A token subject: 1 to [`MAX_SUBJECT_BYTES`] bytes with no control
/// character (so it cannot break a log line or a key).
pub fn valid_subject(sub: &str) -> bool {
    (1..=MAX_SUBJECT_BYTES).contains(&sub.len()) && !sub.chars().any(char::is_control)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Principal, ApiError> {
        match parts.extensions.get::<Principal>() {
            Some(principal) => Ok(principal.clone()),
            None => {
                tracing::error!(
                    path = parts.uri.path(),
                    "a handler asked for the principal of a request that did not pass the \
                     authentication layer: serve its routes through http::wrap"
                );
                Err(ApiError::internal())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_are_prefixed_and_read_back() {
        let cases = [
            (Principal::anonymous(), "anonymous", PrincipalKind::Anonymous, ""),
            (
                Principal::api_key("ops-1.b_c").expect("valid"),
                "key:ops-1.b_c",
                PrincipalKind::ApiKey,
                "ops-1.b_c",
            ),
            (
                Principal::firebase("uid:with:colons").expect("valid"),
                "firebase:uid:with:colons",
                PrincipalKind::Firebase,
                "uid:with:colons",
            ),
            (
                Principal::google("1234567890").expect("valid"),
                "google:1234567890",
                PrincipalKind::Google,
                "1234567890",
            ),
        ];
        for (principal, text, kind, subject) in cases {
            assert_eq!(principal.as_str(), text);
            assert_eq!(principal.to_string(), text);
            assert_eq!(principal.kind(), kind);
            assert_eq!(principal.subject(), subject);
            assert_eq!(Principal::parse(text).as_ref(), Some(&principal), "{text}");
        }
        assert!(Principal::anonymous().is_anonymous());
        assert_ne!(
            Principal::firebase("a"),
            Principal::google("a"),
            "same subject, different issuers"
        );
    }

    #[test]
    fn invalid_names_and_subjects_are_refused() {
        for bad in ["", "a b", "a:b", "é", &"k".repeat(65)] {
            assert!(Principal::api_key(bad).is_none(), "{bad:?}");
        }
        assert!(Principal::api_key(&"k".repeat(64)).is_some());
        for bad in ["", "a\nb", "\u{7f}", &"s".repeat(MAX_SUBJECT_BYTES + 1)] {
            assert!(Principal::firebase(bad).is_none(), "{bad:?}");
            assert!(Principal::google(bad).is_none(), "{bad:?}");
        }
        for bad in [
            "",
            "anon",
            "key:",
            "key:a b",
            "firebase:",
            "ip:1.2.3.4",
            "id:x",
            "Key:a",
            "anonymous:",
        ] {
            assert!(Principal::parse(bad).is_none(), "{bad:?}");
        }
    }
}
