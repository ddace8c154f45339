//! Gemini, on Google AI Studio (API key) and on Vertex AI (the service
//! account's access token from the metadata server).
//!
//! Both speak the same `GenerateContent` format; only the URL and the
//! credentials differ. A model turn Gemini produced is sent back exactly as it
//! came ([`Content::raw`]): Gemini 3 attaches a `thoughtSignature` to its
//! function calls and rejects a follow-up request that does not return it.
//!
//! The API key travels in the `x-goog-api-key` header, never in the URL, so
//! no URL in a log line or an error message holds it.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::retry::{self, RetryPolicy};
use super::sse::{self, Accumulator, SseEvent};
use super::{
    Content, FunctionCall, FunctionResponse, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Part, Role,
    Usage,
};
use crate::config::LlmSettings;
use crate::gcp::MetadataClient;

enum Auth {
    /// The `x-goog-api-key` header value, marked sensitive.
    ApiKey(HeaderValue),
    /// A fresh `Authorization: Bearer` token for every call.
    Metadata(MetadataClient),
}

pub struct GeminiModel {
    http: reqwest::Client,
    model: String,
    /// Up to `.../models/{model}`; the method (`:generateContent`) follows.
    endpoint: String,
    auth: Auth,
    policy: RetryPolicy,
    provider: &'static str,
}

impl GeminiModel {
    /// Gemini on Google AI Studio, with `GEMINI_API_KEY`.
    pub fn ai_studio(settings: &LlmSettings, http: reqwest::Client) -> anyhow::Result<Self> {
        let Some(key) = settings.gemini_api_key.as_ref() else {
            anyhow::bail!("GEMINI_API_KEY is not set (Gemini on AI Studio needs an API key)");
        };
        let mut header = HeaderValue::from_str(key.expose())
            .map_err(|_| anyhow::anyhow!("GEMINI_API_KEY holds characters that cannot be sent in an HTTP header"))?;
        header.set_sensitive(true);
        let model = model_id(&settings.gemini_model);
        Ok(GeminiModel {
            http,
            endpoint: format!("{}/v1beta/models/{model}", settings.gemini_base_url),
            model,
            auth: Auth::ApiKey(header),
            policy: RetryPolicy::from_settings(settings).redacting(key),
            provider: "gemini",
        })
    }

    /// Gemini on Vertex AI, with the credentials of the metadata server that
    /// `GCE_METADATA_HOST` names (on Google Cloud: the service's own).
    pub fn vertex(settings: &LlmSettings, http: reqwest::Client) -> anyhow::Result<Self> {
        let metadata = MetadataClient::from_env(http.clone());
        Self::vertex_with_metadata(settings, http, metadata)
    }

    /// Gemini on Vertex AI, with tokens from `metadata`.
    pub fn vertex_with_metadata(
        settings: &LlmSettings,
        http: reqwest::Client,
        metadata: MetadataClient,
    ) -> anyhow::Result<Self> {
        let Some(project) = settings.vertex_project.as_deref() else {
            anyhow::bail!("VERTEX_PROJECT is not set (Vertex AI needs the Google Cloud project id)");
        };
        let location = settings.vertex_location.as_str();
        let base = match settings.vertex_base_url.as_deref() {
            Some(base) => base.trim_end_matches('/').to_string(),
            None if location == "global" => "https://aiplatform.googleapis.com".to_string(),
            None => format!("https://{location}-aiplatform.googleapis.com"),
        };
        let model = model_id(&settings.gemini_model);
        Ok(GeminiModel {
            http,
            endpoint: format!("{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}"),
            model,
            auth: Auth::Metadata(metadata),
            policy: RetryPolicy::from_settings(settings),
            provider: "vertex",
        })
    }

