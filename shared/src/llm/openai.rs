//! OpenAI chat completions, and every server that speaks the same format
//! (Ollama, vLLM, LM Studio, LiteLLM, Azure-style proxies).
//!
//! The key is optional because local servers take none. OpenAI pairs each
//! tool result with its call through an id; turns that carry no id (written
//! by another provider, or by hand) get one derived from the call's position
//! in the conversation, so the same history always yields the same ids.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};

use super::retry::{self, RetryPolicy};
use super::sse::{self, Accumulator, SseEvent};
use super::{Content, FunctionCall, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Part, Role, Usage};
use crate::config::LlmSettings;

pub(crate) struct OpenAiModel {
    http: reqwest::Client,
    model: String,
    url: String,
    /// `Bearer KEY`, marked sensitive; `None` for servers without keys.
    authorization: Option<HeaderValue>,
    policy: RetryPolicy,
}

impl OpenAiModel {
    pub(crate) fn new(settings: &LlmSettings, http: reqwest::Client) -> anyhow::Result<Self> {
        let mut policy = RetryPolicy::from_settings(settings);
        let authorization = match settings.openai_api_key.as_ref() {
            Some(key) => {
                policy = policy.redacting(key);
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    anyhow::anyhow!("OPENAI_API_KEY holds characters that cannot be sent in an HTTP header")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(OpenAiModel {
            http,
            model: settings.openai_model.clone(),
            url: format!("{}/chat/completions", settings.openai_base_url.trim_end_matches('/')),
            authorization,
            policy,
        })
    }

    fn post(&self, body: &Bytes) -> reqwest::RequestBuilder {
        let mut builder = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        builder
    }
}

#[async_trait]
impl Model for OpenAiModel {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &'static str {
        "openai"
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let body = retry::json_body(&request_body(&self.model, request, false))?;
        let answer = retry::send_json_with_retry(&self.policy, || self.post(&body)).await?;
        decode_response(&answer, &self.model)
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let body = retry::json_body(&request_body(&self.model, &request, true))?;
        let response = retry::send_with_retry(&self.policy, || self.post(&body)).await?;
        let events = sse::events(response, self.policy.timeout);
        let accumulator = StreamAccumulator {
            configured_model: self.model.clone(),
            ..Default::default()
        };
        sse::first_event_ready(sse::model_stream(events, accumulator)).await
    }
}

/// The chat completions request JSON for `request`.
pub(crate) fn request_body(model: &str, request: &ModelRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages(request)));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                }})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(output) = &request.response_schema {
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {
                "name": output.name,
                "strict": true,
                "schema": output.schema,
            }}),
        );
    }
    if stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

