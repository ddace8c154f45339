//! ID tokens: a bearer token checked as Firebase Authentication and Google
//! check theirs, and the end user it names.
//!
//! A token is accepted only if every check passes, in this order, and the
//! first that fails is the one the 401 names:
//!
//! 1. it is a JWT: three base64url parts, a JSON header and JSON claims,
//!    at most [`MAX_TOKEN_BYTES`];
//! 2. its `alg` is `RS256` (never `none`, never an HMAC a public key could
//!    be misused as the secret of);
//! 3. its `iss` is an issuer this function accepts: Firebase's
//!    `https://securetoken.google.com/<AUTH_FIREBASE_PROJECT>`, or Google's
//!    `https://accounts.google.com` (or without the scheme) when
//!    `AUTH_GOOGLE_AUDIENCE` is set; the issuer decides the key set;
//! 4. its `kid` names a key of that issuer's key set
//!    ([`super::key_set`]);
//! 5. its signature verifies with that key (by the `jsonwebtoken` crate,
//!    on aws-lc-rs);
//! 6. its `aud` is the Firebase project, or one of `AUTH_GOOGLE_AUDIENCE`;
//! 7. `exp` has not passed, `nbf` (if any) and `iat` have, within
//!    [`SKEW`] of clock difference; a Firebase token's `auth_time` too;
//! 8. `sub` is a non-empty subject (see [`super::principal::valid_subject`]),
//!    which becomes the principal: `firebase:<sub>` or `google:<sub>`.
//!
//! Claims are read before the signature is checked only to pick the issuer
//! and key; nothing else trusts them until it has passed.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::key_set::{KeyError, KeySet};
use super::principal::{Principal, PrincipalKind};

/// Longer bearer tokens are refused unread (Google's are about 1 KB).
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Clock difference allowed on `exp`, `nbf`, `iat` and `auth_time`, in
/// seconds: the issuer's clock and ours are never quite the same.
pub(crate) const SKEW: i64 = 60;

/// Firebase's issuer for a project: this prefix, then the project id.
pub(crate) const FIREBASE_ISSUER_PREFIX: &str = "https://securetoken.google.com/";

/// The issuers of Google-signed ID tokens.
pub(crate) const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Why a bearer token was refused: each message says which check failed.
/// [`TokenError::KeysUnavailable`] is the one that is not the token's fault
/// (a 503); every other is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the bearer token is not a well-formed ID token: {0}")]
    Malformed(&'static str),
    #[error("the ID token's algorithm (alg) is {0:?}; only RS256 is accepted")]
    Algorithm(String),
    #[error("the ID token has no {0} claim")]
    Missing(&'static str),
    #[error("the ID token's {0} claim is not a number of seconds")]
    NotANumber(&'static str),
    #[error("the ID token's issuer (iss) {found:?} is not accepted here; accepted: {accepted}")]
    Issuer { found: String, accepted: String },
    #[error("the ID token's header names no signing key (kid)")]
    NoKid,
    #[error(
        "the ID token's signing key (kid {kid:?}) is not one {issuer} publishes; get a new token \
         from the issuer"
    )]
    UnknownKid { kid: String, issuer: &'static str },
    #[error(
        "the ID token's signature does not verify with {issuer}'s key {kid:?}: the token was altered or not signed by {issuer}"
    )]
    Signature { kid: String, issuer: &'static str },
    #[error("the ID token's audience (aud) is not this function: expected {expected}")]
    Audience { expected: String },
    #[error("the ID token expired {0} s ago; get a fresh one from the issuer")]
    Expired(i64),
    #[error("the ID token is not valid yet (nbf is {0} s from now); check the clocks")]
    NotYetValid(i64),
    #[error("the ID token was issued in the future (iat is {0} s from now); check the clocks")]
    IssuedInFuture(i64),
    #[error("the ID token's authentication time (auth_time) is {0} s in the future; check the clocks")]
    AuthTimeInFuture(i64),
    #[error("the ID token's subject (sub) is empty, longer than 512 bytes or holds control characters")]
    Subject,
    #[error("the {issuer} keys that ID tokens are checked with cannot be fetched right now; retry shortly")]
    KeysUnavailable { issuer: &'static str, why: String },
}

/// One issuer this function accepts tokens from.
pub(crate) struct Issuer {
    kind: PrincipalKind,
    /// Names it in messages: "Firebase Authentication", "Google".
    name: &'static str,
    issuers: Vec<String>,
    audiences: Vec<String>,
    keys: KeySet,
}

impl Issuer {
    /// Firebase Authentication for `project`.
    pub(crate) fn firebase(project: &str, keys: KeySet) -> Issuer {
        Issuer {
            kind: PrincipalKind::Firebase,
            name: "Firebase Authentication",
            issuers: vec![format!("{FIREBASE_ISSUER_PREFIX}{project}")],
            audiences: vec![project.to_string()],
            keys,
        }
    }

    /// Google, for tokens whose audience is one of `audiences`.
    pub(crate) fn google(audiences: Vec<String>, keys: KeySet) -> Issuer {
        Issuer {
            kind: PrincipalKind::Google,
            name: "Google",
            issuers: GOOGLE_ISSUERS.iter().map(|s| s.to_string()).collect(),
            audiences,
            keys,
        }
    }

    pub(crate) fn key_set(&self) -> &KeySet {
        &self.keys
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn any_of(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(aud) => accepted.contains(aud),
            Audience::Many(auds) => auds.iter().any(|aud| accepted.contains(aud)),
        }
    }
}

/// The claims the checks read; numbers are read as JSON values so that a
/// claim of the wrong type is named rather than failing the whole parse.
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    sub: Option<String>,
    exp: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    auth_time: Option<serde_json::Value>,
}