    async fn auth_header(&self) -> Result<(HeaderName, HeaderValue), ModelError> {
        match &self.auth {
            Auth::ApiKey(key) => Ok((HeaderName::from_static("x-goog-api-key"), key.clone())),
            Auth::Metadata(metadata) => {
                let token = metadata.access_token().await.map_err(|err| ModelError::Unavailable {
                    message: err.to_string(),
                    retry_after: None,
                })?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ModelError::Unavailable {
                        message: "the metadata server handed out an access token that is not a valid header".into(),
                        retry_after: None,
                    })?;
                value.set_sensitive(true);
                Ok((reqwest::header::AUTHORIZATION, value))
            }
        }
    }

    /// The access token changes, so the policy cannot mask it in advance:
    /// an error that quotes it (a proxy echoing the request) is masked here.
    fn redact_token(&self, err: ModelError, auth: &(HeaderName, HeaderValue)) -> ModelError {
        let Auth::Metadata(_) = self.auth else {
            return err;
        };
        let Some(token) = auth
            .1
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| !t.is_empty())
        else {
            return err;
        };
        match err {
            ModelError::Upstream { status, message } => ModelError::Upstream {
                status,
                message: message.replace(token, "***"),
            },
            ModelError::Unavailable { message, retry_after } => ModelError::Unavailable {
                message: message.replace(token, "***"),
                retry_after,
            },
            other => other,
        }
    }

    fn post(&self, url: &str, auth: &(HeaderName, HeaderValue), body: &Bytes) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(auth.0.clone(), auth.1.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
    }
}

/// `models/gemini-2.5-flash` and `gemini-2.5-flash` name the same model.
fn model_id(name: &str) -> String {
    name.trim().trim_start_matches("models/").to_string()
}

#[async_trait]
impl Model for GeminiModel {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &'static str {
        self.provider
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let body = retry::json_body(&request_body(request))?;
        let auth = self.auth_header().await?;
        let url = format!("{}:generateContent", self.endpoint);
        let answer = retry::send_json_with_retry(&self.policy, || self.post(&url, &auth, &body))
            .await
            .map_err(|err| self.redact_token(err, &auth))?;
        decode_response(&answer, &self.model)
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let body = retry::json_body(&request_body(&request))?;
        let auth = self.auth_header().await?;
        let url = format!("{}:streamGenerateContent?alt=sse", self.endpoint);
        let response = retry::send_with_retry(&self.policy, || self.post(&url, &auth, &body))
            .await
            .map_err(|err| self.redact_token(err, &auth))?;
        let events = sse::events(response, self.policy.timeout);
        let accumulator = StreamAccumulator {
            configured_model: self.model.clone(),
            ..Default::default()
        };
        sse::first_event_ready(sse::model_stream(events, accumulator)).await
    }
}

/// The `GenerateContentRequest` JSON for `request`.
pub fn request_body(request: &ModelRequest) -> Value {
    let contents: Vec<Value> = request.contents.iter().filter_map(encode_content).collect();
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = request.system_instruction.as_deref().filter(|s| !s.trim().is_empty()) {
        body.insert("systemInstruction".into(), json!({"parts": [{"text": system}]}));
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                let mut declaration = json!({"name": tool.name, "description": tool.description});
                // Gemini rejects an object schema without properties
                // ("properties: should be non-empty for OBJECT type"): a
                // function without arguments has no `parameters` at all.
                if !is_empty_object_schema(&tool.parameters) {
                    declaration["parameters"] = tool.parameters.clone();
                }
                declaration
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    if let Some(output) = &request.response_schema {
        body.insert(
            "generationConfig".into(),
            json!({"responseMimeType": "application/json", "responseSchema": gemini_schema(&output.schema)}),
        );
    }
    Value::Object(body)
}

/// A JSON Schema as Gemini's `Schema` (an OpenAPI subset): the same, less
/// `additionalProperties`, a field `Schema` does not have and Gemini
/// rejects as an unknown name.
fn gemini_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != "additionalProperties")
                .map(|(key, value)| (key.clone(), gemini_schema(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(gemini_schema).collect()),
        other => other.clone(),
    }
}

fn is_empty_object_schema(schema: &Value) -> bool {
    match schema {
        Value::Null => true,
        Value::Object(map) => {
            map.is_empty()
                || (map.get("type").and_then(Value::as_str) == Some("object")
                    && map
                        .get("properties")
                        .and_then(Value::as_object)
                        .is_none_or(Map::is_empty))
        }
        _ => false,
    }
}

