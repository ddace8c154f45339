//! The authentication settings: API keys and the ID token issuers.
//!
//! - `API_KEYS`: comma-separated `NAME:KEY` or bare `KEY` entries
//!   ([`crate::auth::keys`]).
//! - `AUTH_FIREBASE_PROJECT`: accept Firebase Authentication ID tokens of
//!   this project.
//! - `AUTH_GOOGLE_AUDIENCE`: accept Google-signed ID tokens whose audience
//!   is one of these (comma-separated: a Cloud Run URL, an OAuth client id).
//! - `AUTH_FIREBASE_KEYS_URL`, `AUTH_GOOGLE_KEYS_URL` (tests and advanced
//!   use): where each issuer's key set is fetched, Google's by default.
//!
//! The key-set URLs are the operator's, read once here, never a client's, so
//! they do not go through the outbound-URL guard (which exists to keep
//! client-given URLs off the service's own network, and refuses loopback).
//! What matters for them is integrity: whoever can change the key set can
//! sign in as anyone, so they must be `https://`, except `http://` to a
//! loopback host, where nothing leaves the machine (tests, a local stand-in).

use super::{ConfigError, Env};
use crate::auth::keys::{self, ApiKey};

/// Firebase Authentication's key set (JWKS) for every project.
pub const FIREBASE_KEYS_URL: &str =
    "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com";

/// The keys Google signs its ID tokens with.
pub const GOOGLE_KEYS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// Who may call the functions. With none of it set, every request is
/// accepted as `anonymous`.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `API_KEYS`: the keys `X-API-Key` may hold, each with its name.
    pub api_keys: Vec<ApiKey>,
    /// `AUTH_FIREBASE_PROJECT`: Firebase Authentication ID tokens of this
    /// project are accepted as `Authorization: Bearer`.
    pub firebase_project: Option<String>,
    /// `AUTH_FIREBASE_KEYS_URL`: where Firebase's key set is fetched.
    pub firebase_keys_url: String,
    /// `AUTH_GOOGLE_AUDIENCE`: Google-signed ID tokens for any of these
    /// audiences are accepted as `Authorization: Bearer`; empty: none are.
    pub google_audiences: Vec<String>,
    /// `AUTH_GOOGLE_KEYS_URL`: where Google's key set is fetched.
    pub google_keys_url: String,
}

impl AuthSettings {
    /// Whether any credential is required (else every request is
    /// `anonymous`).
    pub fn is_on(&self) -> bool {
        !self.api_keys.is_empty() || self.tokens()
    }

    /// Whether bearer ID tokens are accepted.
    pub fn tokens(&self) -> bool {
        self.firebase_project.is_some() || !self.google_audiences.is_empty()
    }
}

pub(super) fn auth_settings(env: &Env<'_>) -> Result<AuthSettings, ConfigError> {
    let api_keys = match env.get("API_KEYS") {
        // The value holds keys: it is never echoed.
        Some(value) => keys::parse_list(&value)
            .map_err(|err| ConfigError::new("API_KEYS", "(not shown: it holds keys)", err.to_string()))?,
        None => Vec::new(),
    };
    let firebase_project = env.get("AUTH_FIREBASE_PROJECT");
    if let Some(project) = &firebase_project
        && !valid_project_id(project)
    {
        return Err(ConfigError::new(
            "AUTH_FIREBASE_PROJECT",
            project,
            "a Firebase project id: 6 to 30 lowercase letters, digits and hyphens, starting with a \
             letter (the projectId of the app's Firebase config)",
        ));
    }
    let google_audiences: Vec<String> = env
        .get("AUTH_GOOGLE_AUDIENCE")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = google_audiences
        .iter()
        .find(|a| a.len() > 512 || !a.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ConfigError::new(
            "AUTH_GOOGLE_AUDIENCE",
            bad,
            "comma-separated audiences the ID tokens are issued for (the service's URL, e.g. \
             https://chat-abc123-uc.a.run.app, or an OAuth client id), each without spaces",
        ));
    }
    let firebase_keys_url = keys_url(env, "AUTH_FIREBASE_KEYS_URL", FIREBASE_KEYS_URL)?;
    let google_keys_url = keys_url(env, "AUTH_GOOGLE_KEYS_URL", GOOGLE_KEYS_URL)?;
    for (url_var, url, needs, set) in [
        (
            "AUTH_FIREBASE_KEYS_URL",
            &firebase_keys_url,
            "AUTH_FIREBASE_PROJECT",
            firebase_project.is_some(),
        ),
        (
            "AUTH_GOOGLE_KEYS_URL",
            &google_keys_url,
            "AUTH_GOOGLE_AUDIENCE",
            !google_audiences.is_empty(),
        ),
    ] {
        if env.get(url_var).is_some() && !set {
            return Err(ConfigError::new(
                url_var,
                url,
                format!("to be unset unless {needs} is set: the keys would check no token"),
            ));
        }
    }
    Ok(AuthSettings {
        api_keys,
        firebase_project,
        firebase_keys_url,
        google_audiences,
        google_keys_url,
    })
}

