//! The HTTP layer every function shares: who may call (see `auth`), CORS,
//! body limits, the client address rules and the rate limits' spelling.

use std::fmt;
use std::time::Duration;

use super::{AuthSettings, ConfigError, Env, auth, parse_bool};

/// `N/<window>`: at most N requests per client per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u64,
    pub window: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.max, self.window.as_secs())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// The settings of the HTTP layer every function shares.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// API keys and ID token issuers: who may call (`API_KEYS`, `AUTH_*`).
    pub auth: AuthSettings,
    pub cors_allowed_origins: CorsOrigins,
    pub max_body_bytes: usize,
    /// The longest `message` (in characters) a chat request may carry.
    pub max_message_chars: usize,
    /// Read the client address from `X-Forwarded-For` (set by Cloud Run's
    /// front end); only true behind a proxy that sets it, else forgeable.
    pub trust_proxy: bool,
    /// Count anonymous requests by their `X-Client-ID` rather than their
    /// address (`TRUST_CLIENT_ID`): only behind a gateway that authenticates
    /// end users and sets the header itself, as any client can send any id.
    pub trust_client_id: bool,
    /// A request body that sends nothing for this long is answered 408, so
    /// a client that never finishes its body cannot hold a connection.
    pub body_timeout: Duration,
    /// The `Host` values `/mcp` answers (`MCP_ALLOWED_HOSTS`), against DNS
    /// rebinding: a web page that makes a browser call an open MCP server
    /// on its own machine. `None`: any host, the default where no browser
    /// of ours can be the victim (Cloud Run, Lambda) and wherever requests
    /// must carry credentials anyway.
    pub mcp_allowed_hosts: Option<Vec<String>>,
    /// The service's public URL (`PUBLIC_URL`, no trailing slash), for
    /// what names it to others (the A2A agent card); else derived from
    /// each request's `Host` (and `X-Forwarded-Proto` behind a proxy).
    pub public_url: Option<String>,
    /// Serve the browser console at `/` (`CONSOLE`): `None` when unset,
    /// which `local` reads as on and a deployed function as off.
    pub console: Option<bool>,
}

/// The HTTP settings; `K_SERVICE` (Cloud Run) turns on `TRUST_PROXY` by
/// default, as its front end sets `X-Forwarded-For`.
pub(super) fn http_settings(env: &Env<'_>) -> Result<HttpSettings, ConfigError> {
    Ok(HttpSettings {
        auth: auth::auth_settings(env)?,
        cors_allowed_origins: cors_origins(env)?,
        max_body_bytes: env.parse_or(
            "MAX_BODY_BYTES",
            1024 * 1024,
            "a size in bytes from 1024 to 104857600",
            |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1024..=100 * 1024 * 1024).contains(n))
            },
        )?,
        max_message_chars: env.parse_or(
            "MAX_MESSAGE_CHARS",
            32_000,
            // A turn must fit a Firestore document (1 MiB): 200,000
            // characters are at most 800 KB of UTF-8.
            "a number of characters from 1 to 200000",
            |v| v.parse::<usize>().ok().filter(|n| (1..=200_000).contains(n)),
        )?,
        trust_proxy: env.parse_or(
            "TRUST_PROXY",
            env.get("K_SERVICE").is_some(),
            "true or false",
            parse_bool,
        )?,
        trust_client_id: env.parse_or("TRUST_CLIENT_ID", false, "true or false", parse_bool)?,
        body_timeout: env.seconds_or("BODY_TIMEOUT_SECONDS", Duration::from_secs(30), 0.1..=3600.0)?,
        mcp_allowed_hosts: mcp_allowed_hosts(env)?,
        public_url: match env.get("PUBLIC_URL") {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none());
                if parsed.is_none() {
                    return Err(ConfigError::new(
                        "PUBLIC_URL",
                        &url,
                        "the service's URL, such as https://agent-abc-uc.a.run.app (http or https, no query)",
                    ));
                }
                Some(url.trim_end_matches('/').to_string())
            }
        },
        console: match env.get("CONSOLE") {
            None => None,
            Some(v) => Some(parse_bool(&v).ok_or_else(|| ConfigError::new("CONSOLE", &v, "on or off"))?),
        },
    })
}

