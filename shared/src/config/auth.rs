//! The authentication settings: `API_KEYS`, comma-separated `NAME:KEY` or
//! bare `KEY` entries ([`crate::auth::keys`]).

use super::{ConfigError, Env};
use crate::auth::keys::{self, ApiKey};

/// Who may call the functions. With none of it set, every request is
/// accepted as `anonymous`.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `API_KEYS`: the keys `X-API-Key` may hold, each with its name.
    pub api_keys: Vec<ApiKey>,
}

impl AuthSettings {
    /// Whether any credential is required (else every request is
    /// `anonymous`).
    pub fn is_on(&self) -> bool {
        !self.api_keys.is_empty()
    }
}

pub(super) fn auth_settings(env: &Env<'_>) -> Result<AuthSettings, ConfigError> {
    let api_keys = match env.get("API_KEYS") {
        // The value holds keys: it is never echoed.
        Some(value) => keys::parse_list(&value)
            .map_err(|err| ConfigError::new("API_KEYS", "(not shown: it holds keys)", err.to_string()))?,
        None => Vec::new(),
    };
    Ok(AuthSettings { api_keys })
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
    fn defaults_are_off() {
        assert!(!settings(&[]).expect("defaults").is_on());
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
