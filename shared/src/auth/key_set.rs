//! The public keys an issuer signs its ID tokens with: its JSON Web Key Set,
//! fetched and cached.
//!
//! A token names its key by `kid`. The set is fetched on the first token,
//! then kept for as long as the issuer's `Cache-Control: max-age` says (less
//! its `Age`; at least [`MIN_LIFETIME`], at most [`MAX_LIFETIME`]), so a
//! verified request costs no fetch. Google publishes a new key before it
//! signs with it, so a `kid` missing from a set still fresh means either a
//! rotation this instance has not seen or a forged token: the set is fetched
//! again, but at most once per [`UNKNOWN_KID_REFETCH`], so tokens with
//! made-up `kid`s cannot turn every request into a fetch. Requests that need
//! a fetch at the same time share one: they wait for the one in flight and
//! take its answer.
//!
//! When the issuer cannot be reached, a stale set still serves the keys it
//! holds (for up to [`MAX_STALE`] past its lifetime: they are still the
//! issuer's keys), and the fetch is tried again after
//! [`RETRY_AFTER_FAILURE`], not on every request. Without a usable key the
//! answer is [`KeyError::Unavailable`], a 503 the client may retry.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::http::metrics::{Counter, Metrics};
use crate::retry::error_chain;

/// A set is kept at least this long whatever `max-age` says (`no-cache`,
/// `max-age=0`), so an issuer's headers cannot make every request a fetch.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// And at most this long, so a rotation is seen within a day.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Without `max-age`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// At most one fetch for unknown `kid`s in this time.
pub(crate) const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);
/// After a failed fetch, requests use what is cached (or are refused) for
/// this long before one of them tries again.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// How long past its lifetime a set serves its keys while it cannot be
/// fetched again.
pub(crate) const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// A fetch that takes longer fails: requests wait on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Google's sets are about 2 KB; a larger answer is not a key set.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why no key could be had for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The issuer's current set has no such key.
    UnknownKid,
    /// The set could not be fetched; says why.
    Unavailable(String),
}

/// One issuer's key set, shared by every request of the process.
pub(crate) struct KeySet {
    url: String,
    http: reqwest::Client,
    state: RwLock<State>,
    /// Held while fetching, so concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
    fetched: Counter,
    failed: Counter,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// `None` until a fetch succeeds.
    fresh_until: Option<Instant>,
    /// When the last fetch failed, and why; cleared by a success.
    failure: Option<(Instant, String)>,
    /// When a `kid` missing from a fresh set last caused a fetch.
    unknown_kid_fetch: Option<Instant>,
    /// Counts fetch attempts, so a request that waited for another's fetch
    /// knows to take its answer.
    generation: u64,
}

enum Decision {
    Use(Arc<DecodingKey>),
    Refuse(KeyError),
    Fetch { unknown_kid: bool },
}

impl State {
    fn usable_stale(&self, now: Instant) -> bool {
        self.fresh_until
            .is_some_and(|until| now.saturating_duration_since(until) < MAX_STALE)
    }

    fn recent_failure(&self, now: Instant) -> Option<&str> {
        self.failure
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < RETRY_AFTER_FAILURE)
            .map(|(_, why)| why.as_str())
    }

    /// What a request for `kid` does now, before any fetch of its own.
    fn decide(&self, kid: &str, now: Instant) -> Decision {
        let key = self.keys.get(kid);
        let fresh = self.fresh_until.is_some_and(|until| now < until);
        match (key, fresh) {
            (Some(key), true) => Decision::Use(key.clone()),
            (None, true) => {
                let refetched = self
                    .unknown_kid_fetch
                    .is_some_and(|at| now.saturating_duration_since(at) < UNKNOWN_KID_REFETCH);
                match (refetched, self.recent_failure(now)) {
                    (false, _) => Decision::Fetch { unknown_kid: true },
                    (true, Some(why)) => Decision::Refuse(KeyError::Unavailable(why.to_string())),
                    (true, None) => Decision::Refuse(KeyError::UnknownKid),
                }
            }
            (key, false) => match (self.recent_failure(now), key) {
                (None, _) => Decision::Fetch { unknown_kid: false },
                (Some(_), Some(key)) if self.usable_stale(now) => Decision::Use(key.clone()),
                (Some(why), _) => Decision::Refuse(KeyError::Unavailable(why.to_string())),
            },
        }
    }

    /// The answer for `kid` right after a fetch attempt: final, whatever it
    /// is.
    fn settled(&self, kid: &str, now: Instant) -> Result<Arc<DecodingKey>, KeyError> {
        let fresh = self.fresh_until.is_some_and(|until| now < until);
        match (self.keys.get(kid), &self.failure) {
            (Some(key), _) if fresh || self.usable_stale(now) => Ok(key.clone()),
            (_, Some((_, why))) => Err(KeyError::Unavailable(why.clone())),
            _ => Err(KeyError::UnknownKid),
        }
    }
}

