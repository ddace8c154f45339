//! A stand-in ID token issuer: RSA keys generated for the test, published
//! as a JSON Web Key Set on a loopback port (as Google publishes Firebase's
//! and its own), and tokens signed with them.
//!
//! Tokens are signed here with aws-lc-rs directly, not with the JWT crate
//! the functions verify with, so a mistake in one is not mirrored by the
//! other; and any header or claims can be signed, `alg: none` included.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::TestServer;

/// The path the key set is served at.
const JWKS_PATH: &str = "/jwks";

struct Published {
    /// The keys in the set, by `kid`, in order of publication.
    keys: Mutex<Vec<(String, Arc<KeyPair>)>>,
    fetches: AtomicUsize,
    cache_control: Mutex<String>,
    failing: AtomicBool,
}

/// An issuer on `127.0.0.1`: its key set at [`TestIssuer::keys_url`],
/// starting with one key, `key-1`, served with `Cache-Control: public,
/// max-age=3600`.
pub struct TestIssuer {
    pub server: TestServer,
    published: Arc<Published>,
}

fn generate() -> KeyPair {
    KeyPair::generate(KeySize::Rsa2048).unwrap_or_else(|err| panic!("cannot generate an RSA key: {err}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl TestIssuer {
    pub async fn start() -> TestIssuer {
        let published = Arc::new(Published {
            keys: Mutex::new(vec![("key-1".to_string(), Arc::new(generate()))]),
            fetches: AtomicUsize::new(0),
            cache_control: Mutex::new("public, max-age=3600, must-revalidate, no-transform".to_string()),
            failing: AtomicBool::new(false),
        });
        let serving = published.clone();
        let router = Router::new().route(
            JWKS_PATH,
            get(move || {
                let published = serving.clone();
                async move {
                    published.fetches.fetch_add(1, Ordering::SeqCst);
                    if published.failing.load(Ordering::SeqCst) {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "the key set is down").into_response();
                    }
                    let cache_control = published
                        .cache_control
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    ([(header::CACHE_CONTROL, cache_control)], axum::Json(published.jwks())).into_response()
                }
            }),
        );
        TestIssuer {
            server: TestServer::start(router).await,
            published,
        }
    }

    /// Where the key set is served: the value of `AUTH_FIREBASE_KEYS_URL`
    /// or `AUTH_GOOGLE_KEYS_URL`.
    pub fn keys_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.server.url)
    }

    /// How many times the key set was asked for.
    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    /// Adds a new key to the set (a rotation): tokens may be signed with it.
    pub fn publish(&self, kid: &str) {
        self.published
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((kid.to_string(), Arc::new(generate())));
    }

    /// The `Cache-Control` the set is served with from now on.
    pub fn set_cache_control(&self, value: &str) {
        *self
            .published
            .cache_control
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = value.to_string();
    }

    /// Answer 500 instead of the key set (or serve it again).
    pub fn set_failing(&self, failing: bool) {
        self.published.failing.store(failing, Ordering::SeqCst);
    }

    /// A token signed with the published key `kid`, with the header
    /// `{"alg":"RS256","kid":kid,"typ":"JWT"}`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let key = self.published.key(kid);
        sign_with(&key, &json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), claims)
    }

    /// A token whose header names `kid` but whose signature is another
    /// key's, as a forger without the issuer's key would make.
    pub fn forge(&self, kid: &str, claims: &Value) -> String {
        sign_with(&generate(), &json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), claims)
    }

    /// A token with any header, signed with the published key `kid`.
    pub fn sign_header(&self, kid: &str, header: &Value, claims: &Value) -> String {
        sign_with(&self.published.key(kid), header, claims)
    }

    /// `token` with its claims swapped for `claims`, its header and
    /// signature kept: a token altered after it was signed.
    pub fn replace_claims(token: &str, claims: &Value) -> String {
        let mut parts = token.splitn(3, '.');
        let (header, signature) = (parts.next().unwrap_or_default(), parts.nth(1).unwrap_or_default());
        format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    /// Claims of a valid Firebase Authentication ID token for `uid` of
    /// `project`, issued a minute ago, expiring in an hour.
    pub fn firebase_claims(project: &str, uid: &str) -> Value {
        let now = now();
        json!({
            "iss": format!("https://securetoken.google.com/{project}"),
            "aud": project,
            "auth_time": now - 120,
            "user_id": uid,
            "sub": uid,
            "iat": now - 60,
            "exp": now + 3540,
            "email": format!("{uid}@example.com"),
            "email_verified": true,
            "firebase": {"identities": {"email": [format!("{uid}@example.com")]}, "sign_in_provider": "password"},
        })
    }

    /// Claims of a valid Google-signed ID token for `sub`, for `audience`
    /// (as the metadata server issues them to a service account).
    pub fn google_claims(audience: &str, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": "https://accounts.google.com",
            "aud": audience,
            "azp": "102223334445556667778",
            "sub": sub,
            "email": "caller@demo-project.iam.gserviceaccount.com",
            "email_verified": true,
            "iat": now - 60,
            "exp": now + 3540,
        })
    }
}

impl Published {
    fn key(&self, kid: &str) -> Arc<KeyPair> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.iter().find(|(k, _)| k == kid) {
            Some((_, key)) => key.clone(),
            None => panic!("the test issuer has no key {kid:?}"),
        }
    }

    /// The set as Google serves it.
    fn jwks(&self) -> Value {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, key)| {
                let public = key.public_key();
                json!({
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": kid,
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// `base64url(header).base64url(claims).base64url(RS256 signature)`.
fn sign_with(key: &KeyPair, header: &Value, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public_modulus_len()];
    if let Err(err) = key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    ) {
        panic!("cannot sign: {err}");
    }
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}
