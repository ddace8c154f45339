//! Remote tools on Google Cloud: each call carries an ID token from the
//! metadata server whose audience is the tool function's URL, fetched once
//! and cached. The metadata server here is a local server speaking its wire
//! format (the one thing that cannot run off Google Cloud).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::gcp::MetadataClient;
use agent_core::testing::TestServer;
use agent_core::tools::calculator::Calculator;
use agent_core::tools::remote::RemoteTool;
use agent_core::tools::{Tool, ToolContext, ToolError};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// base64url without padding, for a test JWT.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[derive(Clone, Default)]
struct Seen {
    audiences: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

async fn identity(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<String, axum::http::StatusCode> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Err(axum::http::StatusCode::FORBIDDEN);
    }
    let audience = q.get("audience").cloned().unwrap_or_default();
    seen.audiences.lock().expect("lock").push(audience.clone());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64url(
        json!({"aud": audience, "exp": exp, "iss": "https://accounts.google.com"})
            .to_string()
            .as_bytes(),
    );
    Ok(format!("{header}.{payload}.c2lnbmF0dXJl"))
}

async fn calculate(State(seen): State<Seen>, headers: HeaderMap, body: axum::Json<Value>) -> axum::Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    seen.authorizations.lock().expect("lock").push(auth);
    axum::Json(json!({"expression": body["expression"], "result": 4}))
}

#[tokio::test]
async fn remote_calls_carry_a_cached_id_token_for_the_function_url() {
    let seen = Seen::default();
    let metadata = TestServer::start(
        axum::Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/identity",
                get(identity),
            )
            .with_state(seen.clone()),
    )
    .await;
    let function = TestServer::start(
        axum::Router::new()
            .route("/api/v1/tools/calculate", post(calculate))
            .with_state(seen.clone()),
    )
    .await;

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/tools/calculate", function.url);
    let tool = RemoteTool::new(
        Calculator::new().spec().clone(),
        &url,
        http.clone(),
        Some(MetadataClient::new(metadata.addr.to_string(), http)),
        None,
        Duration::from_secs(2),
    );
    for _ in 0..3 {
        let result = tool
            .call(json!({"expression": "2+2"}), &ToolContext::default())
            .await
            .expect("remote call");
        assert_eq!(result, json!({"expression": "2+2", "result": 4}));
    }

    assert_eq!(
        *seen.audiences.lock().expect("lock"),
        std::slice::from_ref(&function.url),
        "one token, for the function's origin"
    );
    let authorizations = seen.authorizations.lock().expect("lock").clone();
    assert_eq!(authorizations.len(), 3);
    assert!(
        authorizations
            .iter()
            .all(|a| a.starts_with("Bearer ey") && a.ends_with(".c2lnbmF0dXJl")),
        "{authorizations:?}"
    );
}

#[tokio::test]
async fn a_missing_metadata_server_is_an_error_result() {
    let function = TestServer::start(
        axum::Router::new()
            .route("/api/v1/tools/calculate", post(calculate))
            .with_state(Seen::default()),
    )
    .await;
    let http = reqwest::Client::new();
    let closed = format!("127.0.0.1:{}", agent_core::testing::free_port());
    let tool = RemoteTool::new(
        Calculator::new().spec().clone(),
        &format!("{}/api/v1/tools/calculate", function.url),
        http.clone(),
        Some(MetadataClient::new(closed, http)),
        None,
        Duration::from_secs(2),
    );
    match tool.call(json!({"expression": "2+2"}), &ToolContext::default()).await {
        Err(ToolError::Failed(message)) => assert!(message.contains("could not authenticate"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}