impl KeySet {
    /// `issuer` names the set in `auth_key_set_fetches_total{issuer,outcome}`.
    pub(crate) fn new(issuer: &'static str, url: String, http: reqwest::Client, metrics: &Metrics) -> KeySet {
        let counter = |outcome| {
            metrics.register_counter(
                "auth_key_set_fetches_total",
                "Fetches of an ID token issuer's public keys, by issuer and outcome.",
                &[("issuer", issuer), ("outcome", outcome)],
            )
        };
        KeySet {
            url,
            http,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetched: counter("ok"),
            failed: counter("error"),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The key `kid` names, fetching the set when it must.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyError> {
        let generation = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match state.decide(kid, Instant::now()) {
                Decision::Use(key) => return Ok(key),
                Decision::Refuse(err) => return Err(err),
                Decision::Fetch { .. } => state.generation,
            }
        };
        let _one_fetch = self.fetching.lock().await;
        let unknown_kid = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if state.generation != generation {
                // Another request fetched while this one waited.
                return state.settled(kid, now);
            }
            match state.decide(kid, now) {
                Decision::Use(key) => return Ok(key),
                Decision::Refuse(err) => return Err(err),
                Decision::Fetch { unknown_kid } => unknown_kid,
            }
        };
        let started = Instant::now();
        let fetched = self.fetch().await;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        state.generation += 1;
        if unknown_kid {
            state.unknown_kid_fetch = Some(started);
        }
        match fetched {
            Ok((keys, lifetime)) => {
                self.fetched.inc();
                state.keys = keys;
                state.fresh_until = Some(now + lifetime);
                state.failure = None;
            }
            Err(why) => {
                self.failed.inc();
                tracing::warn!("cannot fetch the ID token keys: {why}");
                state.failure = Some((now, why));
            }
        }
        state.settled(kid, now)
    }