/// A Google Cloud project id, as Firebase projects have.
fn valid_project_id(id: &str) -> bool {
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `https://`, or `http://` to a loopback host (see the module
/// documentation for why).
fn keys_url(env: &Env<'_>, name: &str, default: &str) -> Result<String, ConfigError> {
    let url = env.get_or(name, default);
    let parsed = reqwest::Url::parse(&url).ok();
    let loopback = |u: &reqwest::Url| {
        let host = u.host_str().unwrap_or_default();
        // IPv6 literals come in brackets; every IPv4 spelling is normalised.
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => bare.eq_ignore_ascii_case("localhost"),
        }
    };
    let ok = parsed.as_ref().is_some_and(|u| {
        u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && (u.scheme() == "https" || (u.scheme() == "http" && loopback(u)))
    });
    if !ok {
        return Err(ConfigError::new(
            name,
            &url,
            "an https:// URL of a JSON Web Key Set (http:// only to localhost or a loopback \
             address, for tests)",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<AuthSettings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned()).map(|s| s.http.auth)
    }

    #[test]
    fn defaults_are_off_with_google_key_sets() {
        let s = settings(&[]).expect("defaults");
        assert!(!s.is_on() && !s.tokens());
        assert_eq!(s.firebase_keys_url, FIREBASE_KEYS_URL);
        assert_eq!(s.google_keys_url, GOOGLE_KEYS_URL);
    }

    #[test]
    fn token_settings_are_read_and_validated() {
        let s = settings(&[
            ("AUTH_FIREBASE_PROJECT", "demo-project"),
            (
                "AUTH_GOOGLE_AUDIENCE",
                "https://chat.example, 123-abc.apps.googleusercontent.com",
            ),
            ("AUTH_FIREBASE_KEYS_URL", "http://127.0.0.1:9999/jwks"),
            ("AUTH_GOOGLE_KEYS_URL", "http://localhost:9999/certs"),
        ])
        .expect("valid");
        assert!(s.is_on() && s.tokens() && s.api_keys.is_empty());
        assert_eq!(s.firebase_project.as_deref(), Some("demo-project"));
        assert_eq!(
            s.google_audiences,
            ["https://chat.example", "123-abc.apps.googleusercontent.com"]
        );
        assert_eq!(s.firebase_keys_url, "http://127.0.0.1:9999/jwks");

        for (var, bad) in [
            ("AUTH_FIREBASE_PROJECT", "Demo"),
            ("AUTH_FIREBASE_PROJECT", "1project"),
            ("AUTH_FIREBASE_PROJECT", "project-"),
            ("AUTH_FIREBASE_PROJECT", "a_b_c_d"),
            ("AUTH_GOOGLE_AUDIENCE", "a b"),
        ] {
            let err = settings(&[(var, bad)]).expect_err(bad);
            assert_eq!((err.var.as_str(), err.value.as_str()), (var, bad));
        }
        for bad in [
            "http://keys.example/jwks",
            "http://10.0.0.1/jwks",
            "ftp://localhost/jwks",
            "https://user:pw@keys.example/jwks",
            "not a url",
        ] {
            let vars = [
                ("AUTH_FIREBASE_PROJECT", "demo-project"),
                ("AUTH_FIREBASE_KEYS_URL", bad),
            ];
            let err = settings(&vars).expect_err(bad);
            assert_eq!(err.var, "AUTH_FIREBASE_KEYS_URL", "{bad}");
            assert!(err.to_string().contains("https://"), "{err}");
        }
        let err = settings(&[("AUTH_GOOGLE_KEYS_URL", "https://keys.example")]).expect_err("no audience");
        assert_eq!(err.var, "AUTH_GOOGLE_KEYS_URL");
        assert!(err.to_string().contains("AUTH_GOOGLE_AUDIENCE"), "{err}");
    }

    #[test]
    fn api_keys_errors_name_the_setting_and_never_a_key() {
        let err = settings(&[("API_KEYS", "ok:k1, bad name:hunter2")]).expect_err("bad name");
        assert_eq!(err.var, "API_KEYS");
        let text = err.to_string();
        assert!(
            text.contains("entry 2") && !text.contains("hunter2") && !text.contains("bad name"),
            "{text}"
        );
        let s = settings(&[("API_KEYS", "ops:k1,k2")]).expect("valid");
        let names: Vec<&str> = s.api_keys.iter().map(|k| k.principal().as_str()).collect();
        assert_eq!(names, ["key:ops", "key:015f7e6bc5ae"]);
    }
}
