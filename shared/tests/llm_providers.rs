//! The HTTP model providers against local servers that speak each provider's
//! wire format (bodies shaped as in the Gemini, Vertex AI and OpenAI API
//! references). Every server records what it received, so each test checks
//! both what the provider sent and what it made of the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_core::config::{LlmSettings, Settings};
use agent_core::gcp::MetadataClient;
use agent_core::http::metrics::Metrics;
use agent_core::llm::gemini::GeminiModel;
use agent_core::llm::{
    Content, FunctionCall, FunctionResponse, Model, ModelError, ModelRequest, ModelResponse, Part, Role, StreamEvent,
    ToolSpec, Usage,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};

const GEMINI_KEY: &str = "gemini-test-key-5ecret";
const OPENAI_KEY: &str = "sk-test-key-5ecret";
const VERTEX_TOKEN: &str = "ya29.vertex-test-token";

// ---------------------------------------------------------------------------
// A scripted provider server.

/// What the server answers, in order; the last one repeats.
#[derive(Clone)]
enum Reply {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(&'static str, &'static str)>,
    },
    /// `text/event-stream`, sent in the given pieces with a pause between
    /// them, so the client sees them as separate chunks.
    Sse(Vec<Bytes>),
    /// Sends these pieces, then nothing more, ever.
    SseThenStall(Vec<Bytes>),
    /// Never answers.
    Hang,
}

fn ok(body: Value) -> Reply {
    Reply::Json {
        status: 200,
        body,
        headers: vec![],
    }
}

fn status(status: u16, body: Value) -> Reply {
    Reply::Json {
        status,
        body,
        headers: vec![],
    }
}

#[derive(Debug, Clone)]
struct Received {
    method: String,
    /// Path and query.
    uri: String,
    headers: HeaderMap,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
struct Script {
    replies: Arc<Vec<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
}

struct Server {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Server {
        assert!(!replies.is_empty(), "a script needs at least one reply");
        let script = Script {
            replies: Arc::new(replies),
            received: Arc::default(),
        };
        let received = script.received.clone();
        let app = Router::new().fallback(answer).with_state(script);
        let url = serve(app).await;
        Server { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the lock is not poisoned").clone()
    }

    fn count(&self) -> usize {
        self.received().len()
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the test server runs") });
    format!("http://{addr}")
}

async fn answer(State(script): State<Script>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("the request body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("the client sends JSON")
    };
    let index = {
        let mut received = script.received.lock().expect("the lock is not poisoned");
        received.push(Received {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body,
        });
        received.len() - 1
    };
    let reply = script.replies[index.min(script.replies.len() - 1)].clone();
    match reply {
        Reply::Json { status, body, headers } => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).expect("a status code"))
                .header("content-type", "application/json; charset=UTF-8");
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body.to_string())).expect("a response")
        }
        Reply::Sse(pieces) => sse_response(pieces, false),
        Reply::SseThenStall(pieces) => sse_response(pieces, true),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Body::empty())
        }
    }
}

fn sse_response(pieces: Vec<Bytes>, stall: bool) -> Response {
    let stream = futures_util::stream::iter(pieces)
        .then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, std::convert::Infallible>(piece)
        })
        .chain(futures_util::stream::once(async move {
            if stall {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(Bytes::new())
        }));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("a response")
}