/// A NumericDate claim in whole seconds; `Ok(None)` when absent.
fn seconds(name: &'static str, value: Option<&serde_json::Value>) -> Result<Option<i64>, TokenError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let number = value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    });
    number.map(Some).ok_or(TokenError::NotANumber(name))
}

fn required(name: &'static str, value: Option<&serde_json::Value>) -> Result<i64, TokenError> {
    seconds(name, value)?.ok_or(TokenError::Missing(name))
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

pub(crate) fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The end user it names.
    pub(crate) principal: Principal,
    /// The last second (Unix time) it is accepted: `exp` plus [`SKEW`].
    pub(crate) until: i64,
}

/// Verifies `token` against `issuers` (every check in the module's order).
pub(crate) async fn verify(issuers: &[Issuer], token: &str) -> Result<Accepted, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("it is longer than 16384 bytes"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "a JWT is three base64url parts separated by dots",
        ));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::Malformed(
            "a JWT is three base64url parts separated by dots",
        ));
    }
    let header: Header = decode_part(header, "its header is not a JSON object")?;
    match header.alg.as_deref() {
        Some("RS256") => {}
        Some(other) => return Err(TokenError::Algorithm(other.chars().take(32).collect())),
        None => return Err(TokenError::Malformed("its header has no alg")),
    }
    let claims: Claims = decode_part(payload, "its claims are not a JSON object")?;
    let iss = claims.iss.as_deref().ok_or(TokenError::Missing("iss"))?;
    let Some(issuer) = issuers
        .iter()
        .find(|i| i.issuers.iter().any(|accepted| accepted == iss))
    else {
        let accepted: Vec<&str> = issuers.iter().flat_map(|i| &i.issuers).map(String::as_str).collect();
        return Err(TokenError::Issuer {
            found: iss.chars().take(100).collect(),
            accepted: accepted.join(", "),
        });
    };
    let kid = header.kid.ok_or(TokenError::NoKid)?;
    let key = match issuer.keys.key(&kid).await {
        Ok(key) => key,
        Err(KeyError::UnknownKid) => {
            return Err(TokenError::UnknownKid {
                kid: kid.chars().take(64).collect(),
                issuer: issuer.name,
            });
        }
        Err(KeyError::Unavailable(why)) => {
            return Err(TokenError::KeysUnavailable {
                issuer: issuer.name,
                why,
            });
        }
    };
    // `header.payload`, exactly as signed.
    let signed = &token[..token.len() - signature.len() - 1];
    let verified = jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key, jsonwebtoken::Algorithm::RS256);
    if !matches!(verified, Ok(true)) {
        return Err(TokenError::Signature {
            kid: kid.chars().take(64).collect(),
            issuer: issuer.name,
        });
    }
    check_claims(issuer, &claims, now_seconds())
}

