//! Every request's principal, as a handler sees it through the extractor:
//! a route behind the shared HTTP layer that answers with its principal, on
//! a loopback port.

use agent_core::auth::Principal;
use agent_core::http::{Api, Operation, Routes};
use agent_core::testing::{TestApp, TestServer, error_envelope};
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
async fn a_route_outside_the_layer_gets_no_principal_rather_than_a_guess() {
    let server = TestServer::start(axum::Router::new().route("/whoami", get(whoami))).await;
    error_envelope(whois(&server, &[]).await, 500, "internal").await;
}
