//! Every request's principal, as a handler sees it through the extractor:
//! a route behind the shared HTTP layer that answers with its principal, on
//! a loopback port, with API keys and ID tokens from a local issuer.

use agent_core::auth::Principal;
use agent_core::http::{Api, Operation, Routes};
use agent_core::testing::{TestApp, TestIssuer, TestServer, error_envelope};
use axum::routing::get;

async fn whoami(principal: Principal) -> String {
    principal.as_str().to_string()
}

fn api() -> Api {
    Routes::new()
        .route(
            "/whoami",
            get(whoami),
            [Operation::get("whoami", "the principal").text(200, "its string form")],
        )
        .with_state(())
}

async fn serve(vars: &[(&str, &str)]) -> (TestServer, TestApp) {
    let app = TestApp::start("whoami", vars).await;
    let server = TestServer::start(app.wrap(api(), "whoami")).await;
    (server, app)
}

async fn whois(server: &TestServer, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}/whoami", server.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

async fn principal_of(server: &TestServer, headers: &[(&str, &str)]) -> String {
    let response = whois(server, headers).await;
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

#[tokio::test]
async fn an_open_function_sees_anonymous() {
    let (server, _app) = serve(&[]).await;
    assert_eq!(principal_of(&server, &[]).await, "anonymous");
    assert_eq!(principal_of(&server, &[("x-api-key", "anything")]).await, "anonymous");
}

#[tokio::test]
async fn api_keys_are_known_by_name_or_by_hash() {
    let (server, _app) = serve(&[("API_KEYS", "alice:k1, alice:k1-rotated, k2")]).await;
    assert_eq!(principal_of(&server, &[("x-api-key", "k1")]).await, "key:alice");
    assert_eq!(principal_of(&server, &[("x-api-key", "k1-rotated")]).await, "key:alice");
    // printf k2 | sha256sum | cut -c1-12
    assert_eq!(principal_of(&server, &[("x-api-key", "k2")]).await, "key:015f7e6bc5ae");
    error_envelope(whois(&server, &[]).await, 401, "unauthenticated").await;
    error_envelope(whois(&server, &[("x-api-key", "alice")]).await, 401, "unauthenticated").await;
}

#[tokio::test]
async fn id_tokens_name_their_end_user() {
    let firebase = TestIssuer::start().await;
    let google = TestIssuer::start().await;
    let (firebase_keys, google_keys) = (firebase.keys_url(), google.keys_url());
    let (server, _app) = serve(&[
        ("API_KEYS", "app:k1"),
        ("AUTH_FIREBASE_PROJECT", "demo-project"),
        ("AUTH_FIREBASE_KEYS_URL", &firebase_keys),
        ("AUTH_GOOGLE_AUDIENCE", "https://whoami.example"),
        ("AUTH_GOOGLE_KEYS_URL", &google_keys),
    ])
    .await;
    let user = firebase.sign("key-1", &TestIssuer::firebase_claims("demo-project", "uid-1"));
    let bearer = format!("Bearer {user}");
    assert_eq!(
        principal_of(&server, &[("authorization", &bearer)]).await,
        "firebase:uid-1"
    );
    let caller = google.sign(
        "key-1",
        &TestIssuer::google_claims("https://whoami.example", "10769150350006150715113082367"),
    );
    assert_eq!(
        principal_of(&server, &[("authorization", &format!("Bearer {caller}"))]).await,
        "google:10769150350006150715113082367"
    );
    assert_eq!(
        principal_of(&server, &[("x-api-key", "k1"), ("authorization", &bearer)]).await,
        "firebase:uid-1",
        "with both, the principal is the user"
    );
    assert_eq!(principal_of(&server, &[("x-api-key", "k1")]).await, "key:app");
    // A Firebase token is not a Google one, even signed by Google's keys.
    let crossed = google.sign("key-1", &TestIssuer::firebase_claims("demo-project", "uid-1"));
    let (message, _) = error_envelope(
        whois(&server, &[("authorization", &format!("Bearer {crossed}"))]).await,
        401,
        "unauthenticated",
    )
    .await;
    assert!(message.contains("signature does not verify"), "{message}");
}

#[tokio::test]
async fn a_route_outside_the_layer_gets_no_principal_rather_than_a_guess() {
    let server = TestServer::start(axum::Router::new().route("/whoami", get(whoami))).await;
    error_envelope(whois(&server, &[]).await, 500, "internal").await;
}