/// The conversation as chat messages: tool results become `tool` messages
/// right after the assistant message that asked for them, as OpenAI requires.
fn messages(request: &ModelRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(system) = request.system_instruction.as_deref().filter(|s| !s.trim().is_empty()) {
        out.push(json!({"role": "system", "content": system}));
    }
    let mut ids = CallIds::default();
    for content in &request.contents {
        match content.role() {
            Role::Model => {
                ids.new_turn();
                let tool_calls: Vec<Value> = content
                    .function_calls()
                    .map(|call| {
                        let id = ids.call(call);
                        json!({"id": id, "type": "function", "function": {
                            "name": call.name,
                            "arguments": arguments_text(&call.args),
                        }})
                    })
                    .collect();
                if let Some(raw) = content.raw.as_ref().filter(|raw| is_openai_message(raw)) {
                    out.push(standard_fields(raw));
                    continue;
                }
                let text = content.text();
                if text.is_empty() && tool_calls.is_empty() {
                    continue;
                }
                let mut message = Map::new();
                message.insert("role".into(), json!("assistant"));
                message.insert(
                    "content".into(),
                    if text.is_empty() { Value::Null } else { json!(text) },
                );
                if !tool_calls.is_empty() {
                    message.insert("tool_calls".into(), Value::Array(tool_calls));
                }
                out.push(Value::Object(message));
            }
            Role::User => {
                for part in &content.parts {
                    if let Part::FunctionResponse(response) = part {
                        let id = ids.response(response.id.as_deref(), &response.name);
                        out.push(json!({
                            "role": "tool",
                            "tool_call_id": id,
                            "content": response.response.to_string(),
                        }));
                    }
                }
                let text = content.text();
                if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    out
}

/// Hands out the ids that pair calls with results.
#[derive(Default)]
struct CallIds {
    /// Calls seen so far in the conversation; numbers synthesized ids.
    count: usize,
    /// The calls of the latest model turn still waiting for a result.
    pending: VecDeque<(String, String)>,
}

impl CallIds {
    /// A model turn: calls of earlier turns left unanswered stay so.
    fn new_turn(&mut self) {
        self.pending.clear();
    }

    fn call(&mut self, call: &FunctionCall) -> String {
        let id = call.id.clone().unwrap_or_else(|| format!("call_{}", self.count));
        self.count += 1;
        self.pending.push_back((call.name.clone(), id.clone()));
        id
    }

    /// The id of the result for the call named `name`: its own, or that of
    /// the earliest unanswered call of the same name.
    fn response(&mut self, id: Option<&str>, name: &str) -> String {
        if let Some(id) = id {
            self.pending.retain(|(_, pending)| pending != id);
            return id.to_string();
        }
        if let Some(at) = self.pending.iter().position(|(pending, _)| pending == name)
            && let Some((_, id)) = self.pending.remove(at)
        {
            return id;
        }
        let id = format!("call_{}", self.count);
        self.count += 1;
        id
    }
}

/// Raw JSON another provider produced (Gemini's content, after a change of
/// provider) is not an OpenAI message and is re-encoded from the parts.
fn is_openai_message(raw: &Value) -> bool {
    raw.get("role").and_then(Value::as_str) == Some("assistant")
}

/// The assistant message as received, but only its standard fields, with
/// their values verbatim (call ids, argument strings). Extras such as
/// `refusal: null`, `annotations` or DeepSeek's `reasoning_content` are
/// dropped: compatible servers may reject them in a request, and DeepSeek
/// documents a 400 for an echoed `reasoning_content`.
fn standard_fields(raw: &Value) -> Value {
    let mut message = Map::new();
    for key in ["role", "content", "tool_calls", "name"] {
        if let Some(value) = raw.get(key).filter(|v| !v.is_null() || key == "content") {
            message.insert(key.to_string(), value.clone());
        }
    }
    Value::Object(message)
}

/// OpenAI's arguments are a JSON string. Arguments that were not valid JSON
/// when the model sent them are kept as that string, and go back unchanged.
fn arguments_text(args: &Value) -> String {
    match args {
        Value::String(text) => text.clone(),
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    }
}

/// The arguments the model sent, as JSON; text that is not JSON stays a JSON
/// string so the agent can show the model what it got wrong.
fn decode_arguments(arguments: Option<&Value>) -> Value {
    match arguments {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        // Some compatible servers (older Ollama) send an object.
        Some(other) => other.clone(),
    }
}

/// A chat completion as a [`ModelResponse`], or the reason it is not one.
pub(crate) fn decode_response(answer: &Value, configured_model: &str) -> Result<ModelResponse, ModelError> {
    let Some(choice) = answer.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
        return Err(ModelError::Upstream {
            status: None,
            message: "the model returned no choices".into(),
        });
    };
    let Some(message) = choice.get("message").filter(|m| m.is_object()) else {
        return Err(ModelError::Upstream {
            status: None,
            message: "the model's choice holds no message".into(),
        });
    };
    let text = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        // Some servers send content as parts: [{"type": "text", "text": ...}].
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function");
        let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) else {
            continue;
        };
        parts.push(Part::FunctionCall(FunctionCall {
            id: call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string),
            name: name.to_string(),
            args: decode_arguments(function.and_then(|f| f.get("arguments"))),
        }));
    }
    if parts.is_empty() {
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            return Err(ModelError::Blocked(format!("the model refused: {refusal}")));
        }
        if choice.get("finish_reason").and_then(Value::as_str) == Some("content_filter") {
            return Err(ModelError::Blocked(
                "the answer was blocked by the provider's content filter".into(),
            ));
        }
    }
    let usage = answer.get("usage");
    let count = |path: &[&str]| {
        let mut value = usage;
        for field in path {
            value = value.and_then(|v| v.get(*field));
        }
        value.and_then(Value::as_u64).unwrap_or(0)
    };
    Ok(ModelResponse {
        content: Content {
            role: Some(Role::Model),
            parts,
            raw: Some(message.clone()),
        },
        // Both details are parts of their totals, as OpenAI counts them.
        usage: Usage {
            input_tokens: count(&["prompt_tokens"]),
            output_tokens: count(&["completion_tokens"]),
            cached_tokens: count(&["prompt_tokens_details", "cached_tokens"]),
            thinking_tokens: count(&["completion_tokens_details", "reasoning_tokens"]),
        },
        model: answer
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(configured_model)
            .to_string(),
        cost: None,
        cache_hit: None,
    })
}