/// A turn as Gemini `Content`. A model turn Gemini produced goes back as it
/// came; a turn with nothing to say is left out (Gemini rejects empty parts).
fn encode_content(content: &Content) -> Option<Value> {
    if content.role() == Role::Model
        && let Some(raw) = content.raw.as_ref().filter(|raw| is_gemini_content(raw))
    {
        let mut raw = raw.clone();
        if let Some(object) = raw.as_object_mut() {
            object.entry("role").or_insert_with(|| json!("model"));
        }
        return Some(raw);
    }
    let parts: Vec<Value> = content.parts.iter().filter_map(encode_part).collect();
    if parts.is_empty() {
        return None;
    }
    Some(json!({"role": content.role().as_str(), "parts": parts}))
}

/// Raw JSON that another provider produced (an OpenAI message, say, after a
/// change of provider) is not Gemini's and is re-encoded from the parts.
fn is_gemini_content(raw: &Value) -> bool {
    raw.get("parts").is_some_and(Value::is_array)
}

fn encode_part(part: &Part) -> Option<Value> {
    match part {
        Part::Text(text) if text.is_empty() => None,
        Part::Text(text) => Some(json!({"text": text})),
        Part::FunctionCall(call) => {
            let args = if call.args.is_null() {
                json!({})
            } else {
                call.args.clone()
            };
            let mut inner = json!({"name": call.name, "args": args});
            if let Some(id) = &call.id {
                inner["id"] = json!(id);
            }
            Some(json!({"functionCall": inner}))
        }
        Part::FunctionResponse(response) => {
            // `response` must be a JSON object for Gemini.
            let body = match &response.response {
                Value::Object(_) => response.response.clone(),
                other => json!({"result": other}),
            };
            let mut inner = json!({"name": response.name, "response": body});
            if let Some(id) = &response.id {
                inner["id"] = json!(id);
            }
            Some(json!({"functionResponse": inner}))
        }
    }
}

/// A `GenerateContentResponse` as a [`ModelResponse`], or the reason it is
/// not one.
pub(crate) fn decode_response(answer: &Value, configured_model: &str) -> Result<ModelResponse, ModelError> {
    let model = answer
        .get("modelVersion")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(configured_model)
        .to_string();
    let Some(candidate) = answer
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        if let Some(reason) = answer.pointer("/promptFeedback/blockReason").and_then(Value::as_str) {
            return Err(ModelError::Blocked(format!("the prompt was blocked ({reason})")));
        }
        return Err(ModelError::Upstream {
            status: None,
            message: "the model returned no candidates".into(),
        });
    };
    let finish_reason = candidate.get("finishReason").and_then(Value::as_str);
    if let Some(reason @ ("MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL")) = finish_reason {
        let detail = candidate
            .get("finishMessage")
            .and_then(Value::as_str)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Err(ModelError::Upstream {
            status: None,
            message: format!("the model produced a function call it was not able to make ({reason}){detail}"),
        });
    }
    let content = candidate.get("content").filter(|c| c.is_object());
    let parts = content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| decode_parts(parts))
        .unwrap_or_default();
    if parts.is_empty()
        && let Some(reason @ ("SAFETY" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "IMAGE_SAFETY")) = finish_reason
    {
        return Err(ModelError::Blocked(format!("the answer was blocked ({reason})")));
    }
    let usage = answer.get("usageMetadata");
    let count = |field: &str| usage.and_then(|u| u.get(field)).and_then(Value::as_u64).unwrap_or(0);
    Ok(ModelResponse {
        content: Content {
            role: Some(Role::Model),
            parts,
            raw: content.cloned(),
        },
        // Tool-use prompts (grounding) are billed as input; thinking is
        // billed as output; the prompt count already holds the cached part.
        usage: Usage {
            input_tokens: count("promptTokenCount") + count("toolUsePromptTokenCount"),
            output_tokens: count("candidatesTokenCount") + count("thoughtsTokenCount"),
            cached_tokens: count("cachedContentTokenCount"),
            thinking_tokens: count("thoughtsTokenCount"),
        },
        model,
        cost: None,
        cache_hit: None,
    })
}

