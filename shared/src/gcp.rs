//! Credentials from the Google Cloud metadata server.
//!
//! On Cloud Run, Cloud Functions and GCE the service's identity is one HTTP
//! call away, so no key file has to be deployed or rotated. Tokens are cached
//! until a minute before they expire: the metadata server is fast but not
//! free, and every model call needs a token.
//!
//! The host comes from `GCE_METADATA_HOST`, the override every Google client
//! library honours, so an emulator or a test server can stand in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::retry::error_chain;

pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// Tokens are refreshed this long before they expire, so a token handed out
/// is still valid when the request carrying it arrives.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Identity tokens whose expiry cannot be read are assumed to last this long
/// (the metadata server issues them for one hour).
const ID_TOKEN_ASSUMED_LIFETIME: Duration = Duration::from_secs(55 * 60);

/// The metadata server answers locally within milliseconds; waiting longer
/// only delays the error off Google Cloud.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no token could be had. The message says where it was asked for and
/// what to do on a machine that is not on Google Cloud.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "could not get {what} from the metadata server at {host}: {reason} (is this running on Google \
     Cloud? For local runs use LLM_PROVIDER=gemini with GEMINI_API_KEY)"
)]
pub struct MetadataError {
    /// "an access token" or "an identity token".
    pub what: &'static str,
    pub host: String,
    pub reason: String,
}

#[derive(Clone)]
struct Cached {
    token: String,
    /// When the token stops being handed out (its expiry minus the margin).
    refresh_at: Instant,
}

impl Cached {
    fn fresh(&self) -> Option<String> {
        (Instant::now() < self.refresh_at).then(|| self.token.clone())
    }
}

struct Inner {
    host: String,
    base: String,
    http: reqwest::Client,
    access: Mutex<Option<Cached>>,
    identity: Mutex<HashMap<String, Cached>>,
}

/// A metadata server client. Clones share the token cache.
#[derive(Clone)]
pub struct MetadataClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetadataClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataClient")
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl MetadataClient {
    /// The server `GCE_METADATA_HOST` names (in the environment or the
    /// `.env` file), or `metadata.google.internal`.
    pub fn from_env(http: reqwest::Client) -> Self {
        let host = crate::config::dotenv::var("GCE_METADATA_HOST")
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
        Self::new(host, http)
    }

    /// `host` is `host[:port]`, as in `GCE_METADATA_HOST`; a full
    /// `http://host:port` base is accepted too.
    pub fn new(host: impl Into<String>, http: reqwest::Client) -> Self {
        let host = host.into().trim().trim_end_matches('/').to_string();
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.clone()
        } else {
            format!("http://{host}")
        };
        MetadataClient {
            inner: Arc::new(Inner {
                host,
                base,
                http,
                access: Mutex::new(None),
                identity: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// An OAuth access token of the default service account, for Google APIs
    /// (`Authorization: Bearer ...`).
    pub async fn access_token(&self) -> Result<String, MetadataError> {
        // Held across the fetch: concurrent callers wait for one request
        // instead of all asking the server at once.
        let mut cached = self.inner.access.lock().await;
        if let Some(token) = cached.as_ref().and_then(Cached::fresh) {
            return Ok(token);
        }
        let fresh = self
            .fetch_access_token()
            .await
            .map_err(|reason| self.error("an access token", reason))?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// An OpenID Connect identity token for `audience` (the URL of a Cloud
    /// Run service, say), to call services that check the caller's identity.
    pub async fn id_token(&self, audience: &str) -> Result<String, MetadataError> {
        let mut cache = self.inner.identity.lock().await;
        if let Some(token) = cache.get(audience).and_then(Cached::fresh) {
            return Ok(token);
        }
        let fresh = self
            .fetch_id_token(audience)
            .await
            .map_err(|reason| self.error("an identity token", reason))?;
        let token = fresh.token.clone();
        cache.insert(audience.to_string(), fresh);
        Ok(token)
    }

    fn error(&self, what: &'static str, reason: String) -> MetadataError {
        MetadataError {
            what,
            host: self.inner.host.clone(),
            reason,
        }
    }

    async fn get(&self, url: reqwest::Url) -> Result<String, String> {
        let response = self
            .inner
            .http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|err| error_chain(&err.without_url()))?;
        let status = response.status();
        let body = response.text().await.map_err(|err| error_chain(&err.without_url()))?;
        if !status.is_success() {
            let body = body.trim();
            let detail: String = body.chars().take(200).collect();
            return Err(if detail.is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                format!("HTTP {}: {detail}", status.as_u16())
            });
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        reqwest::Url::parse(&format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/{path}",
            self.inner.base
        ))
        .map_err(|err| format!("not a valid host ({err})"))
    }

    async fn fetch_access_token(&self) -> Result<Cached, String> {
        let body = self.get(self.url("token")?).await?;
        let answer: TokenAnswer =
            serde_json::from_str(&body).map_err(|err| format!("the answer is not a token ({err})"))?;
        if answer.access_token.is_empty() {
            return Err("the answer holds an empty token".into());
        }
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(0));
        Ok(Cached {
            token: answer.access_token,
            refresh_at: refresh_at(lifetime),
        })
    }

    async fn fetch_id_token(&self, audience: &str) -> Result<Cached, String> {
        let mut url = self.url("identity")?;
        url.query_pairs_mut()
            .append_pair("audience", audience)
            .append_pair("format", "full");
        let token = self.get(url).await?.trim().to_string();
        if token.is_empty() {
            return Err("the answer holds an empty token".into());
        }
        let lifetime = jwt_expiry(&token)
            .map(|exp| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Duration::from_secs(exp.saturating_sub(now))
            })
            .unwrap_or(ID_TOKEN_ASSUMED_LIFETIME);
        Ok(Cached {
            token,
            refresh_at: refresh_at(lifetime),
        })
    }
}

