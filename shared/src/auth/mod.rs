//! Who is calling: every request's [`Principal`], from the credential it
//! presented.
//!
//! - [`principal`]: the principal, its stable string form (what records are
//!   keyed by) and its extractor for handlers.
//! - [`keys`]: `API_KEYS`, named keys and their constant-time lookup.
//! - `token`: ID tokens (Firebase Authentication, Google) and every check
//!   they must pass.
//! - `key_set`: each issuer's public keys, fetched and cached.
//! - `verified`: tokens already verified, so a token sent with every
//!   request costs one signature check.
//!
//! The [`Authenticator`] decides, and the shared HTTP layer
//! (`http::auth`) applies it to every request of a function's routes:
//!
//! - with no credential configured (`API_KEYS`, `AUTH_FIREBASE_PROJECT`,
//!   `AUTH_GOOGLE_AUDIENCE` all unset), every request is `anonymous`;
//! - otherwise a request needs a valid API key (`X-API-Key`) or a valid ID
//!   token (`Authorization: Bearer`). A credential of a kind that is not
//!   configured is ignored (a private Cloud Run service receives the ID
//!   token Cloud Run already checked); one that is configured is always
//!   checked, and a wrong one is a 401 that says which check failed, even
//!   beside a valid one of the other kind. When both are valid, the
//!   principal is the token's end user: the key then names the app, the
//!   token the person using it.

pub(crate) mod key_set;
pub mod keys;
pub mod principal;
pub(crate) mod token;
pub(crate) mod verified;

use axum::http::{HeaderMap, HeaderValue};

pub use principal::{Principal, PrincipalKind};

use crate::config::AuthSettings;
use crate::http::{ApiError, Metrics};
use key_set::{KeySet, RETRY_AFTER_FAILURE};
use keys::ApiKey;
use token::{Issuer, TokenError};
use verified::VerifiedTokens;

/// The header an API key is sent in.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// How long a key-set fetch waits to connect (each fetch has its own
/// overall limit, `key_set::FETCH_TIMEOUT`).
const KEY_SET_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Decides who each request is, from the settings. Built once per process
/// (`App::build`), so the key sets it caches are shared by every request.
pub struct Authenticator {
    keys: Box<[ApiKey]>,
    /// Firebase first, then Google, as configured; empty when ID tokens are
    /// not accepted.
    issuers: Box<[Issuer]>,
    verified: VerifiedTokens,
}

/// What a request's headers say before any token is verified.
pub(crate) enum Identified {
    /// Decided: the principal, or the refusal.
    Now(Result<Principal, ApiError>),
    /// A bearer token to verify (which may fetch a key set).
    Token(String),
}

impl Authenticator {
    /// Key sets are fetched with the shared outbound client
    /// (`llm::http_client`), built only when ID tokens are accepted (a cold
    /// start does not pay for a TLS client it never uses), and their
    /// fetches counted in `metrics`.
    pub fn new(settings: &AuthSettings, metrics: &Metrics) -> anyhow::Result<Authenticator> {
        let mut issuers = Vec::new();
        if settings.tokens() {
            let http = crate::llm::http_client(KEY_SET_CONNECT_TIMEOUT)?;
            if let Some(project) = &settings.firebase_project {
                let url = settings.firebase_keys_url.clone();
                issuers.push(Issuer::firebase(
                    project,
                    KeySet::new("firebase", url, http.clone(), metrics),
                ));
            }
            if !settings.google_audiences.is_empty() {
                let url = settings.google_keys_url.clone();
                let keys = KeySet::new("google", url, http, metrics);
                issuers.push(Issuer::google(settings.google_audiences.clone(), keys));
            }
        }
        Ok(Authenticator {
            keys: settings.api_keys.clone().into(),
            issuers: issuers.into(),
            verified: VerifiedTokens::default(),
        })
    }

    /// Whether API keys are accepted (and, unless tokens are too, required).
    pub fn api_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether bearer ID tokens are accepted.
    pub fn tokens(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The key-set URLs in use, for the start-up log.
    pub fn key_set_urls(&self) -> Vec<&str> {
        self.issuers.iter().map(|i| i.key_set().url()).collect()
    }

    /// What `headers` say, without waiting for anything: the principal of
    /// an API key or `anonymous`, a refusal, or a token to verify.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Identified {
        if !self.api_keys() && !self.tokens() {
            return Identified::Now(Ok(Principal::anonymous()));
        }
        let bearer = if self.tokens() { bearer_token(headers) } else { None };
        let mut key_principal = None;
        if self.api_keys()
            && let Some(presented) = headers.get(API_KEY_HEADER)
        {
            match keys::find(&self.keys, presented.as_bytes()) {
                Some(principal) => key_principal = Some(principal.clone()),
                None => {
                    return Identified::Now(Err(ApiError::unauthenticated(
                        "the X-API-Key header does not hold a valid API key; check the key you were given",
                    )));
                }
            }
        }
        match (bearer, key_principal) {
            (Some(token), _) => Identified::Token(token.to_string()),
            (None, Some(principal)) => Identified::Now(Ok(principal)),
            (None, None) => Identified::Now(Err(ApiError::unauthenticated(self.missing()))),
        }
    }

