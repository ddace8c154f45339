//! JSON-RPC 2.0 as MCP and A2A use it over HTTP: one request per POST, an
//! answer with the request's id, and JSON-RPC's own error codes (each
//! protocol adds its own: `a2a::rpc`).

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;

/// A request as read from the body.
#[derive(Debug, Clone)]
pub struct Request {
    /// The client's id, echoed in the answer (`null` for none).
    pub id: Value,
    pub method: String,
    /// The params, `{}` when absent.
    pub params: Value,
}

/// A refusal, answered as JSON-RPC's error object.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(code: i32, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Fault {
        Fault::new(INVALID_PARAMS, message)
    }
}

/// Reads one JSON-RPC request; a fault says why it is not one (with the id,
/// when one could be read).
pub fn parse(body: &[u8]) -> Result<Request, (Value, Fault)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            Value::Null,
            Fault::new(PARSE_ERROR, format!("the body is not JSON: {e}")),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err((
            Value::Null,
            Fault::new(
                INVALID_REQUEST,
                "send one JSON-RPC 2.0 request object (batches are not taken)",
            ),
        ));
    };
    let id = match object.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id,
        None => Value::Null,
        Some(_) => {
            return Err((
                Value::Null,
                Fault::new(INVALID_REQUEST, "id must be a string, a number or null"),
            ));
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, Fault::new(INVALID_REQUEST, "jsonrpc must be \"2.0\"")));
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return Err((id, Fault::new(INVALID_REQUEST, "method must be a string")));
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(params @ Value::Object(_)) => params,
        Some(_) => {
            return Err((id, Fault::invalid_params("params must be an object")));
        }
    };
    Ok(Request { id, method, params })
}

/// The answer to request `id` with `result`.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The answer to request `id` refused with `fault`.
pub fn error(id: &Value, fault: &Fault) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": fault.code, "message": fault.message}})
}

/// A JSON-RPC 2.0 answer as the OpenAPI documents show it: `result` on
/// success, else `error`. (The answers themselves are written by
/// [`result`] and [`error`].)
#[derive(Serialize, JsonSchema)]
pub struct RpcAnswer {
    jsonrpc: String,
    id: Value,
    result: Option<Value>,
    error: Option<RpcErrorObject>,
}

/// A JSON-RPC 2.0 refusal as the OpenAPI documents show it.
#[derive(Serialize, JsonSchema)]
pub struct RpcError {
    jsonrpc: String,
    id: Value,
    error: RpcErrorObject,
}

/// `code` is JSON-RPC's (`-32700` parse error, `-32600` invalid request,
/// `-32601` no such method, `-32602` invalid params) or the protocol's.
#[derive(Serialize, JsonSchema)]
pub struct RpcErrorObject {
    code: i32,
    message: String,
    data: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_faults_named() {
        let request = parse(br#"{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"t"}}"#).expect("a request");
        assert_eq!((request.id, request.method.as_str()), (json!(7), "GetTask"));
        assert_eq!(parse(b"{oops").expect_err("not JSON").1.code, PARSE_ERROR);
        assert_eq!(parse(b"[]").expect_err("a batch").1.code, INVALID_REQUEST);
        let (id, fault) = parse(br#"{"jsonrpc":"1.0","id":"x","method":"m"}"#).expect_err("not 2.0");
        assert_eq!((id, fault.code), (json!("x"), INVALID_REQUEST));
        let (_, fault) = parse(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}"#).expect_err("params");
        assert_eq!(fault.code, INVALID_PARAMS);
        assert_eq!(
            error(&json!(1), &Fault::invalid_params("p"))["error"],
            json!({"code": INVALID_PARAMS, "message": "p"})
        );
    }
}