fn refresh_at(lifetime: Duration) -> Instant {
    Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN)
}

/// The `exp` claim (seconds since the epoch) of a JWT, unverified: it only
/// decides when to fetch a new token, the receiver checks the signature.
pub(crate) fn jwt_expiry(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64()
        .or_else(|| exp.as_f64().filter(|e| *e >= 0.0).map(|e| e as u64))
}

/// Base64url without padding (RFC 4648 section 5), as JWTs use it; padding is
/// tolerated. A dozen lines do not justify a dependency.
pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character cannot encode a byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    #[test]
    fn base64url_decodes_known_vectors() {
        // RFC 4648 test vectors, without padding.
        for (encoded, decoded) in [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9vYmE", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("Zm9vYg==", "foob"),
        ] {
            assert_eq!(
                base64url_decode(encoded).as_deref(),
                Some(decoded.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(base64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zm9v!"), None);
    }

    #[test]
    fn jwt_expiry_reads_the_exp_claim() {
        // {"alg":"RS256"} . {"aud":"x","exp":1700000000} . signature
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4IiwiZXhwIjoxNzAwMDAwMDAwfQ.c2ln";
        assert_eq!(jwt_expiry(jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("not a jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }

    #[derive(Clone, Default)]
    struct Seen {
        token_calls: Arc<AtomicUsize>,
        identity_calls: Arc<AtomicUsize>,
        expires_in: u64,
    }

    async fn token(State(seen): State<Seen>, headers: HeaderMap) -> (StatusCode, String) {
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return (StatusCode::FORBIDDEN, "missing Metadata-Flavor:Google header".into());
        }
        let n = seen.token_calls.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::json!({"access_token": format!("tok-{n}"), "expires_in": seen.expires_in, "token_type": "Bearer"});
        (StatusCode::OK, body.to_string())
    }

    async fn identity(State(seen): State<Seen>, Query(query): Query<HashMap<String, String>>) -> (StatusCode, String) {
        seen.identity_calls.fetch_add(1, Ordering::SeqCst);
        if query.get("format").map(String::as_str) != Some("full") {
            return (StatusCode::BAD_REQUEST, "format".into());
        }
        let aud = query.get("audience").cloned().unwrap_or_default();
        // Payload {"exp":4102444800} (year 2100); the audience is echoed in
        // the signature part so the test can see it arrived intact.
        (
            StatusCode::OK,
            format!("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.{aud}"),
        )
    }

    async fn server(seen: Seen) -> String {
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(token),
            )
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/identity",
                get(identity),
            )
            .with_state(seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr.to_string()
    }

    #[tokio::test]
    async fn access_tokens_are_fetched_and_cached() {
        let seen = Seen {
            expires_in: 3599,
            ..Seen::default()
        };
        let host = server(seen.clone()).await;
        let client = MetadataClient::new(host, reqwest::Client::new());
        assert_eq!(client.access_token().await.expect("token"), "tok-0");
        assert_eq!(client.clone().access_token().await.expect("token"), "tok-0");
        assert_eq!(seen.token_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn tokens_about_to_expire_are_refreshed() {
        let seen = Seen {
            expires_in: 30,
            ..Seen::default()
        };
        let host = server(seen.clone()).await;
        let client = MetadataClient::new(format!("http://{host}/"), reqwest::Client::new());
        assert_eq!(client.access_token().await.expect("token"), "tok-0");
        assert_eq!(client.access_token().await.expect("token"), "tok-1");
        assert_eq!(seen.token_calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn identity_tokens_are_cached_per_audience() {
        let seen = Seen::default();
        let host = server(seen.clone()).await;
        let client = MetadataClient::new(host, reqwest::Client::new());
        let a = client.id_token("https://a.example").await.expect("token");
        assert!(a.ends_with("https://a.example"), "{a}");
        client.id_token("https://a.example").await.expect("token");
        let b = client.id_token("https://b.example/x?y=1&z").await.expect("token");
        assert!(b.ends_with("https://b.example/x?y=1&z"), "the audience is encoded: {b}");
        assert_eq!(seen.identity_calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_name_the_host_and_the_way_out() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let client = MetadataClient::new(host.clone(), reqwest::Client::new());
        let err = client.access_token().await.expect_err("nothing listens");
        let text = err.to_string();
        assert!(text.contains(&format!("metadata server at {host}")), "{text}");
        assert!(text.contains("GEMINI_API_KEY"), "{text}");
        assert!(text.contains("an access token"), "{text}");
    }
}
