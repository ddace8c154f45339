//! Who is calling: every request's [`Principal`], from the credential it
//! presented.
//!
//! - [`principal`]: the principal, its stable string form (what records are
//!   keyed by) and its extractor for handlers.
//! - [`keys`]: `API_KEYS`, named keys and their constant-time lookup.
//!
//! The [`Authenticator`] decides, and the shared HTTP layer
//! (`http::auth`) applies it to every request of a function's routes: with
//! `API_KEYS` unset every request is `anonymous`; otherwise a request needs
//! a valid API key (`X-API-Key`), and its principal is the key's name.

pub mod keys;
pub mod principal;

use axum::http::HeaderMap;

pub use principal::{Principal, PrincipalKind};

use crate::config::AuthSettings;
use crate::http::ApiError;
use keys::ApiKey;

/// The header an API key is sent in.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// Decides who each request is, from the settings. Built once per process
/// (`App::build`).
pub struct Authenticator {
    keys: Box<[ApiKey]>,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Authenticator {
        Authenticator {
            keys: settings.api_keys.clone().into(),
        }
    }

    /// Whether API keys are required.
    pub fn api_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The principal `headers` show, or the refusal.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if !self.api_keys() {
            return Ok(Principal::anonymous());
        }
        let Some(presented) = headers.get(API_KEY_HEADER) else {
            return Err(ApiError::unauthenticated(
                "this function requires an API key: send it in the X-API-Key header",
            ));
        };
        match keys::find(&self.keys, presented.as_bytes()) {
            Some(principal) => Ok(principal.clone()),
            None => Err(ApiError::unauthenticated(
                "the X-API-Key header does not hold a valid API key; check the key you were given",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn authenticator(vars: &[(&str, &str)]) -> Authenticator {
        Authenticator::new(&crate::testing::settings(vars).http.auth)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn outcome(identified: Result<Principal, ApiError>) -> String {
        match identified {
            Ok(p) => p.to_string(),
            Err(e) => format!("{} {}", e.status.as_u16(), e.message),
        }
    }

    #[test]
    fn who_a_request_is() {
        let off = authenticator(&[]);
        assert_eq!(outcome(off.identify(&headers(&[("x-api-key", "k1")]))), "anonymous");

        let keys = authenticator(&[("API_KEYS", "ops:k1")]);
        assert_eq!(outcome(keys.identify(&headers(&[("x-api-key", "k1")]))), "key:ops");
        let missing = outcome(keys.identify(&headers(&[])));
        assert!(
            missing.starts_with("401 ") && missing.contains("X-API-Key"),
            "{missing}"
        );
        assert!(outcome(keys.identify(&headers(&[("x-api-key", "k2")]))).contains("not hold a valid API key"));
    }
}