/// An event stream of `events` (JSON or `[DONE]`), cut into pieces of 7
/// bytes and inside the first multi-byte character, so lines, `\r\n` line
/// endings and UTF-8 characters are split across chunks as a network may
/// split them.
fn sse_bytes(events: &[String]) -> Vec<Bytes> {
    let text: String = events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
    let bytes = text.into_bytes();
    let mut cuts: Vec<usize> = (7..bytes.len()).step_by(7).collect();
    if let Some(first) = bytes.iter().position(|b| !b.is_ascii()) {
        cuts.push(first + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(Bytes::copy_from_slice(&bytes[start..cut]));
        start = cut;
    }
    pieces
}

// ---------------------------------------------------------------------------
// Settings and models.

fn llm_settings(vars: &[(&str, &str)]) -> LlmSettings {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::from_lookup(|name| map.get(name).cloned())
        .expect("valid test settings")
        .llm
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    AiStudio,
    Vertex,
}

/// A Gemini model (on AI Studio or Vertex AI) in front of a scripted server.
struct Gemini {
    flavor: Flavor,
    model: Arc<dyn Model>,
    server: Server,
    metadata: Option<MetadataServer>,
}

impl Gemini {
    async fn start(flavor: Flavor, replies: Vec<Reply>) -> Gemini {
        Self::start_with(flavor, replies, |_| {}).await
    }

    async fn start_with(flavor: Flavor, replies: Vec<Reply>, tweak: impl FnOnce(&mut LlmSettings)) -> Gemini {
        let server = Server::start(replies).await;
        match flavor {
            Flavor::AiStudio => {
                let mut settings = llm_settings(&[
                    ("LLM_PROVIDER", "gemini"),
                    ("GEMINI_API_KEY", GEMINI_KEY),
                    ("GEMINI_BASE_URL", &server.url),
                    ("LLM_TIMEOUT_SECONDS", "5"),
                    ("LLM_MAX_RETRIES", "2"),
                ]);
                tweak(&mut settings);
                let model = agent_core::llm::build(&settings, Metrics::new("test")).expect("a Gemini model");
                Gemini {
                    flavor,
                    model,
                    server,
                    metadata: None,
                }
            }
            Flavor::Vertex => {
                let metadata = MetadataServer::start().await;
                let mut settings = llm_settings(&[
                    ("LLM_PROVIDER", "vertex"),
                    ("VERTEX_PROJECT", "test-project"),
                    ("VERTEX_LOCATION", "europe-west4"),
                    ("VERTEX_BASE_URL", &server.url),
                    ("LLM_TIMEOUT_SECONDS", "5"),
                    ("LLM_MAX_RETRIES", "2"),
                ]);
                tweak(&mut settings);
                let http = agent_core::llm::http_client(settings.timeout).expect("an HTTP client");
                let client = MetadataClient::new(metadata.host.clone(), http.clone());
                let model = GeminiModel::vertex_with_metadata(&settings, http, client).expect("a Vertex model");
                Gemini {
                    flavor,
                    model: Arc::new(model),
                    server,
                    metadata: Some(metadata),
                }
            }
        }
    }

    /// The path (and query) a call of `method` must use.
    fn uri(&self, method: &str) -> String {
        match self.flavor {
            Flavor::AiStudio => format!("/v1beta/models/gemini-2.5-flash:{method}"),
            Flavor::Vertex => format!(
                "/v1/projects/test-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:{method}"
            ),
        }
    }

    /// Checks the request carried the right credentials, in a header.
    fn assert_request(&self, request: &Received, method: &str) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, self.uri(method));
        assert!(!request.uri.contains("key="), "no key in the URL: {}", request.uri);
        assert_eq!(request.header("content-type"), Some("application/json"));
        match self.flavor {
            Flavor::AiStudio => {
                assert_eq!(request.header("x-goog-api-key"), Some(GEMINI_KEY));
                assert_eq!(request.header("authorization"), None);
            }
            Flavor::Vertex => {
                assert_eq!(
                    request.header("authorization"),
                    Some(format!("Bearer {VERTEX_TOKEN}").as_str())
                );
                assert_eq!(request.header("x-goog-api-key"), None);
            }
        }
    }
}

/// A fake GCP metadata server handing out one access token.
struct MetadataServer {
    host: String,
    calls: Arc<Mutex<Vec<HeaderMap>>>,
}

impl MetadataServer {
    async fn start() -> MetadataServer {
        let calls: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(
                    |State(calls): State<Arc<Mutex<Vec<HeaderMap>>>>, headers: HeaderMap| async move {
                        let flavor_ok = headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) == Some("Google");
                        calls.lock().expect("the lock is not poisoned").push(headers);
                        if !flavor_ok {
                            return (
                                StatusCode::FORBIDDEN,
                                "Missing Metadata-Flavor:Google header.".to_string(),
                            );
                        }
                        let token = json!({"access_token": VERTEX_TOKEN, "expires_in": 3599, "token_type": "Bearer"});
                        (StatusCode::OK, token.to_string())
                    },
                ),
            )
            .with_state(calls.clone());
        let url = serve(app).await;
        MetadataServer {
            host: url.trim_start_matches("http://").to_string(),
            calls,
        }
    }

    fn calls(&self) -> Vec<HeaderMap> {
        self.calls.lock().expect("the lock is not poisoned").clone()
    }
}

struct OpenAi {
    model: Arc<dyn Model>,
    server: Server,
}

impl OpenAi {
    async fn start(replies: Vec<Reply>) -> OpenAi {
        Self::start_with(replies, |_| {}).await
    }