/// Gemini parts as [`Part`]s. Thoughts (`"thought": true`) are the model's
/// reasoning, not its answer, and are left out; so are kinds of part this
/// system does not use (inline data, code execution).
fn decode_parts(parts: &[Value]) -> Vec<Part> {
    parts
        .iter()
        .filter(|part| !is_thought(part))
        .filter_map(|part| {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                return (!text.is_empty()).then(|| Part::Text(text.to_string()));
            }
            if let Some(call) = part.get("functionCall") {
                return Some(Part::FunctionCall(FunctionCall {
                    id: string_field(call, "id"),
                    name: string_field(call, "name")?,
                    args: call
                        .get("args")
                        .filter(|a| !a.is_null())
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                }));
            }
            if let Some(response) = part.get("functionResponse") {
                return Some(Part::FunctionResponse(FunctionResponse {
                    id: string_field(response, "id"),
                    name: string_field(response, "name")?,
                    response: response.get("response").cloned().unwrap_or_else(|| json!({})),
                }));
            }
            None
        })
        .collect()
}

fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool).unwrap_or(false)
}

fn string_field(value: &Value, field: &str) -> Option<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Folds `streamGenerateContent` chunks into one `GenerateContentResponse`
/// and decodes that like a plain answer, so a streamed turn and a plain one
/// mean the same thing.
#[derive(Default)]
struct StreamAccumulator {
    configured_model: String,
    chunks: usize,
    role: Option<Value>,
    /// The candidate's parts, in order. Consecutive plain text parts are
    /// joined; a part with anything else (a `thoughtSignature`, a thought, a
    /// call) is kept as it came, as Google asks for signed parts.
    parts: Vec<Value>,
    finish_reason: Option<Value>,
    finish_message: Option<Value>,
    usage: Option<Value>,
    model_version: Option<Value>,
    prompt_feedback: Option<Value>,
    saw_candidate: bool,
}

fn is_plain_text(part: &Value) -> bool {
    part.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("text").is_some_and(Value::is_string))
}

impl StreamAccumulator {
    fn add_part(&mut self, part: &Value) {
        if is_plain_text(part)
            && let Some(last) = self.parts.last_mut().filter(|last| is_plain_text(last))
            && let (Some(before), Some(more)) = (
                last.get("text").and_then(Value::as_str),
                part.get("text").and_then(Value::as_str),
            )
        {
            *last = json!({"text": format!("{before}{more}")});
            return;
        }
        self.parts.push(part.clone());
    }
}