    /// The set and how long to keep it, or why not.
    async fn fetch(&self) -> Result<(HashMap<String, Arc<DecodingKey>>, Duration), String> {
        let url = &self.url;
        let mut response = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|err| format!("{url}: {}", error_chain(&err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let lifetime = lifetime(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("{url}: {}", error_chain(&err)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!("{url} answered more than {MAX_BODY_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse(&body).map_err(|why| format!("{url}: {why}"))?;
        Ok((keys, lifetime))
    }
}

/// `{"keys":[{"kty":"RSA","kid","n","e","alg"?,"use"?}, ...]}`.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The RS256 signing keys of a JWKS document, by `kid`; keys of other kinds
/// are skipped (an issuer may publish them), an error if none is left.
pub(crate) fn parse(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    let jwks: Jwks = serde_json::from_slice(body).map_err(|err| format!("not a JSON Web Key Set ({err})"))?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        let rs256 = jwk.kty == "RSA"
            && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && jwk.usage.as_deref().is_none_or(|usage| usage == "sig");
        let (true, Some(kid), Some(n), Some(e)) = (rs256, jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        match DecodingKey::from_rsa_components(&n, &e) {
            Ok(key) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(err) => tracing::warn!("the key set's key {kid:?} is not a usable RSA key: {err}"),
        }
    }
    if keys.is_empty() {
        return Err("the key set holds no RS256 signing key".to_string());
    }
    Ok(keys)
}

/// How long to keep a set: `Cache-Control: max-age` less `Age`, within
/// [`MIN_LIFETIME`] and [`MAX_LIFETIME`].
pub(crate) fn lifetime(headers: &HeaderMap) -> Duration {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let mut max_age = None;
    for directive in header("cache-control").unwrap_or_default().split(',') {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-cache" | "no-store" => max_age = Some(0),
            "max-age" if max_age.is_none() => {
                max_age = value.trim().trim_matches('"').parse::<u64>().ok();
            }
            _ => {}
        }
    }
    let Some(max_age) = max_age else {
        return DEFAULT_LIFETIME;
    };
    let age = header("age").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).clamp(MIN_LIFETIME, MAX_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn lifetime_follows_cache_control_within_bounds() {
        let secs = Duration::from_secs;
        let google = "public, max-age=22107, must-revalidate, no-transform";
        assert_eq!(lifetime(&headers(&[("cache-control", google)])), secs(22107));
        assert_eq!(
            lifetime(&headers(&[("cache-control", google), ("age", "107")])),
            secs(22000)
        );
        assert_eq!(lifetime(&headers(&[("cache-control", "Max-Age=\"60\"")])), secs(60));
        assert_eq!(
            lifetime(&headers(&[("cache-control", "max-age=60"), ("age", "90")])),
            MIN_LIFETIME
        );
        assert_eq!(
            lifetime(&headers(&[("cache-control", "no-store, max-age=600")])),
            MIN_LIFETIME
        );
        assert_eq!(
            lifetime(&headers(&[("cache-control", "max-age=99999999")])),
            MAX_LIFETIME
        );
        assert_eq!(
            lifetime(&headers(&[("cache-control", "max-age=soon")])),
            DEFAULT_LIFETIME
        );
        assert_eq!(lifetime(&headers(&[])), DEFAULT_LIFETIME);
    }

    #[test]
    fn only_rs256_signing_keys_are_kept() {
        // A 2048-bit modulus is not needed to parse; any base64url will do.
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "bad", "n": "not base64!", "e": "AQAB"},
        ]});
        let keys = parse(body.to_string().as_bytes()).expect("two keys");
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["a", "b"]);
        for bad in [&b"[]"[..], b"{}", b"{\"keys\":[]}", b"<html>"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn state(fresh_for: Option<i64>, kids: &[&str]) -> (State, Instant) {
        let now = Instant::now() + 3 * MAX_STALE;
        let key = Arc::new(DecodingKey::from_rsa_raw_components(b"n", b"e"));
        let state = State {
            keys: kids.iter().map(|k| (k.to_string(), key.clone())).collect(),
            fresh_until: fresh_for.map(|s| {
                if s >= 0 {
                    now + Duration::from_secs(s.unsigned_abs())
                } else {
                    now - Duration::from_secs(s.unsigned_abs())
                }
            }),
            ..State::default()
        };
        (state, now)
    }

    fn what(decision: Decision) -> String {
        match decision {
            Decision::Use(_) => "use".into(),
            Decision::Refuse(KeyError::UnknownKid) => "unknown".into(),
            Decision::Refuse(KeyError::Unavailable(_)) => "unavailable".into(),
            Decision::Fetch { unknown_kid } => format!("fetch unknown_kid={unknown_kid}"),
        }
    }

    #[test]
    fn decisions() {
        let (empty, now) = state(None, &[]);
        assert_eq!(what(empty.decide("a", now)), "fetch unknown_kid=false");
        let (mut fresh, now) = state(Some(60), &["a"]);
        assert_eq!(what(fresh.decide("a", now)), "use");
        assert_eq!(what(fresh.decide("z", now)), "fetch unknown_kid=true");
        fresh.unknown_kid_fetch = Some(now - Duration::from_secs(5));
        assert_eq!(what(fresh.decide("z", now)), "unknown", "one refetch per interval");
        fresh.unknown_kid_fetch = Some(now - UNKNOWN_KID_REFETCH);
        assert_eq!(what(fresh.decide("z", now)), "fetch unknown_kid=true");

        let (mut stale, now) = state(Some(-60), &["a"]);
        assert_eq!(what(stale.decide("a", now)), "fetch unknown_kid=false");
        stale.failure = Some((now - Duration::from_secs(1), "down".into()));
        assert_eq!(
            what(stale.decide("a", now)),
            "use",
            "a stale key while the issuer is down"
        );
        assert_eq!(what(stale.decide("z", now)), "unavailable");
        stale.failure = Some((now - RETRY_AFTER_FAILURE, "down".into()));
        assert_eq!(what(stale.decide("a", now)), "fetch unknown_kid=false", "tried again");
        let (mut too_stale, now) = state(Some(-(MAX_STALE.as_secs() as i64) - 1), &["a"]);
        too_stale.failure = Some((now, "down".into()));
        assert_eq!(what(too_stale.decide("a", now)), "unavailable");
    }
}