    async fn start_with(replies: Vec<Reply>, tweak: impl FnOnce(&mut LlmSettings)) -> OpenAi {
        let server = Server::start(replies).await;
        let base = format!("{}/v1", server.url);
        let mut settings = llm_settings(&[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_API_KEY", OPENAI_KEY),
            ("OPENAI_BASE_URL", &base),
            ("LLM_TIMEOUT_SECONDS", "5"),
            ("LLM_MAX_RETRIES", "2"),
        ]);
        tweak(&mut settings);
        let model = agent_core::llm::build(&settings, Metrics::new("test")).expect("an OpenAI model");
        OpenAi { model, server }
    }

    fn assert_request(&self, request: &Received) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/v1/chat/completions");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
        assert_eq!(request.body["model"], "gpt-4o-mini");
    }
}

fn hello() -> ModelRequest {
    ModelRequest {
        response_schema: None,
        system_instruction: Some("You are terse.".into()),
        contents: vec![Content::user_text("Hello")],
        tools: vec![],
    }
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "The current weather in a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

/// Collects a stream: the deltas, then the final response.
async fn collect(model: &Arc<dyn Model>, request: ModelRequest) -> (Vec<String>, ModelResponse) {
    let mut stream = model.stream(request).await.expect("the stream starts");
    let mut deltas = Vec::new();
    while let Some(event) = stream.next().await {
        match event.expect("no error in the stream") {
            StreamEvent::Delta(text) => deltas.push(text),
            StreamEvent::Done(response) => {
                assert!(stream.next().await.is_none(), "nothing follows Done");
                return (deltas, response);
            }
        }
    }
    panic!("the stream ended without Done");
}

/// The error must not leak a credential, whichever way it is printed.
fn assert_no_secret(err: &ModelError) {
    let printed = format!("{err} {err:?}");
    for secret in [GEMINI_KEY, OPENAI_KEY, VERTEX_TOKEN] {
        assert!(!printed.contains(secret), "the error shows a secret: {printed}");
    }
}

/// Runs a Gemini case on AI Studio and on Vertex AI.
macro_rules! gemini_cases {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn ai_studio() {
                super::$case(super::Flavor::AiStudio).await
            }

            #[tokio::test]
            async fn vertex() {
                super::$case(super::Flavor::Vertex).await
            }
        }
    )*};
}

gemini_cases!(
    gemini_text_answer,
    gemini_function_call_round_trip,
    gemini_stream,
    gemini_429_with_retry_info_then_success,
    gemini_429_with_a_long_hint_gives_up_at_once,
    gemini_400_is_upstream_error,
    gemini_timeout,
    gemini_503_forever,
    gemini_blocked_prompt,
);

// ---------------------------------------------------------------------------
// Gemini (AI Studio and Vertex AI).

async fn gemini_text_answer(flavor: Flavor) {
    let gemini = Gemini::start(
        flavor,
        vec![ok(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": "Hi! "}, {"text": "How can I help?"}]},
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
            }],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 3, "totalTokenCount": 20},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "abc123"
        }))],
    )
    .await;

    let response = gemini.model.generate(&hello()).await.expect("an answer");
    assert_eq!(response.text(), "Hi! How can I help?");
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 12,
            output_tokens: 8,
            thinking_tokens: 3,
            ..Usage::default()
        }
    );
    assert_eq!(response.model, "gemini-2.5-flash-001");
    if matches!(gemini.flavor, Flavor::AiStudio) {
        // Built by llm::build, so priced, as gemini-2.5-flash: 12 in at
        // $0.30 and 8 out at $2.50 per million.
        assert_eq!(response.cost.map(|c| c.pico()), Some(12 * 300_000 + 8 * 2_500_000));
    }
    assert_eq!(response.content.role, Some(Role::Model));
    assert_eq!(gemini.model.name(), "gemini-2.5-flash");

    // A second call reuses the cached Vertex token.
    gemini.model.generate(&hello()).await.expect("a second answer");

    let received = gemini.server.received();
    assert_eq!(received.len(), 2);
    gemini.assert_request(&received[0], "generateContent");
    assert_eq!(
        received[0].body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "systemInstruction": {"parts": [{"text": "You are terse."}]}
        })
    );
    if let Some(metadata) = &gemini.metadata {
        let calls = metadata.calls();
        assert_eq!(calls.len(), 1, "the access token is cached");
        assert_eq!(
            calls[0].get("metadata-flavor").and_then(|v| v.to_str().ok()),
            Some("Google")
        );
    }
}