#[derive(Default)]
struct ToolCallPieces {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Folds stream chunks into one chat completion and decodes that like a
/// plain answer, so a streamed turn and a plain one mean the same thing.
#[derive(Default)]
struct StreamAccumulator {
    configured_model: String,
    chunks: usize,
    text: String,
    refusal: String,
    /// By the `index` OpenAI gives each call; the id and name come in the
    /// first fragment, the arguments in pieces.
    tool_calls: BTreeMap<u64, ToolCallPieces>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
    model: Option<Value>,
    /// `data: [DONE]` arrived.
    done: bool,
}

impl Accumulator for StreamAccumulator {
    fn event(&mut self, event: &SseEvent) -> Result<(Vec<String>, bool), ModelError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok((Vec::new(), true));
        }
        if data.is_empty() {
            return Ok((Vec::new(), false));
        }
        let chunk: Value = serde_json::from_str(data).map_err(|err| ModelError::Upstream {
            status: None,
            message: format!("the stream sent a chunk that is not JSON ({err})"),
        })?;
        if let Some(error) = chunk.get("error") {
            let message = retry::provider_message(&chunk).unwrap_or_else(|| error.to_string());
            return Err(ModelError::Upstream { status: None, message });
        }
        self.chunks += 1;
        if let Some(model) = chunk.get("model").filter(|m| m.is_string()) {
            self.model = Some(model.clone());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let mut deltas = Vec::new();
        let Some(choice) = chunk.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
            return Ok((deltas, false));
        };
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            self.finish_reason = Some(reason.clone());
        }
        let Some(delta) = choice.get("delta") else {
            return Ok((deltas, false));
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.text.push_str(text);
            deltas.push(text.to_string());
        }
        if let Some(refusal) = delta.get("refusal").and_then(Value::as_str) {
            self.refusal.push_str(refusal);
        }
        for (position, fragment) in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = fragment.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
            let call = self.tool_calls.entry(index).or_default();
            if let Some(id) = fragment.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
                call.id = Some(id.to_string());
            }
            let function = fragment.get("function");
            if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str)
                && call.name.is_empty()
            {
                call.name = name.to_string();
            }
            match function.and_then(|f| f.get("arguments")) {
                Some(Value::String(piece)) => call.arguments.push_str(piece),
                Some(Value::Object(object)) => call.arguments = Value::Object(object.clone()).to_string(),
                _ => {}
            }
        }
        Ok((deltas, false))
    }

    fn finish(self) -> Result<ModelResponse, ModelError> {
        if self.chunks == 0 {
            return Err(ModelError::Upstream {
                status: None,
                message: "the stream ended without an answer".into(),
            });
        }
        // Neither `[DONE]` nor a finish_reason: the stream was cut short (a
        // proxy or the network ended it), and its text is not the whole answer.
        if !self.done && self.finish_reason.is_none() {
            return Err(ModelError::Unavailable {
                message: "the stream ended before the model finished its answer (no finish_reason, no [DONE])".into(),
                retry_after: None,
            });
        }
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            if self.text.is_empty() {
                Value::Null
            } else {
                json!(self.text)
            },
        );
        if !self.refusal.is_empty() {
            message.insert("refusal".into(), json!(self.refusal));
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .into_values()
                .enumerate()
                .map(|(position, call)| {
                    json!({
                        "id": call.id.unwrap_or_else(|| format!("call_{position}")),
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut choice = json!({"index": 0, "message": message});
        if let Some(reason) = self.finish_reason {
            choice["finish_reason"] = reason;
        }
        let mut answer = json!({"choices": [choice]});
        if let Some(usage) = self.usage {
            answer["usage"] = usage;
        }
        if let Some(model) = self.model {
            answer["model"] = model;
        }
        decode_response(&answer, &self.configured_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{FunctionResponse, ToolSpec};

    fn call(id: Option<&str>, name: &str) -> Part {
        Part::FunctionCall(FunctionCall {
            id: id.map(str::to_string),
            name: name.into(),
            args: json!({"q": 1}),
        })
    }

    fn result(id: Option<&str>, name: &str) -> Part {
        Part::FunctionResponse(FunctionResponse {
            id: id.map(str::to_string),
            name: name.into(),
            response: json!({"ok": true}),
        })
    }

    fn turn(role: Role, parts: Vec<Part>) -> Content {
        Content {
            role: Some(role),
            parts,
            raw: None,
        }
    }

    #[test]
    fn response_schema_is_a_strict_json_schema_format() {
        let schema = json!({"type": "object", "additionalProperties": false,
            "properties": {"id": {"type": "string"}}, "required": ["id"]});
        let request = ModelRequest {
            contents: vec![Content::user_text("plan")],
            response_schema: Some(crate::llm::ResponseSchema {
                name: "plan".into(),
                schema: schema.clone(),
            }),
            ..ModelRequest::default()
        };
        assert_eq!(
            request_body("gpt-x", &request, false)["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "plan", "strict": true, "schema": schema}})
        );
        assert!(
            request_body("gpt-x", &ModelRequest::default(), false)
                .get("response_format")
                .is_none()
        );
    }

    #[test]
    fn messages_pair_calls_and_results_with_synthesized_ids() {
        let request = ModelRequest {
            response_schema: None,
            system_instruction: Some("sys".into()),
            contents: vec![
                Content::user_text("hi"),
                turn(
                    Role::Model,
                    vec![Part::Text("let me look".into()), call(None, "a"), call(None, "b")],
                ),
                turn(Role::User, vec![result(None, "b"), result(None, "a")]),
                turn(Role::Model, vec![call(Some("xyz"), "a")]),
                turn(Role::User, vec![result(Some("xyz"), "a"), Part::Text("thanks".into())]),
            ],
            tools: vec![ToolSpec {
                name: "a".into(),
                description: "A".into(),
                parameters: json!({"type": "object"}),
            }],
        };
        let body = request_body("gpt-x", &request, false);
        assert_eq!(body["model"], "gpt-x");
        assert_eq!(
            body["tools"][0],
            json!({"type": "function", "function": {"name": "a", "description": "A", "parameters": {"type": "object"}}})
        );
        assert!(body.get("stream").is_none());
        let messages = body["messages"].as_array().expect("messages");
        let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap_or("?")).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "assistant",
                "tool",
                "tool",
                "assistant",
                "tool",
                "user"
            ]
        );
        assert_eq!(messages[2]["content"], "let me look");
        assert_eq!(messages[2]["tool_calls"][0]["id"], "call_0");
        assert_eq!(messages[2]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(messages[2]["tool_calls"][1]["id"], "call_1");
        assert_eq!(messages[3]["tool_call_id"], "call_1", "b's result pairs with b's call");
        assert_eq!(messages[4]["tool_call_id"], "call_0");
        assert_eq!(messages[4]["content"], "{\"ok\":true}");
        assert_eq!(messages[5]["content"], Value::Null);
        assert_eq!(messages[6]["tool_call_id"], "xyz");
        assert_eq!(messages[7]["content"], "thanks");
        assert_eq!(request_body("gpt-x", &request, false), body, "ids are stable");
    }

    #[test]
    fn raw_assistant_messages_go_back_with_their_standard_fields_verbatim() {
        let standard = json!({"role": "assistant", "content": null,
            "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "a", "arguments": "{ }"}}]});
        let mut raw = standard.clone();
        raw["reasoning_content"] = json!("hmm");
        raw["refusal"] = Value::Null;
        raw["annotations"] = json!([]);
        let request = ModelRequest {
            contents: vec![
                Content {
                    role: Some(Role::Model),
                    parts: vec![call(Some("c9"), "a")],
                    raw: Some(raw.clone()),
                },
                turn(Role::User, vec![result(None, "a")]),
            ],
            ..ModelRequest::default()
        };
        let body = request_body("m", &request, true);
        assert_eq!(body["messages"][0], standard);
        assert_eq!(body["messages"][1]["tool_call_id"], "c9");
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn bad_arguments_stay_a_string() {
        assert_eq!(decode_arguments(Some(&json!("{\"a\": 1}"))), json!({"a": 1}));
        assert_eq!(decode_arguments(Some(&json!("{not json"))), json!("{not json"));
        assert_eq!(decode_arguments(Some(&json!(""))), json!({}));
        assert_eq!(decode_arguments(Some(&json!({"a": 1}))), json!({"a": 1}));
        assert_eq!(arguments_text(&json!("{not json")), "{not json");
    }

    #[test]
    fn refusals_and_filters_are_blocks() {
        let refusal = json!({"choices": [{"message": {"role": "assistant", "content": null, "refusal": "I can't"}}]});
        assert_eq!(
            decode_response(&refusal, "m"),
            Err(ModelError::Blocked("the model refused: I can't".into()))
        );
        let filtered = json!({"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}]});
        assert!(matches!(decode_response(&filtered, "m"), Err(ModelError::Blocked(_))));
        assert!(matches!(
            decode_response(&json!({"choices": []}), "m"),
            Err(ModelError::Upstream { .. })
        ));
    }

    #[test]
    fn stream_fragments_are_assembled_by_index() {
        let mut acc = StreamAccumulator {
            configured_model: "m".into(),
            ..Default::default()
        };
        let chunks = [
            json!({"model": "gpt-y", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "c1", "type": "function", "function": {"name": "a", "arguments": ""}},
                {"index": 1, "id": "c2", "type": "function", "function": {"name": "b", "arguments": "{\"x\""}}
            ]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "2}"}}, {"index": 1, "function": {"arguments": ":3}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": null}),
            json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}}),
        ];
        let mut deltas = Vec::new();
        for chunk in chunks {
            let (d, end) = acc
                .event(&SseEvent {
                    data: chunk.to_string(),
                    ..SseEvent::default()
                })
                .expect("chunk");
            assert!(!end);
            deltas.extend(d);
        }
        let (_, end) = acc
            .event(&SseEvent {
                data: "[DONE]".into(),
                ..SseEvent::default()
            })
            .expect("done");
        assert!(end);
        assert_eq!(deltas, ["Hi"]);
        let response = acc.finish().expect("response");
        assert_eq!(response.text(), "Hi");
        assert_eq!(response.model, "gpt-y");
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 9,
                output_tokens: 4,
                cached_tokens: 2,
                thinking_tokens: 1,
            }
        );
        let calls: Vec<&FunctionCall> = response.content.function_calls().collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_deref(), calls[0].name.as_str(), &calls[0].args),
            (Some("c1"), "a", &json!({"q": 2}))
        );
        assert_eq!(
            (calls[1].id.as_deref(), calls[1].name.as_str(), &calls[1].args),
            (Some("c2"), "b", &json!({"x": 3}))
        );
    }

    #[test]
    fn a_stream_cut_short_is_not_an_answer() {
        let feed = |acc: &mut StreamAccumulator, data: &str| {
            acc.event(&SseEvent {
                data: data.to_string(),
                ..SseEvent::default()
            })
            .expect("chunk")
        };
        let partial = json!({"choices": [{"index": 0, "delta": {"content": "The answer is"}, "finish_reason": null}]});
        let mut acc = StreamAccumulator::default();
        feed(&mut acc, &partial.to_string());
        let err = acc.finish().expect_err("cut short");
        assert!(matches!(err, ModelError::Unavailable { .. }), "{err:?}");
        // Either end marker makes it whole.
        let mut acc = StreamAccumulator::default();
        feed(&mut acc, &partial.to_string());
        feed(&mut acc, "[DONE]");
        assert_eq!(acc.finish().expect("[DONE]").text(), "The answer is");
        let mut acc = StreamAccumulator::default();
        feed(&mut acc, &partial.to_string());
        feed(
            &mut acc,
            &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
        );
        assert_eq!(acc.finish().expect("finish_reason").text(), "The answer is");
    }
}
