//! Any body, `POST`ed to `/mcp` of the real `local` router (the agent's
//! tools over MCP, behind the shared HTTP layer): no answer is a 5xx, and
//! every answer is an empty 202 or a JSON-RPC message, every refusal a
//! JSON-RPC error object (see `common/inputs.rs`).
//!
//! The app and the router are built once (`common/harness.rs`); each input
//! is one request on a current-thread runtime.
#![no_main]

use axum::body::Body;
use libfuzzer_sys::fuzz_target;

#[path = "../common/harness.rs"]
mod harness;
#[path = "../common/inputs.rs"]
mod inputs;

fuzz_target!(|data: &[u8]| {
    let harness = harness::Harness::get("mcp");
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
    let (status, _, bytes) = harness.send(request);
    if let Err(why) = inputs::check_mcp_response(status, &bytes) {
        panic!(
            "POST /mcp ({content_type:?}) {:?}: {why}",
            String::from_utf8_lossy(body)
        );
    }
});