async fn gemini_function_call_round_trip(flavor: Flavor) {
    // As Gemini 3 answers: the call carries a thought signature that must
    // come back, part for part, in the next request.
    let model_content = json!({
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQBcsjafDd1JdfDq1XwtY/2zQ=="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
        ]
    });
    let gemini = Gemini::start(
        flavor,
        vec![
            ok(json!({
                "candidates": [{"content": model_content, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 10, "totalTokenCount": 50},
                "modelVersion": "gemini-3-pro-preview"
            })),
            ok(json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "Paris 21°C, Oslo 9°C."}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 70, "candidatesTokenCount": 8, "totalTokenCount": 78}
            })),
        ],
    )
    .await;

    let mut request = ModelRequest {
        response_schema: None,
        system_instruction: None,
        contents: vec![Content::user_text("Weather in Paris and Oslo?")],
        tools: vec![weather_tool()],
    };
    let first = gemini.model.generate(&request).await.expect("a function call");
    let calls: Vec<&FunctionCall> = first.content.function_calls().collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(calls[0].args, json!({"city": "Paris"}));
    assert_eq!(calls[1].args, json!({"city": "Oslo"}));
    assert_eq!(first.text(), "");
    assert_eq!(
        first.content.raw.as_ref(),
        Some(&model_content),
        "raw is the candidate's content"
    );

    request.contents.push(first.content.clone());
    request.contents.push(Content {
        role: Some(Role::User),
        parts: vec![
            Part::FunctionResponse(FunctionResponse {
                id: None,
                name: "get_weather".into(),
                response: json!({"temperature_c": 21}),
            }),
            Part::FunctionResponse(FunctionResponse {
                id: None,
                name: "get_weather".into(),
                response: json!({"temperature_c": 9}),
            }),
        ],
        raw: None,
    });
    let second = gemini.model.generate(&request).await.expect("the final answer");
    assert_eq!(second.text(), "Paris 21°C, Oslo 9°C.");
    assert_eq!(
        second.model, "gemini-2.5-flash",
        "no modelVersion: the configured model"
    );

    let received = gemini.server.received();
    assert_eq!(received.len(), 2);
    gemini.assert_request(&received[1], "generateContent");
    let sent = &received[1].body;
    assert_eq!(sent["contents"][1], model_content, "the model turn goes back verbatim");
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"], "CiQBcsjafDd1JdfDq1XwtY/2zQ==",
        "with its thought signature"
    );
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temperature_c": 21}}},
            {"functionResponse": {"name": "get_weather", "response": {"temperature_c": 9}}}
        ]})
    );
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [{
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }]}])
    );
}

async fn gemini_stream(flavor: Flavor) {
    let chunks = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "The sky"}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.5-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " is blü"}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.5-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "e today."}]}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 6, "thoughtsTokenCount": 2, "totalTokenCount": 15},
               "modelVersion": "gemini-2.5-flash"}),
    ];
    let events: Vec<String> = chunks.iter().map(Value::to_string).collect();
    let gemini = Gemini::start(flavor, vec![Reply::Sse(sse_bytes(&events))]).await;

    let (deltas, done) = collect(&gemini.model, hello()).await;
    assert!(deltas.len() >= 2, "{deltas:?}");
    assert_eq!(deltas.concat(), "The sky is blüe today.");
    assert_eq!(done.text(), deltas.concat());
    assert_eq!(
        done.usage,
        Usage {
            input_tokens: 7,
            output_tokens: 8,
            thinking_tokens: 2,
            ..Usage::default()
        }
    );
    assert_eq!(done.model, "gemini-2.5-flash");
    if matches!(gemini.flavor, Flavor::AiStudio) {
        assert_eq!(
            done.cost.map(|c| c.pico()),
            Some(7 * 300_000 + 8 * 2_500_000),
            "a streamed answer is priced too"
        );
    }
    assert_eq!(
        done.content.raw,
        Some(json!({"role": "model", "parts": [{"text": "The sky is blüe today."}]}))
    );

    let received = gemini.server.received();
    assert_eq!(received.len(), 1);
    gemini.assert_request(&received[0], "streamGenerateContent?alt=sse");
}

