//! Any body, `POST`ed to the chat, agent, calculate and search routes of the
//! real `local` router (every function's routes behind the shared HTTP
//! layer), on the offline model and SQLite: no answer is a 5xx, and every
//! 4xx is the error envelope (see `common/inputs.rs`).
//!
//! The app and the router are built once (`common/harness.rs`); each input
//! is one request on a current-thread runtime, its whole body read (a chat
//! stream stores its turn only when read to the end).
#![no_main]

use axum::body::Body;
use libfuzzer_sys::fuzz_target;

#[path = "../common/harness.rs"]
mod harness;
#[path = "../common/inputs.rs"]
mod inputs;

fuzz_target!(|data: &[u8]| {
    let harness = harness::Harness::get("request_body");
    let (path, content_type, body) = inputs::request_parts(data);
    let mut request = http::Request::post(path);
    if let Some(content_type) = content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Body::from(body.to_vec())).expect("a request");
    let (status, answer_type, bytes) = harness.send(request);
    if let Err(why) = inputs::check_response(status, answer_type.as_deref(), &bytes) {
        panic!(
            "POST {path} ({content_type:?}) {:?}: {why}",
            String::from_utf8_lossy(body)
        );
    }
});
