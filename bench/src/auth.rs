//! `bench chat BIN ... AUTH=key|token`: the credential every request of a
//! run carries, to measure what authentication costs against a run without
//! `AUTH` (no credential configured: every request `anonymous`).
//!
//! - `AUTH=key`: the function gets `API_KEYS=bench:<key>` and every request
//!   `X-API-Key: <key>` (principal `key:bench`).
//! - `AUTH=token`: a local ID token issuer (`agent_core::testing::
//!   TestIssuer`: a 2048-bit RSA key, its key set served on loopback) stands
//!   in for Firebase Authentication; the function gets
//!   `AUTH_FIREBASE_PROJECT` and `AUTH_FIREBASE_KEYS_URL`, and every request
//!   the same Firebase ID token as `Authorization: Bearer` (principal
//!   `firebase:bench-user`). The key set is fetched on the first request and
//!   cached (`max-age=3600`), so the run measures verification, not fetches.
//!
//! One principal for every connection in each case, as without `AUTH` every
//! connection is `127.0.0.1` to the rate limiter: the same one counter.
//!
//! `bench issuer [SECONDS]` serves the same stand-in issuer on its own and
//! prints its settings and a token, for runs `bench chat` does not drive
//! (`wrk` with `bench/chat-auth.lua`, callgrind).

use std::time::Duration;

use agent_core::testing::TestIssuer;
use anyhow::{Context, bail};
use reqwest::header::{HeaderMap, HeaderValue};

const PROJECT: &str = "bench-project";

/// What a run sends and sets for one kind of credential.
pub(crate) struct Credential {
    /// Settings for the function.
    pub(crate) vars: Vec<(&'static str, String)>,
    /// Sent with every request: warm-up, measured and `/metrics`.
    pub(crate) headers: HeaderMap,
    /// For the report: what authenticated the requests.
    pub(crate) label: &'static str,
    issuer: Option<TestIssuer>,
}

impl Credential {
    /// `None` (no `AUTH`), `key` or `token`.
    pub(crate) async fn new(kind: Option<&str>) -> anyhow::Result<Credential> {
        let mut headers = HeaderMap::new();
        match kind {
            None => Ok(Credential {
                vars: Vec::new(),
                headers,
                label: "no credential (auth off)",
                issuer: None,
            }),
            Some("key") => {
                let key = format!("bench-key-{}", crate::emulator::nonce());
                headers.insert("x-api-key", HeaderValue::from_str(&key).context("an API key header")?);
                Ok(Credential {
                    vars: vec![("API_KEYS", format!("bench:{key}"))],
                    headers,
                    label: "X-API-Key (API_KEYS=bench:KEY)",
                    issuer: None,
                })
            }
            Some("token") => {
                let issuer = TestIssuer::start().await;
                let token = issuer.sign("key-1", &TestIssuer::firebase_claims(PROJECT, "bench-user"));
                headers.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {token}")).context("a bearer header")?,
                );
                Ok(Credential {
                    vars: vec![
                        ("AUTH_FIREBASE_PROJECT", PROJECT.to_string()),
                        ("AUTH_FIREBASE_KEYS_URL", issuer.keys_url()),
                    ],
                    headers,
                    label: "Firebase ID token, RS256 2048-bit (Authorization: Bearer), key set cached",
                    issuer: Some(issuer),
                })
            }
            Some(other) => bail!("AUTH={other:?}: expected key or token"),
        }
    }

    /// A line for the report, when the run had a key set to fetch.
    pub(crate) fn report(&self) -> Option<String> {
        self.issuer
            .as_ref()
            .map(|issuer| format!("key set fetched {} time(s) in the whole run", issuer.fetches()))
    }
}

/// `bench issuer [SECONDS]`: a stand-in Firebase issuer on loopback for
/// SECONDS (default 3540, the token's lifetime), its settings and a token
/// on stdout.
pub(crate) async fn issuer(seconds: u64) -> anyhow::Result<()> {
    let issuer = TestIssuer::start().await;
    let token = issuer.sign("key-1", &TestIssuer::firebase_claims(PROJECT, "bench-user"));
    println!("AUTH_FIREBASE_PROJECT={PROJECT}");
    println!("AUTH_FIREBASE_KEYS_URL={}", issuer.keys_url());
    println!("BENCH_TOKEN={token}");
    eprintln!("serving the key set for {seconds} s; Ctrl-C stops it");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("the key set was fetched {} time(s)", issuer.fetches());
    Ok(())
}