async fn gemini_429_with_retry_info_then_success(flavor: Flavor) {
    let gemini = Gemini::start(
        flavor,
        vec![
            status(
                429,
                json!({"error": {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                         "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}
                    ]
                }}),
            ),
            ok(json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello after all."}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}
            })),
        ],
    )
    .await;

    let started = Instant::now();
    let response = gemini.model.generate(&hello()).await.expect("success on the retry");
    assert_eq!(response.text(), "Hello after all.");
    // The backoff without a hint would wait at least 250 ms.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(45) && elapsed < Duration::from_millis(250),
        "the retry waited the hinted delay: {elapsed:?}"
    );
    let received = gemini.server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body, received[1].body, "the retry sends the same request");
    gemini.assert_request(&received[1], "generateContent");
}

async fn gemini_429_with_a_long_hint_gives_up_at_once(flavor: Flavor) {
    let gemini = Gemini::start(
        flavor,
        vec![status(
            429,
            json!({"error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45s"}]
            }}),
        )],
    )
    .await;
    let err = gemini.model.generate(&hello()).await.expect_err("no retry in 45 s");
    match &err {
        ModelError::Unavailable { message, retry_after } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(45)));
            assert!(message.contains("Resource has been exhausted"), "{message}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(gemini.server.count(), 1, "a hint beyond the cap is not waited for");
}

async fn gemini_400_is_upstream_error(flavor: Flavor) {
    // The provider's message even quotes the credential: it must not get
    // through.
    let credential = match flavor {
        Flavor::AiStudio => GEMINI_KEY,
        Flavor::Vertex => VERTEX_TOKEN,
    };
    let gemini = Gemini::start(
        flavor,
        vec![status(
            400,
            json!({"error": {
                "code": 400,
                "message": format!("API key not valid. Please pass a valid API key. ({credential})"),
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]
            }}),
        )],
    )
    .await;

    let err = gemini.model.generate(&hello()).await.expect_err("a refused request");
    match &err {
        ModelError::Upstream { status, message } => {
            assert_eq!(*status, Some(400));
            assert_eq!(message, "API key not valid. Please pass a valid API key. (***)");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert_no_secret(&err);
    assert_eq!(gemini.server.count(), 1, "a 400 is not retried");

    let err = gemini.model.stream(hello()).await.err().expect("a refused stream");
    assert!(matches!(err, ModelError::Upstream { status: Some(400), .. }), "{err:?}");
    assert_no_secret(&err);
}

async fn gemini_timeout(flavor: Flavor) {
    let gemini = Gemini::start_with(flavor, vec![Reply::Hang], |s| {
        s.timeout = Duration::from_millis(300);
        s.max_retries = 0;
    })
    .await;

    let started = Instant::now();
    let err = gemini.model.generate(&hello()).await.expect_err("no answer in time");
    assert_eq!(err, ModelError::Timeout(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(gemini.server.count(), 1);
}

async fn gemini_503_forever(flavor: Flavor) {
    let gemini = Gemini::start_with(
        flavor,
        vec![status(
            503,
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
        )],
        |s| s.max_retries = 1,
    )
    .await;

    let err = gemini.model.generate(&hello()).await.expect_err("still overloaded");
    match &err {
        ModelError::Unavailable { message, retry_after } => {
            assert!(message.contains("The model is overloaded"), "{message}");
            assert_eq!(*retry_after, None);
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_no_secret(&err);
    assert_eq!(gemini.server.count(), 2, "one try and one retry");
}

async fn gemini_blocked_prompt(flavor: Flavor) {
    let gemini = Gemini::start(
        flavor,
        vec![ok(json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}
            ]},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}
        }))],
    )
    .await;
    let err = gemini.model.generate(&hello()).await.expect_err("blocked");
    assert_eq!(err, ModelError::Blocked("the prompt was blocked (SAFETY)".into()));
}

// ---------------------------------------------------------------------------
// OpenAI (and compatible servers).

#[tokio::test]
async fn openai_text_answer() {
    let openai = OpenAi::start(vec![ok(json!({
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
        "service_tier": "default"
    }))])
    .await;

    let response = openai.model.generate(&hello()).await.expect("an answer");
    assert_eq!(response.text(), "Hello! How can I help?");
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 19,
            output_tokens: 10,
            ..Usage::default()
        }
    );
    assert_eq!(response.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(openai.model.name(), "gpt-4o-mini");

    let received = openai.server.received();
    assert_eq!(received.len(), 1);
    openai.assert_request(&received[0]);
    assert_eq!(
        received[0].body["messages"],
        json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello"}])
    );
    assert!(received[0].body.get("stream").is_none());
    assert!(received[0].body.get("tools").is_none());
}