/// The checks after the signature: audience, times, subject.
fn check_claims(issuer: &Issuer, claims: &Claims, now: i64) -> Result<Accepted, TokenError> {
    let aud = claims.aud.as_ref().ok_or(TokenError::Missing("aud"))?;
    if !aud.any_of(&issuer.audiences) {
        let expected: Vec<String> = issuer.audiences.iter().map(|a| format!("{a:?}")).collect();
        return Err(TokenError::Audience {
            expected: expected.join(" or "),
        });
    }
    let exp = required("exp", claims.exp.as_ref())?;
    if now > exp.saturating_add(SKEW) {
        return Err(TokenError::Expired(now.saturating_sub(exp)));
    }
    if let Some(nbf) = seconds("nbf", claims.nbf.as_ref())?
        && nbf > now.saturating_add(SKEW)
    {
        return Err(TokenError::NotYetValid(nbf.saturating_sub(now)));
    }
    let iat = required("iat", claims.iat.as_ref())?;
    if iat > now.saturating_add(SKEW) {
        return Err(TokenError::IssuedInFuture(iat.saturating_sub(now)));
    }
    if issuer.kind == PrincipalKind::Firebase {
        let auth_time = required("auth_time", claims.auth_time.as_ref())?;
        if auth_time > now.saturating_add(SKEW) {
            return Err(TokenError::AuthTimeInFuture(auth_time.saturating_sub(now)));
        }
    }
    let sub = claims.sub.as_deref().ok_or(TokenError::Missing("sub"))?;
    let principal = match issuer.kind {
        PrincipalKind::Firebase => Principal::firebase(sub),
        _ => Principal::google(sub),
    };
    Ok(Accepted {
        principal: principal.ok_or(TokenError::Subject)?,
        until: exp.saturating_add(SKEW),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Metrics;

    fn issuer(kind: PrincipalKind) -> Issuer {
        let keys = KeySet::new(
            "test",
            "http://127.0.0.1:9/keys".into(),
            reqwest::Client::new(),
            &Metrics::new("test"),
        );
        match kind {
            PrincipalKind::Firebase => Issuer::firebase("demo-project", keys),
            _ => Issuer::google(vec!["https://chat.example".into(), "client-id".into()], keys),
        }
    }

    fn claims(value: serde_json::Value) -> Claims {
        serde_json::from_value(value).expect("claims")
    }

    const NOW: i64 = 1_700_000_000;

    fn firebase(overrides: serde_json::Value) -> serde_json::Value {
        let mut base = serde_json::json!({
            "iss": "https://securetoken.google.com/demo-project", "aud": "demo-project",
            "sub": "uid-1", "iat": NOW - 10, "exp": NOW + 3600, "auth_time": NOW - 100,
        });
        for (k, v) in overrides.as_object().expect("object") {
            if v.is_null() {
                base.as_object_mut().expect("object").remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    #[test]
    fn claims_checks_name_what_failed() {
        let fb = issuer(PrincipalKind::Firebase);
        let check = |overrides| check_claims(&fb, &claims(firebase(overrides)), NOW);
        let accepted = check(serde_json::json!({})).expect("valid");
        assert_eq!(accepted.principal.as_str(), "firebase:uid-1");
        assert_eq!(accepted.until, NOW + 3600 + SKEW);
        let skewed =
            serde_json::json!({"exp": NOW - SKEW, "iat": NOW + SKEW, "auth_time": NOW + SKEW, "nbf": NOW + SKEW});
        assert!(check(skewed).is_ok(), "within the skew");
        let float = serde_json::json!({"exp": (NOW + 60) as f64 + 0.5});
        assert!(check(float).is_ok(), "NumericDate may be fractional");
        let cases = [
            (
                serde_json::json!({"aud": "other"}),
                TokenError::Audience {
                    expected: "\"demo-project\"".into(),
                },
            ),
            (
                serde_json::json!({"aud": ["a", "b"]}),
                TokenError::Audience {
                    expected: "\"demo-project\"".into(),
                },
            ),
            (serde_json::json!({"aud": null}), TokenError::Missing("aud")),
            (
                serde_json::json!({"exp": NOW - SKEW - 1}),
                TokenError::Expired(SKEW + 1),
            ),
            (serde_json::json!({"exp": null}), TokenError::Missing("exp")),
            (serde_json::json!({"exp": "tomorrow"}), TokenError::NotANumber("exp")),
            (
                serde_json::json!({"nbf": NOW + SKEW + 1}),
                TokenError::NotYetValid(SKEW + 1),
            ),
            (
                serde_json::json!({"iat": NOW + SKEW + 1}),
                TokenError::IssuedInFuture(SKEW + 1),
            ),
            (serde_json::json!({"iat": null}), TokenError::Missing("iat")),
            (
                serde_json::json!({"auth_time": NOW + SKEW + 1}),
                TokenError::AuthTimeInFuture(SKEW + 1),
            ),
            (serde_json::json!({"auth_time": null}), TokenError::Missing("auth_time")),
            (serde_json::json!({"sub": ""}), TokenError::Subject),
            (serde_json::json!({"sub": "a\u{0}b"}), TokenError::Subject),
            (serde_json::json!({"sub": null}), TokenError::Missing("sub")),
        ];
        for (overrides, expected) in cases {
            assert_eq!(check(overrides.clone()).expect_err("refused"), expected, "{overrides}");
        }
        assert!(check(serde_json::json!({"aud": ["other", "demo-project"]})).is_ok());
    }

    #[test]
    fn google_tokens_need_no_auth_time_and_take_any_configured_audience() {
        let google = issuer(PrincipalKind::Google);
        for aud in ["https://chat.example", "client-id"] {
            let c = claims(serde_json::json!({
                "iss": "accounts.google.com", "aud": aud, "sub": "1098", "iat": NOW, "exp": NOW + 60,
            }));
            let accepted = check_claims(&google, &c, NOW).expect("valid");
            assert_eq!(accepted.principal.as_str(), "google:1098");
        }
    }

    #[tokio::test]
    async fn the_shape_algorithm_and_issuer_are_checked_before_any_key_is_fetched() {
        // The key set's URL is unreachable: none of these may get that far.
        let issuers = [issuer(PrincipalKind::Firebase)];
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = part(firebase(serde_json::json!({})));
        let header = |alg: &str| part(serde_json::json!({"alg": alg, "kid": "k1", "typ": "JWT"}));
        let cases = [
            (String::new(), "three base64url parts"),
            ("a.b".to_string(), "three base64url parts"),
            ("a.b.c.d".to_string(), "three base64url parts"),
            (format!(".{claims}.sig"), "three base64url parts"),
            (format!("{}.{claims}.sig", "e30="), "base64url"),
            (
                format!("{}.{claims}.sig", part(serde_json::json!([1]))),
                "header is not a JSON object",
            ),
            (
                format!("{}.{claims}.sig", part(serde_json::json!({"kid": "k1"}))),
                "no alg",
            ),
            (format!("{}.{claims}.", header("none")), "\"none\"; only RS256"),
            (format!("{}.{claims}.sig", header("HS256")), "\"HS256\"; only RS256"),
            (
                format!("{}.{}.sig", header("RS256"), part(serde_json::json!("x"))),
                "claims are not a JSON object",
            ),
            (
                format!("{}.{}.sig", header("RS256"), part(serde_json::json!({"aud": "x"}))),
                "no iss claim",
            ),
            (
                format!(
                    "{}.{}.sig",
                    header("RS256"),
                    part(firebase(serde_json::json!({"iss": "https://evil.example"})))
                ),
                "issuer (iss) \"https://evil.example\" is not accepted here; accepted: https://securetoken.google.com/demo-project",
            ),
            (
                format!("{}.{claims}.sig", part(serde_json::json!({"alg": "RS256"}))),
                "names no signing key (kid)",
            ),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "longer than 16384 bytes"),
        ];
        for (token, expected) in cases {
            let err = verify(&issuers, &token).await.expect_err(expected);
            assert!(err.to_string().contains(expected), "{token:.60}: {err}");
            assert!(!matches!(err, TokenError::KeysUnavailable { .. }), "{err}");
        }
    }
}
