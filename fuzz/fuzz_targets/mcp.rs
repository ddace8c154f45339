//! Any body, `POST`ed to `/mcp` of the real `local` router (the agent's
//! tools over MCP, behind the shared HTTP layer): no answer is a 5xx, and
//! every answer is an empty 202 or a JSON-RPC message, every refusal a
//! JSON-RPC error object (see `common/inputs.rs`).
//!
//! The app and the router are built once; each input is one
//! `ServiceExt::oneshot` on a current-thread runtime.
#![no_main]

use std::sync::OnceLock;

use agent_core::App;
use axum::Router;
use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[path = "../common/inputs.rs"]
mod inputs;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _app: App,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("serverless-agent-fuzz-mcp-{}", std::process::id()));
        let db = dir.join("agent.db").to_string_lossy().into_owned();
        let mut vars = vec![("SQLITE_PATH", db.as_str())];
        vars.extend_from_slice(&inputs::SETTINGS);
        let settings = agent_core::testing::settings(&vars);
        let (app, router) = runtime.block_on(async {
            let app = App::build(settings, local::FUNCTION).await.expect("the app starts");
            let router = local::router(&app).await.expect("the router builds");
            (app, router)
        });
        Harness {
            runtime,
            router,
            _app: app,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    let (content_type, versioned, body) = inputs::mcp_parts(data);
    let mut request = http::Request::post("/mcp")
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::ACCEPT, "application/json, text/event-stream");
    if let Some(content_type) = content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    if versioned {
        request = request.header("mcp-protocol-version", "2025-06-18");
    }
    let request = request.body(Body::from(body.to_vec())).expect("a request");
    let (status, bytes) = harness.runtime.block_on(async {
        let response = harness.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        (status, bytes)
    });
    if let Err(why) = inputs::check_mcp_response(status, &bytes) {
        panic!("POST /mcp ({content_type:?}) {:?}: {why}", String::from_utf8_lossy(body));
    }
});