#[tokio::test]
async fn openai_tool_calls_round_trip() {
    let assistant = json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [
            {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_def456", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\""}}
        ],
        "refusal": null
    });
    let openai = OpenAi::start(vec![
        ok(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": assistant, "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110}
        })),
        ok(json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 2, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is 21°C."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128}
        })),
    ])
    .await;

    let mut request = ModelRequest {
        response_schema: None,
        system_instruction: None,
        contents: vec![Content::user_text("Weather in Paris and Oslo?")],
        tools: vec![weather_tool()],
    };
    let first = openai.model.generate(&request).await.expect("tool calls");
    let calls: Vec<FunctionCall> = first.content.function_calls().cloned().collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id.as_deref(), Some("call_abc123"));
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(calls[0].args, json!({"city": "Paris"}));
    assert_eq!(
        calls[1].args,
        json!("{\"city\": \"Oslo\""),
        "bad arguments are kept as a string"
    );
    assert_eq!(first.content.raw.as_ref(), Some(&assistant));

    request.contents.push(first.content.clone());
    request.contents.push(Content {
        role: Some(Role::User),
        parts: calls
            .iter()
            .map(|call| {
                Part::FunctionResponse(FunctionResponse {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    response: json!({"temperature_c": 21}),
                })
            })
            .collect(),
        raw: None,
    });
    let second = openai.model.generate(&request).await.expect("the final answer");
    assert_eq!(second.text(), "Paris is 21°C.");

    let received = openai.server.received();
    assert_eq!(received.len(), 2);
    openai.assert_request(&received[1]);
    let body = &received[1].body;
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}])
    );
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    let mut standard = assistant.clone();
    standard.as_object_mut().expect("object").remove("refusal");
    assert_eq!(
        messages[1], standard,
        "the assistant message goes back verbatim, less the fields a compatible server may refuse"
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "call_abc123", "content": "{\"temperature_c\":21}"})
    );
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "call_def456");
}

#[tokio::test]
async fn openai_stream() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18",
               "system_fingerprint": "fp_1", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
               "usage": null})
        .to_string()
    };
    let events =
        vec![
        chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null),
        chunk(json!({"content": "Streams"}), Value::Null),
        chunk(json!({"content": " are "}), Value::Null),
        chunk(json!({"content": "fün."}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18",
               "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}})
        .to_string(),
        "[DONE]".to_string(),
    ];
    let openai = OpenAi::start(vec![Reply::Sse(sse_bytes(&events))]).await;

    let (deltas, done) = collect(&openai.model, hello()).await;
    assert_eq!(deltas, ["Streams", " are ", "fün."]);
    assert_eq!(done.text(), deltas.concat());
    assert_eq!(
        done.usage,
        Usage {
            input_tokens: 11,
            output_tokens: 4,
            ..Usage::default()
        }
    );
    assert_eq!(done.model, "gpt-4o-mini-2024-07-18");

    let received = openai.server.received();
    assert_eq!(received.len(), 1);
    openai.assert_request(&received[0]);
    assert_eq!(received[0].body["stream"], true);
    assert_eq!(received[0].body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn openai_stream_with_tool_call_fragments() {
    let chunk = |delta: Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        .to_string()
    };
    let events = vec![
        chunk(json!({"role": "assistant", "content": "Checking."})),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Rome\"}"}}]})),
        "[DONE]".to_string(),
    ];
    let openai = OpenAi::start(vec![Reply::Sse(sse_bytes(&events))]).await;
    let (deltas, done) = collect(&openai.model, hello()).await;
    assert_eq!(deltas, ["Checking."]);
    let calls: Vec<&FunctionCall> = done.content.function_calls().collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id.as_deref(), Some("call_1"));
    assert_eq!(calls[0].args, json!({"city": "Rome"}));
    assert_eq!(
        done.content.raw,
        Some(json!({"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
        ]}))
    );
}

