//! What makes two model calls the same call: the cache key.
//!
//! The key is a SHA-256 over everything that shapes the answer: whose
//! cache it is (the principal, or everyone), the provider and the model,
//! the system instruction, every turn in order with its role, and the
//! tools offered with their schemas, and the structured output asked for
//! (a response schema). There are no other per-request generation settings
//! today; the version prefix changes when the encoding of a call that was
//! keyed before changes, so an old entry can never answer a call it does
//! not match.
//!
//! Two things are left out on purpose:
//! - the provider's own encoding of a turn (`Content::raw`): it repeats
//!   the parts, plus opaque data (thought signatures) that differs between
//!   two calls saying the same thing;
//! - function call ids: a provider makes up a new id for every call, and
//!   they only pair a call with its result, which the order already does.
//!   Without them an agent run that repeats an earlier one hits on every
//!   step, not only the first.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::llm::{ModelRequest, Part};

/// Bumped when the encoding below changes.
const VERSION: &str = "response-cache/1";

/// A cache key: 64 hex digits, usable as a SQLite key and a Firestore
/// document id as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Serialize)]
struct Shape<'a> {
    version: &'static str,
    scope: &'a str,
    provider: &'a str,
    model: &'a str,
    system: Option<&'a str>,
    turns: Vec<Turn<'a>>,
    tools: Vec<Tool<'a>>,
    /// Left out when absent, so a call without one keys as it always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Output<'a>>,
}

/// The structured output asked for (`ModelRequest::response_schema`).
#[derive(Serialize)]
struct Output<'a> {
    name: &'a str,
    schema: &'a Value,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    parts: Vec<PartShape<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum PartShape<'a> {
    Text(&'a str),
    Call { name: &'a str, args: &'a Value },
    Result { name: &'a str, response: &'a Value },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

/// The key of `request` to `model` of `provider`, in `scope` (a
/// principal, or `*` when the cache is global).
pub fn key(scope: &str, provider: &str, model: &str, request: &ModelRequest) -> Key {
    let shape = Shape {
        version: VERSION,
        scope,
        provider,
        model,
        system: request.system_instruction.as_deref(),
        turns: request
            .contents
            .iter()
            .map(|content| Turn {
                role: content.role().as_str(),
                parts: content
                    .parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(text) => PartShape::Text(text),
                        Part::FunctionCall(call) => PartShape::Call {
                            name: &call.name,
                            args: &call.args,
                        },
                        Part::FunctionResponse(result) => PartShape::Result {
                            name: &result.name,
                            response: &result.response,
                        },
                    })
                    .collect(),
            })
            .collect(),
        tools: request
            .tools
            .iter()
            .map(|tool| Tool {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
            })
            .collect(),
        output: request.response_schema.as_ref().map(|output| Output {
            name: &output.name,
            schema: &output.schema,
        }),
    };
    // Serialising these types cannot fail (string keys, no maps of other
    // keys); an empty encoding would only make every such call miss.
    let encoded = serde_json::to_vec(&shape).unwrap_or_default();
    Key(hex::encode(Sha256::digest(&encoded)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Content, FunctionCall, FunctionResponse, Role, ToolSpec};
    use serde_json::json;

    fn request() -> ModelRequest {
        ModelRequest {
            response_schema: None,
            system_instruction: Some("be brief".into()),
            contents: vec![
                Content::user_text("what is 2+2?"),
                Content {
                    role: Some(Role::Model),
                    parts: vec![Part::FunctionCall(FunctionCall {
                        id: Some("call_1".into()),
                        name: "calculate".into(),
                        args: json!({"expression": "2+2"}),
                    })],
                    raw: Some(json!({"thoughtSignature": "abc"})),
                },
                Content {
                    role: Some(Role::User),
                    parts: vec![Part::FunctionResponse(FunctionResponse {
                        id: Some("call_1".into()),
                        name: "calculate".into(),
                        response: json!({"result": 4}),
                    })],
                    raw: None,
                },
            ],
            tools: vec![ToolSpec {
                name: "calculate".into(),
                description: "arithmetic".into(),
                parameters: json!({"type": "object"}),
            }],
        }
    }

    #[test]
    fn everything_that_shapes_the_answer_changes_the_key_and_nothing_else_does() {
        let base = key("alice", "gemini", "gemini-2.5-flash", &request());
        assert_eq!(base.as_str().len(), 64);
        assert_eq!(base, key("alice", "gemini", "gemini-2.5-flash", &request()));

        // Call ids and the provider's raw encoding are not part of it.
        let mut same = request();
        if let Part::FunctionCall(call) = &mut same.contents[1].parts[0] {
            call.id = Some("call_other".into());
        }
        same.contents[1].raw = None;
        assert_eq!(base, key("alice", "gemini", "gemini-2.5-flash", &same));

        let mut changes: Vec<(&str, Key)> = vec![
            ("scope", key("bob", "gemini", "gemini-2.5-flash", &request())),
            ("provider", key("alice", "openai", "gemini-2.5-flash", &request())),
            ("model", key("alice", "gemini", "gemini-2.5-pro", &request())),
        ];
        let mut r = request();
        r.system_instruction = None;
        changes.push(("system", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        r.contents[0] = Content::user_text("what is 2+3?");
        changes.push(("a turn's text", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        r.contents[0].role = Some(Role::Model);
        changes.push(("a turn's role", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        r.contents.pop();
        changes.push(("the history", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        if let Part::FunctionResponse(result) = &mut r.contents[2].parts[0] {
            result.response = json!({"result": 5});
        }
        changes.push(("a tool's result", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        r.tools.clear();
        changes.push(("the tools", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        r.tools[0].parameters = json!({"type": "object", "required": ["x"]});
        changes.push(("a tool's schema", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let mut r = request();
        r.response_schema = Some(crate::llm::ResponseSchema {
            name: "plan".into(),
            schema: json!({"type": "object"}),
        });
        changes.push(("a response schema", key("alice", "gemini", "gemini-2.5-flash", &r)));
        let plan = r.clone();
        if let Some(output) = &mut r.response_schema {
            output.schema = json!({"type": "array"});
        }
        assert_ne!(
            key("alice", "gemini", "gemini-2.5-flash", &plan),
            key("alice", "gemini", "gemini-2.5-flash", &r),
            "the schema must change the key"
        );
        for (what, changed) in changes.drain(..) {
            assert_ne!(base, changed, "{what} must change the key");
        }
    }
}