    /// Verifies a bearer token from [`Authenticator::identify`], unless the
    /// very same token passed before and has not expired.
    pub(crate) async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let digest = verified::digest(token);
        if let Some(principal) = self.verified.get(&digest, token::now_seconds()) {
            return Ok(principal);
        }
        match token::verify(&self.issuers, token).await {
            Ok(accepted) => {
                let principal = accepted.principal.clone();
                let now = token::now_seconds();
                self.verified.insert(digest, accepted.principal, accepted.until, now);
                Ok(principal)
            }
            Err(TokenError::KeysUnavailable { issuer, why }) => {
                tracing::warn!("an ID token could not be checked: {why}");
                let err = TokenError::KeysUnavailable { issuer, why };
                Err(ApiError::unavailable(err.to_string(), RETRY_AFTER_FAILURE))
            }
            Err(err) => Err(ApiError::unauthenticated(err.to_string())),
        }
    }

    /// The `WWW-Authenticate` challenge every 401 carries (HTTP requires
    /// one), naming the credentials this function accepts: `Bearer` for ID
    /// tokens, with `error="invalid_token"` when one was presented and
    /// refused (RFC 6750), and `ApiKey header="X-API-Key"` for API keys.
    /// `None` when nothing is required, where no request is refused.
    pub(crate) fn challenge(&self, token_refused: bool) -> Option<HeaderValue> {
        let challenge = match (self.tokens(), token_refused, self.api_keys()) {
            (false, _, false) => return None,
            (false, _, true) => r#"ApiKey header="X-API-Key""#,
            (true, false, false) => "Bearer",
            (true, true, false) => r#"Bearer error="invalid_token""#,
            (true, false, true) => r#"Bearer, ApiKey header="X-API-Key""#,
            (true, true, true) => r#"Bearer error="invalid_token", ApiKey header="X-API-Key""#,
        };
        Some(HeaderValue::from_static(challenge))
    }

    /// Whether `headers` present a bearer token (for [`Self::challenge`]).
    pub(crate) fn presents_token(headers: &HeaderMap) -> bool {
        bearer_token(headers).is_some()
    }

    /// The 401 message for a request with no credential.
    fn missing(&self) -> &'static str {
        match (self.api_keys(), self.tokens()) {
            (true, false) => "this function requires an API key: send it in the X-API-Key header",
            (false, true) => "this function requires an ID token: send it as Authorization: Bearer <token>",
            _ => {
                "this function requires an API key (the X-API-Key header) or an ID token \
                 (Authorization: Bearer <token>)"
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case);
/// `None` when there is no such header or it holds another scheme.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn authenticator(vars: &[(&str, &str)]) -> Authenticator {
        let settings = crate::testing::settings(vars);
        Authenticator::new(&settings.http.auth, &Metrics::new("test")).expect("an authenticator")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn outcome(identified: Identified) -> String {
        match identified {
            Identified::Now(Ok(p)) => p.to_string(),
            Identified::Now(Err(e)) => format!("{} {}", e.status.as_u16(), e.message),
            Identified::Token(t) => format!("token {t:?}"),
        }
    }

    #[test]
    fn who_a_request_is() {
        let off = authenticator(&[]);
        assert_eq!(outcome(off.identify(&headers(&[("x-api-key", "k1")]))), "anonymous");
        assert_eq!(
            outcome(off.identify(&headers(&[("authorization", "Bearer t")]))),
            "anonymous"
        );

        let keys = authenticator(&[("API_KEYS", "ops:k1")]);
        assert_eq!(outcome(keys.identify(&headers(&[("x-api-key", "k1")]))), "key:ops");
        let missing = outcome(keys.identify(&headers(&[])));
        assert!(
            missing.starts_with("401 ") && missing.contains("X-API-Key"),
            "{missing}"
        );
        assert!(outcome(keys.identify(&headers(&[("x-api-key", "k2")]))).contains("not hold a valid API key"));
        assert_eq!(
            outcome(keys.identify(&headers(&[("x-api-key", "k1"), ("authorization", "Bearer t")]))),
            "key:ops",
            "a token is not a credential here"
        );

        let both = authenticator(&[("API_KEYS", "ops:k1"), ("AUTH_FIREBASE_PROJECT", "demo-project")]);
        let with = |pairs| outcome(both.identify(&headers(pairs)));
        assert_eq!(with(&[("authorization", "Bearer abc")]), "token \"abc\"");
        assert_eq!(with(&[("authorization", "bearer  abc ")]), "token \"abc\"");
        assert_eq!(
            with(&[("authorization", "Bearer")]),
            "token \"\"",
            "an empty token is checked, and refused"
        );
        assert_eq!(
            with(&[("x-api-key", "k1"), ("authorization", "Bearer abc")]),
            "token \"abc\"",
            "the user wins"
        );
        assert!(with(&[("x-api-key", "k9"), ("authorization", "Bearer abc")]).contains("not hold a valid API key"));
        assert_eq!(
            with(&[("x-api-key", "k1"), ("authorization", "Basic b3BzOms=")]),
            "key:ops"
        );
        let missing = with(&[("authorization", "Basic b3BzOms=")]);
        assert!(missing.contains("X-API-Key") && missing.contains("Bearer"), "{missing}");

        let tokens = authenticator(&[("AUTH_GOOGLE_AUDIENCE", "https://chat.example")]);
        let missing = outcome(tokens.identify(&headers(&[("x-api-key", "k1")])));
        assert!(
            missing.contains("requires an ID token"),
            "a key is not a credential here: {missing}"
        );
    }
}