#[tokio::test]
async fn openai_429_with_retry_after_then_success() {
    let openai = OpenAi::start(vec![
        Reply::Json {
            status: 429,
            body: json!({"error": {
                "message": "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.",
                "type": "requests", "param": null, "code": "rate_limit_exceeded"
            }}),
            headers: vec![("retry-after", "0")],
        },
        ok(json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 2, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Made it."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        })),
    ])
    .await;

    let started = Instant::now();
    let response = openai.model.generate(&hello()).await.expect("success on the retry");
    assert_eq!(response.text(), "Made it.");
    assert!(
        started.elapsed() < Duration::from_millis(240),
        "Retry-After: 0 is honoured instead of the backoff: {:?}",
        started.elapsed()
    );
    assert_eq!(openai.server.count(), 2);
}

#[tokio::test]
async fn openai_400_is_upstream_error() {
    let openai = OpenAi::start(vec![status(
        400,
        json!({"error": {
            "message": "Invalid value for 'model': 'gpt-nope'.",
            "type": "invalid_request_error", "param": "model", "code": null
        }}),
    )])
    .await;

    let err = openai.model.generate(&hello()).await.expect_err("a refused request");
    assert_eq!(
        err,
        ModelError::Upstream {
            status: Some(400),
            message: "Invalid value for 'model': 'gpt-nope'.".into()
        }
    );
    assert_no_secret(&err);
    assert_eq!(openai.server.count(), 1);
}

#[tokio::test]
async fn openai_401_does_not_echo_the_key() {
    let openai = OpenAi::start(vec![status(
        401,
        json!({"error": {
            "message": format!("Incorrect API key provided: {OPENAI_KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
        }}),
    )])
    .await;
    let err = openai.model.generate(&hello()).await.expect_err("a refused key");
    assert!(
        matches!(&err, ModelError::Upstream { status: Some(401), message } if message.contains("Incorrect API key provided: ***")),
        "{err:?}"
    );
    assert_no_secret(&err);
}

#[tokio::test]
async fn openai_timeout() {
    let openai = OpenAi::start_with(vec![Reply::Hang], |s| {
        s.timeout = Duration::from_millis(300);
        s.max_retries = 0;
    })
    .await;
    let err = openai.model.generate(&hello()).await.expect_err("no answer in time");
    assert_eq!(err, ModelError::Timeout(Duration::from_millis(300)));

    let err = openai.model.stream(hello()).await.err().expect("no stream in time");
    assert_eq!(err, ModelError::Timeout(Duration::from_millis(300)));
    assert_eq!(openai.server.count(), 2);
}

#[tokio::test]
async fn openai_stream_that_stalls_ends_with_a_timeout() {
    let first = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "delta": {"content": "Once upon"}, "finish_reason": null}]})
    .to_string();
    let openai = OpenAi::start_with(vec![Reply::SseThenStall(sse_bytes(&[first]))], |s| {
        s.timeout = Duration::from_millis(300);
        s.max_retries = 0;
    })
    .await;
    let mut stream = openai.model.stream(hello()).await.expect("the stream starts");
    assert_eq!(stream.next().await, Some(Ok(StreamEvent::Delta("Once upon".into()))));
    let started = Instant::now();
    assert_eq!(
        stream.next().await,
        Some(Err(ModelError::Timeout(Duration::from_millis(300))))
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(stream.next().await, None, "nothing follows the error");
}

#[tokio::test]
async fn openai_503_forever() {
    let openai = OpenAi::start_with(
        vec![status(
            503,
            json!({"error": {"message": "The engine is currently overloaded, please try again later", "type": "server_error", "param": null, "code": null}}),
        )],
        |s| s.max_retries = 1,
    )
    .await;
    let err = openai.model.generate(&hello()).await.expect_err("still overloaded");
    assert!(
        matches!(&err, ModelError::Unavailable { message, retry_after: None } if message.contains("currently overloaded")),
        "{err:?}"
    );
    assert_no_secret(&err);
    assert_eq!(openai.server.count(), 2, "one try and one retry");
}

#[tokio::test]
async fn openai_without_a_key_sends_no_authorization() {
    let server = Server::start(vec![ok(json!({
        "model": "llama3.2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]
    }))])
    .await;
    let base = format!("{}/v1", server.url);
    let settings = llm_settings(&[("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "llama3.2")]);
    let model = agent_core::llm::build(&settings, Metrics::new("test")).expect("a model");
    let response = model.generate(&hello()).await.expect("an answer");
    assert_eq!(response.text(), "hi");
    assert_eq!(response.usage, Usage::default());
    let received = server.received();
    assert_eq!(received[0].header("authorization"), None);
    assert_eq!(received[0].body["model"], "llama3.2");
}