impl Accumulator for StreamAccumulator {
    fn event(&mut self, event: &SseEvent) -> Result<(Vec<String>, bool), ModelError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok((Vec::new(), false));
        }
        let chunk: Value = serde_json::from_str(data).map_err(|err| ModelError::Upstream {
            status: None,
            message: format!("the stream sent a chunk that is not JSON ({err})"),
        })?;
        if let Some(error) = chunk.get("error") {
            let message = retry::provider_message(&chunk).unwrap_or_else(|| error.to_string());
            return Err(match error.get("code").and_then(Value::as_u64) {
                Some(code) => retry::status_error(code as u16, message, retry::retry_info_delay(&chunk)),
                None => ModelError::Upstream { status: None, message },
            });
        }
        self.chunks += 1;
        for (field, slot) in [
            ("usageMetadata", &mut self.usage),
            ("modelVersion", &mut self.model_version),
            ("promptFeedback", &mut self.prompt_feedback),
        ] {
            if let Some(value) = chunk.get(field) {
                *slot = Some(value.clone());
            }
        }
        let mut deltas = Vec::new();
        if let Some(candidate) = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        {
            self.saw_candidate = true;
            if let Some(reason) = candidate.get("finishReason") {
                self.finish_reason = Some(reason.clone());
            }
            if let Some(message) = candidate.get("finishMessage") {
                self.finish_message = Some(message.clone());
            }
            if let Some(role) = candidate.pointer("/content/role") {
                self.role = Some(role.clone());
            }
            for part in candidate
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !is_thought(part)
                    && let Some(text) = part.get("text").and_then(Value::as_str)
                {
                    deltas.push(text.to_string());
                }
                self.add_part(part);
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
        // Gemini's last chunk carries the finishReason ("if empty, the model
        // has not stopped generating"): a stream that ends without one was
        // cut short, by a proxy or the network, and its text is not the
        // whole answer.
        if self.saw_candidate && self.finish_reason.is_none() {
            return Err(ModelError::Unavailable {
                message: "the stream ended before the model finished its answer (no chunk carried a finishReason)"
                    .into(),
                retry_after: None,
            });
        }
        let mut answer = Map::new();
        if self.saw_candidate {
            let mut candidate = Map::new();
            if !self.parts.is_empty() || self.role.is_some() {
                let role = self.role.unwrap_or_else(|| json!("model"));
                candidate.insert("content".into(), json!({"role": role, "parts": self.parts}));
            }
            if let Some(reason) = self.finish_reason {
                candidate.insert("finishReason".into(), reason);
            }
            if let Some(message) = self.finish_message {
                candidate.insert("finishMessage".into(), message);
            }
            answer.insert("candidates".into(), json!([candidate]));
        }
        for (field, value) in [
            ("usageMetadata", self.usage),
            ("modelVersion", self.model_version),
            ("promptFeedback", self.prompt_feedback),
        ] {
            if let Some(value) = value {
                answer.insert(field.into(), value);
            }
        }
        decode_response(&Value::Object(answer), &self.configured_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolSpec;

    #[test]
    fn request_body_encodes_turns_system_and_tools() {
        let request = ModelRequest {
            response_schema: None,
            system_instruction: Some("be brief".into()),
            contents: vec![
                Content::user_text("hi"),
                Content {
                    role: Some(Role::Model),
                    parts: vec![Part::FunctionCall(FunctionCall {
                        id: Some("c1".into()),
                        name: "f".into(),
                        args: json!({"a": 1}),
                    })],
                    raw: None,
                },
                Content {
                    role: Some(Role::User),
                    parts: vec![Part::FunctionResponse(FunctionResponse {
                        id: None,
                        name: "f".into(),
                        response: json!("plain"),
                    })],
                    raw: None,
                },
                Content {
                    role: Some(Role::User),
                    parts: vec![Part::Text(String::new())],
                    raw: None,
                },
            ],
            tools: vec![
                ToolSpec {
                    name: "f".into(),
                    description: "does f".into(),
                    parameters: json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
                },
                ToolSpec {
                    name: "g".into(),
                    description: "no arguments".into(),
                    parameters: json!({"type": "object", "properties": {}}),
                },
            ],
        };
        assert_eq!(
            request_body(&request),
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "plain"}}}]}
                ],
                "systemInstruction": {"parts": [{"text": "be brief"}]},
                "tools": [{"functionDeclarations": [
                    {"name": "f", "description": "does f",
                     "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
                    {"name": "g", "description": "no arguments"}
                ]}]
            })
        );
    }

    #[test]
    fn response_schema_asks_for_json_without_fields_gemini_lacks() {
        let request = ModelRequest {
            contents: vec![Content::user_text("plan")],
            response_schema: Some(crate::llm::ResponseSchema {
                name: "plan".into(),
                schema: json!({"type": "object", "additionalProperties": false,
                    "properties": {"xs": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                        "properties": {"id": {"type": "string", "enum": ["a"]}}, "required": ["id"]}}},
                    "required": ["xs"]}),
            }),
            ..ModelRequest::default()
        };
        assert_eq!(
            request_body(&request)["generationConfig"],
            json!({"responseMimeType": "application/json", "responseSchema": {"type": "object",
                "properties": {"xs": {"type": "array", "items": {"type": "object",
                    "properties": {"id": {"type": "string", "enum": ["a"]}}, "required": ["id"]}}},
                "required": ["xs"]}})
        );
        assert!(request_body(&ModelRequest::default()).get("generationConfig").is_none());
    }

    #[test]
    fn raw_model_turns_go_back_verbatim_unless_foreign() {
        let raw = json!({"role": "model", "parts": [
            {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}
        ]});
        let turn = Content {
            role: Some(Role::Model),
            parts: vec![Part::Text("ignored".into())],
            raw: Some(raw.clone()),
        };
        assert_eq!(encode_content(&turn), Some(raw));
        let foreign = Content {
            role: Some(Role::Model),
            parts: vec![Part::Text("hello".into())],
            raw: Some(json!({"role": "assistant", "content": "hello"})),
        };
        assert_eq!(
            encode_content(&foreign),
            Some(json!({"role": "model", "parts": [{"text": "hello"}]}))
        );
    }

    #[test]
    fn thoughts_are_not_text_and_usage_counts_them_as_output() {
        let answer = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"text": "Hello"},
                {"text": "", "thoughtSignature": "c2ln"}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 7, "cachedContentTokenCount": 3},
        });
        let response = decode_response(&answer, "configured").expect("decodes");
        assert_eq!(response.text(), "Hello");
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 9,
                cached_tokens: 3,
                thinking_tokens: 7,
            }
        );
        assert_eq!(response.model, "configured");
        assert_eq!(response.content.raw.as_ref(), answer.pointer("/candidates/0/content"));
    }

    #[test]
    fn blocks_and_bad_calls_are_errors() {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert_eq!(
            decode_response(&blocked, "m"),
            Err(ModelError::Blocked("the prompt was blocked (SAFETY)".into()))
        );
        let unsafe_answer = json!({"candidates": [{"finishReason": "SAFETY"}]});
        assert!(matches!(
            decode_response(&unsafe_answer, "m"),
            Err(ModelError::Blocked(_))
        ));
        let malformed =
            json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "finishMessage": "bad json"}]});
        match decode_response(&malformed, "m") {
            Err(ModelError::Upstream { status: None, message }) => {
                assert!(
                    message.contains("MALFORMED_FUNCTION_CALL") && message.contains("bad json"),
                    "{message}"
                )
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
        assert!(matches!(
            decode_response(&json!({}), "m"),
            Err(ModelError::Upstream { .. })
        ));
    }

    #[test]
    fn stream_chunks_merge_text_but_keep_signed_parts() {
        let mut acc = StreamAccumulator {
            configured_model: "m".into(),
            ..Default::default()
        };
        let chunks = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "c2ln"}
            ]}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}, "modelVersion": "gemini-x"}),
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
        assert_eq!(deltas, ["Hel", "lo"]);
        let response = acc.finish().expect("response");
        assert_eq!(response.text(), "Hello");
        assert_eq!(response.model, "gemini-x");
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }
        );
        assert_eq!(
            response.content.raw,
            Some(json!({"role": "model", "parts": [
                {"text": "Hello"},
                {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "c2ln"}
            ]}))
        );
        assert_eq!(response.content.function_calls().count(), 1);
    }

    #[test]
    fn stream_error_chunks_are_errors() {
        let mut acc = StreamAccumulator::default();
        let chunk = json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}});
        let err = acc
            .event(&SseEvent {
                data: chunk.to_string(),
                ..SseEvent::default()
            })
            .expect_err("error");
        assert!(matches!(err, ModelError::Unavailable { .. }), "{err:?}");
        assert!(
            StreamAccumulator::default().finish().is_err(),
            "an empty stream is not an answer"
        );
    }

    #[test]
    fn a_stream_without_a_finish_reason_is_not_an_answer() {
        let mut acc = StreamAccumulator::default();
        let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "The answer is"}]}}]});
        let (deltas, _) = acc
            .event(&SseEvent {
                data: chunk.to_string(),
                ..SseEvent::default()
            })
            .expect("chunk");
        assert_eq!(deltas, ["The answer is"]);
        let err = acc.finish().expect_err("cut short");
        assert!(
            matches!(&err, ModelError::Unavailable { message, .. } if message.contains("finishReason")),
            "{err:?}"
        );
    }
}