/// `MCP_ALLOWED_HOSTS`: `*`, or host names (with an optional `:port`).
/// Unset: any host on Cloud Run and Lambda (the platform's own URL is the
/// host), else the loopback names only.
fn mcp_allowed_hosts(env: &Env<'_>) -> Result<Option<Vec<String>>, ConfigError> {
    const EXPECTED: &str = "* or a comma-separated list of host names, each with an optional :port \
         (agent.example.com,localhost:8080)";
    let Some(v) = env.get("MCP_ALLOWED_HOSTS") else {
        let deployed = env.get("K_SERVICE").is_some() || env.get("AWS_LAMBDA_RUNTIME_API").is_some();
        return Ok((!deployed).then(|| ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()));
    };
    if v == "*" {
        return Ok(None);
    }
    let hosts: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    let valid = |h: &String| {
        h.parse::<http::uri::Authority>()
            .is_ok_and(|a| a.as_str() == h && !h.contains('@'))
    };
    if hosts.is_empty() || !hosts.iter().all(valid) {
        return Err(ConfigError::new("MCP_ALLOWED_HOSTS", &v, EXPECTED));
    }
    Ok(Some(hosts))
}
fn cors_origins(env: &Env<'_>) -> Result<CorsOrigins, ConfigError> {
    let Some(v) = env.get("CORS_ALLOWED_ORIGINS") else {
        return Ok(CorsOrigins::Any);
    };
    if v == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut origins = Vec::new();
    for origin in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let valid = reqwest::Url::parse(origin)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/")
            .is_some()
            && !origin.ends_with('/');
        if !valid {
            return Err(ConfigError::new(
                "CORS_ALLOWED_ORIGINS",
                &v,
                "* or a comma-separated list of origins such as https://app.example.com,http://localhost:3000 \
                 (scheme and host, optional port, no path or trailing slash)",
            ));
        }
        origins.push(origin.to_string());
    }
    if origins.is_empty() {
        return Ok(CorsOrigins::Any);
    }
    Ok(CorsOrigins::List(origins))
}

pub(super) const RATE_LIMIT_EXPECTED: &str = "requests per window such as 100/60s, 20/1m or 1000/1h, at most 10000 per window \
     and a window of at most 7d (or off for no limit)";

/// `100/60s`, `100/60`, `20/1m`, `1000/1h`, `5/1d`, or `off`. At most
/// [`MAX_LIMIT`](crate::store::rate_log::MAX_LIMIT) requests per window:
/// the store keeps the time of each, in one record per client.
pub(super) fn parse_rate_limit(v: &str) -> Option<Option<RateLimit>> {
    if matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "0") {
        return Some(None);
    }
    let (max, window) = v.split_once('/')?;
    let max: u64 = max
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=crate::store::rate_log::MAX_LIMIT).contains(n))?;
    let window = window.trim();
    if window.is_empty() {
        return None;
    }
    let (number, unit) = match window.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => window.split_at(i),
        None => (window, "s"),
    };
    let number: u64 = if number.is_empty() { 1 } else { number.parse().ok()? };
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    if seconds == 0 || seconds > 7 * 86_400 {
        return None;
    }
    Some(Some(RateLimit {
        max,
        window: Duration::from_secs(seconds),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(vars: &[(&str, &str)]) -> Result<HttpSettings, ConfigError> {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        http_settings(&Env(&lookup))
    }

    #[test]
    fn console_is_unset_on_or_off() {
        let console = |vars: &[(&str, &str)]| http(vars).map(|s| s.console);
        assert_eq!(console(&[]), Ok(None), "unset: the function decides");
        assert_eq!(console(&[("CONSOLE", "on")]), Ok(Some(true)));
        assert_eq!(console(&[("CONSOLE", "off")]), Ok(Some(false)));
        let err = console(&[("CONSOLE", "maybe")]).expect_err("neither on nor off");
        assert_eq!(err.var, "CONSOLE");
        assert!(err.to_string().contains("on or off"), "{err}");
    }
}
