//! What a fuzz input means, and what must hold for it.
//!
//! Shared, through `#[path]`, by the fuzz targets in `fuzz/fuzz_targets/`
//! and by `local/tests/fuzz_corpus.rs`, which replays the kept corpus and
//! the regression inputs in the ordinary test run: a file under
//! `fuzz/corpus/` or `fuzz/regressions/` means the same request, and is held
//! to the same invariants, in both places.
//!
//! Every check returns `Err` with a description instead of panicking, so the
//! caller can name the input; a panic inside the code under test is a
//! finding either way.

#![allow(dead_code)] // each fuzz target uses only its own part

use agent_core::delivery;
use agent_core::tools::calculator;

/// The longest error message accepted from the calculator or the delivery
/// decoder: both quote parts of their input, and both promise to keep the
/// message (a log line, a model's tool result) small.
pub const MAX_ERROR_BYTES: usize = 8 * 1024;

// ---------------------------------------------------------------- calculator

/// `calculator`: the input, as text, is an expression. A result must be a
/// finite number that formats as a JSON number; a refusal must say why, in
/// a bounded message.
pub fn check_calculator(data: &[u8]) -> Result<(), String> {
    let expression = String::from_utf8_lossy(data);
    match calculator::evaluate(&expression) {
        Ok(x) if !x.is_finite() => Err(format!("{expression:?} evaluated to {x}, which is not finite")),
        Ok(x) if !calculator::format_number(x).is_number() => Err(format!(
            "{expression:?} evaluated to {x}, which formats as {}",
            calculator::format_number(x)
        )),
        Ok(_) => Ok(()),
        Err(err) => {
            let message = err.to_string();
            if message.trim().is_empty() || message.len() > MAX_ERROR_BYTES {
                return Err(format!(
                    "{expression:?} was refused with a {}-byte message: {message:?}",
                    message.len()
                ));
            }
            let chars = expression.chars().count();
            if chars > calculator::MAX_EXPRESSION_CHARS && !matches!(err, calculator::CalcError::TooLong { .. }) {
                return Err(format!(
                    "a {chars}-character expression was refused as {err:?}, not as too long"
                ));
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ delivery

/// The Pub/Sub event type, as the binary-mode header names it.
const PUBSUB: &str = delivery::PUBSUB_EVENT_TYPE;

/// `delivery`: the first byte picks how the request was sent (its low three
/// bits: no content type, JSON, structured CloudEvent twice, binary
/// CloudEvent four ways); the rest is the body. In the binary mode whose
/// `ce-id` is fuzzed, the id is the body's first line.
pub fn delivery_parts(data: &[u8]) -> (axum::http::HeaderMap, &[u8]) {
    let Some((&selector, mut body)) = data.split_first() else {
        return (axum::http::HeaderMap::new(), data);
    };
    let mut pairs: Vec<(&'static str, axum::http::HeaderValue)> = Vec::new();
    let fixed = axum::http::HeaderValue::from_static;
    match selector & 7 {
        0 => {}
        1 => pairs.push(("content-type", fixed("application/json"))),
        2 => pairs.push(("content-type", fixed("application/cloudevents+json"))),
        3 => pairs.push(("content-type", fixed("Application/CloudEvents+JSON ; charset=utf-8"))),
        4 => {
            pairs.push(("ce-specversion", fixed("1.0")));
            pairs.push(("ce-type", fixed(PUBSUB)));
            pairs.push(("ce-id", fixed("msg-1")));
        }
        5 => {
            pairs.push(("ce-specversion", fixed("1.0")));
            pairs.push(("ce-type", fixed(PUBSUB)));
            let (line, rest) = match body.iter().position(|&b| b == b'\n') {
                Some(at) => (&body[..at], &body[at + 1..]),
                None => (body, &[][..]),
            };
            if let Ok(id) = axum::http::HeaderValue::from_bytes(line) {
                pairs.push(("ce-id", id));
            }
            body = rest;
        }
        6 => {
            pairs.push(("ce-specversion", fixed("1.0")));
            pairs.push(("ce-type", fixed("google.cloud.storage.object.v1.finalized")));
        }
        _ => pairs.push(("ce-specversion", fixed("1.0"))),
    }
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(name, value);
    }
    (headers, body)
}

/// A decoded delivery names a task id that is safe as a store key and has a
/// message id; a refusal says why in one short line.
pub fn check_delivery(data: &[u8]) -> Result<(), String> {
    let (headers, body) = delivery_parts(data);
    match delivery::decode(&headers, body) {
        Ok(delivery) => {
            if agent_core::task::validate_id("task_id", &delivery.task_id).is_err() {
                return Err(format!("accepted the invalid task id {:?}", delivery.task_id));
            }
            if delivery.message_id.is_empty() {
                return Err(format!("accepted a delivery without a message id: {delivery:?}"));
            }
            Ok(())
        }
        Err(err) => {
            let message = err.to_string();
            if message.trim().is_empty() || message.len() > MAX_ERROR_BYTES {
                return Err(format!("refused with a {}-byte message: {message:?}", message.len()));
            }
            if message.chars().any(char::is_control) {
                return Err(format!("the refusal would forge log lines: {message:?}"));
            }
            Ok(())
        }
    }
}

// -------------------------------------------------------------- request_body

/// The routes whose JSON bodies are fuzzed, all on the `local` router.
pub const ROUTES: [&str; 4] = [
    "/api/v1/chat",
    "/api/v1/agent",
    "/api/v1/tools/calculate",
    "/api/v1/tools/search",
];

/// The content types a client sends: JSON, none, and what `curl -d` sends.
const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/json; charset=utf-8"),
];

/// The settings of the app the bodies are sent to, besides `SQLITE_PATH`:
/// the offline model, the local queue, and no rate limit (a 429 would hide
/// every handler after the first few inputs).
pub const SETTINGS: [(&str, &str); 5] = [
    ("LLM_PROVIDER", "offline"),
    ("RATE_LIMIT_CHAT", "off"),
    ("RATE_LIMIT_AGENT", "off"),
    ("RATE_LIMIT_TOOLS", "off"),
    ("RATE_LIMIT_TASKS", "off"),
];

/// `request_body`: the first byte picks the route (low two bits) and the
/// content type (next two); the rest is the body of a `POST`.
pub fn request_parts(data: &[u8]) -> (&'static str, Option<&'static str>, &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return (ROUTES[0], CONTENT_TYPES[0], data);
    };
    (
        ROUTES[usize::from(selector & 3)],
        CONTENT_TYPES[usize::from((selector >> 2) & 3)],
        body,
    )
}

/// What every answer to a body must be: never a 5xx (a panic becomes a 500
/// in the HTTP layer); every 4xx in the error envelope
/// `{"error":{"code","message"}}`; a JSON 2xx valid JSON, and a stream
/// without an `error` event.
pub fn check_response(status: u16, content_type: Option<&str>, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status >= 500 {
        return Err(format!("answered {status}: {text}"));
    }
    let content_type = content_type.unwrap_or("");
    if content_type.starts_with("text/event-stream") {
        if status != 200 || text.lines().any(|line| line.trim_end() == "event: error") {
            return Err(format!("a {status} stream with an error: {text}"));
        }
        return Ok(());
    }
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(err) => return Err(format!("a {status} answer that is not JSON ({err}): {text}")),
    };
    if status >= 400 {
        let code = json["error"]["code"].as_str().unwrap_or("");
        let message = json["error"]["message"].as_str().unwrap_or("");
        if code.is_empty() || message.is_empty() {
            return Err(format!("a {status} answer without the error envelope: {text}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- mcp

/// `mcp`: the first byte picks the content type (low two bits, as for
/// `request_body`) and whether the request says a protocol version (bit
/// 2); the rest is the body of a `POST /mcp`.
pub fn mcp_parts(data: &[u8]) -> (Option<&'static str>, bool, &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return (CONTENT_TYPES[0], false, data);
    };
    (CONTENT_TYPES[usize::from(selector & 3)], selector & 4 != 0, body)
}

/// What every answer of `/mcp` must be: never a 5xx; an empty 202 (a
/// notification), or a JSON-RPC 2.0 message: a `result` with a 200, or an
/// `error` object with an integer `code` and a `message`, which every 4xx
/// carries (never the REST envelope: MCP clients read JSON-RPC).
pub fn check_mcp_response(status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status >= 500 {
        return Err(format!("answered {status}: {text}"));
    }
    if status == 202 {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!("a 202 with a body: {text}"))
        };
    }
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(err) => return Err(format!("a {status} answer that is not JSON ({err}): {text}")),
    };
    if json["jsonrpc"] != "2.0" {
        return Err(format!("a {status} answer that is not JSON-RPC 2.0: {text}"));
    }
    let error = &json["error"];
    if status >= 400 || error.is_object() {
        if !error["code"].is_i64() || !error["message"].is_string() {
            return Err(format!("a {status} answer without a JSON-RPC error object: {text}"));
        }
    } else if !json["result"].is_object() {
        return Err(format!("a 200 answer with neither a result nor an error: {text}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------- a2a

/// `a2a`: the first byte picks the revision (bit 0: 1.0, else 0.3); the
/// rest is the body of a `POST /a2a`. Read as the endpoint reads it: the
/// JSON-RPC request, then a send's or a task reference's params.
pub fn a2a_parts(data: &[u8]) -> (agent_core::a2a::Version, &[u8]) {
    match data.split_first() {
        Some((&selector, body)) if selector & 1 == 1 => (agent_core::a2a::Version::V1, body),
        Some((_, body)) => (agent_core::a2a::Version::V03, body),
        None => (agent_core::a2a::Version::V03, data),
    }
}

/// What must hold for any body: no panic; a refusal is one of the
/// protocol's codes with a message under 8 KiB; a send read has a
/// non-empty message id and text, and its task id is a safe store id.
pub fn check_a2a(data: &[u8]) -> Result<(), String> {
    use agent_core::a2a::{rpc, wire};
    let (version, body) = a2a_parts(data);
    let known = |code: i32| matches!(code, -32700 | -32600 | -32602 | -32009..=-32001);
    let check_fault = |fault: &rpc::Fault| {
        if !known(fault.code) || fault.message.is_empty() || fault.message.len() > 8192 {
            return Err(format!("an unexpected refusal: {fault:?}"));
        }
        Ok(())
    };
    let request = match rpc::parse(body) {
        Ok(request) => request,
        Err((_, fault)) => return check_fault(&fault),
    };
    match wire::send(version, &request.params) {
        Ok(send) => {
            if send.message_id.trim().is_empty() || send.text.trim().is_empty() {
                return Err(format!("a send without its message id or text: {send:?}"));
            }
            let id = wire::task_id_for("key:fuzz", &send.message_id);
            if !id.starts_with("a2a-") || id.len() != 36 {
                return Err(format!("a task id out of shape: {id}"));
            }
        }
        Err(fault) => check_fault(&fault)?,
    }
    match wire::task_ref(&request.params) {
        Ok((id, _)) if id.is_empty() => Err("an empty task id was taken".to_string()),
        Ok(_) => Ok(()),
        Err(fault) => check_fault(&fault),
    }
}
