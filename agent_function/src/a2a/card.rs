//! `GET /.well-known/agent-card.json`: who this agent is, what it can do,
//! where and how to call it.
//!
//! One card serves both revisions: a 1.0 client reads `supportedInterfaces`
//! (one per revision, both at `/a2a`), a 0.3 client `url`,
//! `preferredTransport` and `protocolVersion`. Asked with
//! `A2A-Version: 1.0`, the card is 1.0's alone (its security schemes in
//! 1.0's shape); otherwise 0.3's shapes, which 1.0 clients also read.

use agent_core::a2a::{VERSION_HEADER, Version};
use agent_core::http::Operation;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{A2a, PATH, base_url};

pub(super) async fn card(State(a2a): State<A2a>, headers: HeaderMap) -> Json<Value> {
    let version =
        Version::from_header(headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok())).unwrap_or(Version::V03);
    let endpoint = format!("{}{PATH}", base_url(&a2a, &headers));
    Json(render(&a2a, version, &endpoint))
}

fn render(a2a: &A2a, version: Version, endpoint: &str) -> Value {
    let skills: Vec<Value> = a2a
        .agent
        .tools
        .specs()
        .into_iter()
        .map(|spec| {
            json!({
                "id": spec.name,
                "name": spec.name,
                "description": spec.description,
                "tags": ["tool"],
            })
        })
        .collect();
    let mut card = json!({
        "name": "serverless-agent",
        "description": "A tool-calling agent: it answers a task with its tools (a calculator, a web search over \
                        its corpus, a memory per conversation, and any MCP servers or A2A agents it is given), \
                        one task per message, the conversation kept per contextId.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [
            {"url": endpoint, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": endpoint, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills,
    });
    let (schemes, requirements) = security(a2a, version);
    if let Some(schemes) = schemes {
        card["securitySchemes"] = schemes;
    }
    match version {
        Version::V1 => {
            if let Some(requirements) = requirements {
                card["securityRequirements"] = requirements;
            }
        }
        Version::V03 => {
            card["url"] = json!(endpoint);
            card["preferredTransport"] = json!("JSONRPC");
            card["protocolVersion"] = json!("0.3.0");
            if let Some(requirements) = requirements {
                card["security"] = requirements;
            }
        }
    }
    card
}

/// The credentials the service takes, in `version`'s shapes: the API key
/// header and bearer ID tokens, each enough alone.
fn security(a2a: &A2a, version: Version) -> (Option<Value>, Option<Value>) {
    let mut schemes = serde_json::Map::new();
    let mut names = Vec::new();
    if a2a.api_keys {
        let scheme = match version {
            Version::V1 => json!({"apiKeySecurityScheme": {"location": "header", "name": "X-API-Key"}}),
            Version::V03 => json!({"type": "apiKey", "in": "header", "name": "X-API-Key"}),
        };
        schemes.insert("apiKey".into(), scheme);
        names.push("apiKey");
    }
    if a2a.tokens {
        let scheme = match version {
            Version::V1 => json!({"httpAuthSecurityScheme": {"scheme": "bearer", "bearerFormat": "JWT",
                "description": "a Google or Firebase ID token"}}),
            Version::V03 => json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "a Google or Firebase ID token"}),
        };
        schemes.insert("idToken".into(), scheme);
        names.push("idToken");
    }
    if names.is_empty() {
        return (None, None);
    }
    let requirements: Vec<Value> = names
        .iter()
        .map(|name| match version {
            Version::V1 => json!({"schemes": {*name: {"list": []}}}),
            Version::V03 => json!({*name: []}),
        })
        .collect();
    (Some(Value::Object(schemes)), Some(Value::Array(requirements)))
}

pub(super) fn operation() -> Operation {
    Operation::get(
        "agent_card",
        "the A2A agent card: name, skills (the tools), capabilities, security schemes and the JSON-RPC \
         endpoint's URL (PUBLIC_URL, else this request's host); with A2A-Version: 1.0 in 1.0's shape alone",
    )
    .tag("a2a")
    .json::<Value>(200, "the agent card")
}
