//! The fault matrix of the chat function, at the service level: the real
//! router served on loopback, on SQLite on disk, in front of a local server
//! that speaks Gemini's wire format (`generateContent`, and
//! `streamGenerateContent?alt=sse`) and counts the calls it receives.
//!
//! Every chat server here runs with `LLM_MAX_RETRIES=2` (so a failing model
//! sees exactly 3 calls per request), `LLM_TIMEOUT_SECONDS=1` and
//! `MODEL_FALLBACK=off` (the fallback to the other tier is `routing.rs`'s). Each test
//! first stores one good turn on the session, injects its fault, and then
//! checks three things: the client's answer (status, envelope code,
//! `Retry-After`), the number of model calls, and that the session still
//! holds exactly that first turn (no half-written turn). It then sends a
//! normal message to the same server, which must answer 200 with a history
//! that does not carry the failed message (the service keeps serving).
//!
//! | fault | expected outcome | test |
//! |---|---|---|
//! | model 429 with `RetryInfo.retryDelay` 0.2s, then 200 | 200 after the hinted wait; 2 model calls; one turn stored | `a_429_with_retry_info_is_waited_out_then_answered` |
//! | model 429 forever (hint 0.1s) | 503 `unavailable`, `Retry-After: 1`; 3 calls | `a_429_forever_is_a_503_after_bounded_retries` |
//! | model 429 with a 45s hint (longer than a request may wait) | 503 `unavailable`, `Retry-After: 45`; 1 call | `a_429_with_a_long_hint_is_answered_at_once` |
//! | model 503 forever | 503 `unavailable`, `Retry-After: 5`; 3 calls | `a_503_forever_is_a_503_after_bounded_retries` |
//! | model 500 forever | 503 `unavailable`, `Retry-After: 5`; 3 calls (500 is retried like 503) | `a_500_forever_is_a_503_after_bounded_retries` |
//! | model never answers (sleeps past `LLM_TIMEOUT_SECONDS`) | 504 `upstream_timeout`; 3 calls | `a_model_that_never_answers_is_a_504` |
//! | model answers 200 with a body that is not JSON | 502 `upstream_error`; 1 call (not retried) | `a_200_that_is_not_json_is_a_502` |
//! | model answers 200 with JSON that is not an answer | 502 `upstream_error`; 1 call | `a_200_that_is_not_json_is_a_502` |
//! | stream: model 503 forever before the first byte | 503 `unavailable` as a plain HTTP answer, not an event stream; 3 calls | `a_stream_refused_before_its_first_byte_is_a_plain_503` |
//! | stream: model 503 forever before the first byte, `MODEL_FALLBACK=on` | 200 event stream from the strong tier, `done` with `fallback_from`; 3 calls, then 1 to the strong tier | `a_stream_refused_before_its_first_byte_falls_back_to_the_other_tier` |
//! | stream: connection cut after a delta, `MODEL_FALLBACK=on` | `delta`, then `error`; no fallback (a delta was sent); 1 call | `a_stream_cut_in_the_middle_does_not_fall_back` |
//! | stream: connection cut after two deltas | 200 event stream: `delta`, `delta`, then `error` (`unavailable`), no `done`; 1 call | `a_stream_cut_in_the_middle_ends_with_an_error_event` |
//! | stream: body ends cleanly after two deltas, no `finishReason` | the same: `error` (`unavailable`), no `done`, nothing stored | `a_stream_that_ends_before_the_model_finished_is_not_stored` |
//! | stream: model stalls after one delta | `delta`, then `error` (`upstream_timeout`) after `LLM_TIMEOUT_SECONDS`; 1 call | `a_stream_that_stalls_ends_with_a_timeout_event` |
//! | store unavailable (another process holds the SQLite write lock past the busy timeout) | 503 `unavailable`, `Retry-After: 2`; plain and streaming; reads and `/health` still served; 200 once the lock is gone | `a_locked_store_is_a_503_and_nothing_is_half_written` |
//! | Firestore unreachable | 503 `unavailable` until it is back | `firestore.rs`: `firestore_going_away_is_a_503_until_it_is_back` |
//! | Pub/Sub unreachable at publish | 503, task failed, nothing runnable | `agent_function/tests/faults.rs` |
//! | body of exactly `MAX_BODY_BYTES` | accepted: 200 | `bodies_at_the_limit_pass_and_one_byte_over_is_a_413` |
//! | body one byte over (`Content-Length`, and chunked without one) | 413 `payload_too_large` naming the limit; the model is not called | `bodies_at_the_limit_pass_and_one_byte_over_is_a_413` |
//! | client sends headers and part of the body, then stalls | 408 `request_timeout` after `BODY_TIMEOUT_SECONDS` (1); a concurrent request is answered 200 before it | `a_client_that_stalls_mid_body_gets_a_408_while_others_are_served` |
//! | client trickles its body a byte every 200 ms (never idle for the timeout) | 408 `request_timeout` once the whole body's deadline passes; a concurrent request is answered 200 | `a_body_that_trickles_times_out_with_408` |

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agent_core::testing::{TestApp, TestServer, error_envelope as envelope};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use chat_function::{ChatResponse, FUNCTION, router};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// What the local Gemini server answers.
#[derive(Clone)]
enum Reply {
    /// A normal answer with this text, in the format of the method called:
    /// one JSON response, or an event stream of two chunks, the second
    /// with `finishReason: STOP`.
    Answer(&'static str),
    /// A JSON body with this status.
    Json(u16, Value),
    /// A 200 whose body is this text, as `application/json`.
    Raw(&'static str),
    /// Answers nothing for far longer than the model timeout.
    Hang,
    /// A `text/event-stream` of these chunks, then `Ending`.
    Sse(Vec<Value>, Ending),
}

#[derive(Clone, Copy)]
enum Ending {
    /// The body ends normally (the terminating chunk is sent).
    Clean,
    /// The connection is broken off: the body never completes.
    Cut,
    /// Nothing more is sent, and the connection stays open.
    Stall,
}

#[derive(Default)]
struct Script {
    /// In order; the last one repeats.
    replies: Vec<Reply>,
    /// The path and query, and the body, of every call since the script was set.
    calls: Vec<(String, Value)>,
}

/// A server speaking Gemini's `GenerateContent` wire format.
struct Gemini {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Gemini {
    async fn start() -> Gemini {
        let script = Arc::new(Mutex::new(Script {
            replies: vec![Reply::Answer("ok")],
            calls: Vec::new(),
        }));
        let router = Router::new().fallback(gemini_answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router).await.expect("the model server runs") });
        Gemini { url, script }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what the next calls get, and starts counting them from zero.
    fn script(&self, replies: Vec<Reply>) {
        let mut script = self.lock();
        script.replies = replies;
        script.calls.clear();
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.lock().calls.clone()
    }
}

async fn gemini_answer(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let uri = request.uri().to_string();
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let reply = {
        let mut script = script.lock().unwrap_or_else(PoisonError::into_inner);
        script.calls.push((uri.clone(), body));
        let n = script.calls.len();
        script.replies.get(n - 1).or(script.replies.last()).cloned()
    };
    let streaming = uri.contains(":streamGenerateContent?alt=sse");
    match reply {
        None => json_response(
            404,
            json!({"error": {"code": 404, "message": "no script", "status": "NOT_FOUND"}}),
        ),
        Some(Reply::Answer(text)) if streaming => {
            let (head, tail) = text.split_at(text.len() / 2);
            sse_response(vec![chunk(head, None), chunk(tail, Some("STOP"))], Ending::Clean)
        }
        Some(Reply::Answer(text)) => json_response(200, chunk(text, Some("STOP"))),
        Some(Reply::Json(status, body)) => json_response(status, body),
        Some(Reply::Raw(text)) => Response::builder()
            .header("content-type", "application/json; charset=UTF-8")
            .body(Body::from(text))
            .unwrap_or_default(),
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            json_response(200, chunk("too late", Some("STOP")))
        }
        Some(Reply::Sse(chunks, ending)) => sse_response(chunks, ending),
    }
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// A `GenerateContentResponse` (or one chunk of a stream of them).
fn chunk(text: &str, finish_reason: Option<&str>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    let mut usage = json!({"promptTokenCount": 4, "totalTokenCount": 4});
    if let Some(reason) = finish_reason {
        candidate["finishReason"] = json!(reason);
        usage = json!({"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7});
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"})
}

fn sse_response(chunks: Vec<Value>, ending: Ending) -> Response {
    let events = futures_util::stream::iter(chunks).then(|c| async move {
        // Apart in time, so the client sees separate network reads.
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\r\n\r\n")))
    });
    let end = futures_util::stream::once(async move {
        match ending {
            Ending::Clean => Ok(Bytes::new()),
            Ending::Cut => {
                // Long enough for the chunks before to leave the server.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("the connection is cut"))
            }
            Ending::Stall => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Bytes::new())
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(events.chain(end)))
        .unwrap_or_default()
}

/// Google's error body, as the Gemini API sends it.
fn google_error(code: u16, status: &str, message: &str, retry_delay: Option<&str>) -> Reply {
    let mut error = json!({"code": code, "message": message, "status": status});
    if let Some(delay) = retry_delay {
        error["details"] = json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
        ]);
    }
    Reply::Json(code, json!({ "error": error }))
}

fn overloaded() -> Reply {
    google_error(
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
        None,
    )
}

/// The chat function in front of a local Gemini server.
struct Chat {
    server: TestServer,
    http: reqwest::Client,
    model: Gemini,
    _app: TestApp,
}

impl Chat {
    async fn start(extra: &[(&str, &str)]) -> Chat {
        let model = Gemini::start().await;
        let mut vars = vec![
            ("LLM_PROVIDER", "gemini"),
            ("GEMINI_API_KEY", "faults-test-key"),
            ("GEMINI_BASE_URL", model.url.as_str()),
            ("LLM_MAX_RETRIES", "2"),
            ("LLM_TIMEOUT_SECONDS", "1"),
            ("RATE_LIMIT_CHAT", "off"),
            // One model's faults: the fallback to the other tier is
            // `routing.rs`'s (it would double the calls counted here).
            ("MODEL_FALLBACK", "off"),
        ];
        vars.extend_from_slice(extra);
        let app = TestApp::start(FUNCTION, &vars).await;
        Chat {
            server: TestServer::start(router(&app)).await,
            http: reqwest::Client::builder()
                // A bound for a failure message: no answer here takes 20 s.
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            model,
            _app: app,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    async fn post(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/chat"))
            .json(&body)
            .send()
            .await
            .expect("the chat function answers")
    }

    async fn say(&self, session: &str, message: &str) -> reqwest::Response {
        self.post(json!({"message": message, "session_id": session})).await
    }

    /// The session's messages as (role, content), up to the largest page
    /// (1000); empty when it does not exist.
    async fn stored(&self, session: &str) -> Vec<(String, String)> {
        let response = self
            .http
            .get(self.url(&format!("/api/v1/sessions/{session}?limit=1000")))
            .send()
            .await
            .expect("get");
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().expect("role").to_string(),
                    m["content"].as_str().expect("content").to_string(),
                )
            })
            .collect()
    }

    /// Stores one good turn on `session`, before the fault.
    async fn first_turn(&self, session: &str) {
        self.model.script(vec![Reply::Answer("first answer")]);
        let r = self.say(session, "first question").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(self.stored(session).await, first_turn());
    }

    /// The service keeps serving: a normal message on the same session is
    /// answered 200 with one model call, the history the model gets holds
    /// the stored messages and nothing of the failed request, and the turn
    /// is stored after them.
    /// What every failed turn must leave: the model called exactly `calls`
    /// times (`why`), no half-written turn in the session, and the service
    /// serving the next request.
    async fn failed_cleanly(&self, session: &str, calls: usize, why: &str) {
        assert_eq!(self.model.calls().len(), calls, "{why}");
        assert_eq!(self.stored(session).await, first_turn(), "no half-written turn");
        self.keeps_serving(session).await;
    }

    async fn keeps_serving(&self, session: &str) {
        let before = self.stored(session).await;
        self.model.script(vec![Reply::Answer("back to normal")]);
        let r = self.say(session, "are you there?").await;
        assert_eq!(r.status(), StatusCode::OK, "served again after the fault");
        let answer: ChatResponse = r.json().await.expect("chat response");
        assert_eq!(answer.response, "back to normal");
        let calls = self.model.calls();
        assert_eq!(calls.len(), 1, "one model call");
        let sent: Vec<&str> = calls[0].1["contents"]
            .as_array()
            .expect("contents")
            .iter()
            .map(|c| c["parts"][0]["text"].as_str().expect("text"))
            .collect();
        let mut expected: Vec<&str> = before.iter().map(|(_, content)| content.as_str()).collect();
        expected.push("are you there?");
        assert_eq!(sent, expected, "the history sent to the model");
        let after = self.stored(session).await;
        assert_eq!(after.len(), before.len() + 2);
        assert_eq!(after[before.len()..], pair("are you there?", "back to normal")[..]);
    }
}

fn pair(user: &str, model: &str) -> Vec<(String, String)> {
    vec![("user".into(), user.into()), ("model".into(), model.into())]
}

fn first_turn() -> Vec<(String, String)> {
    pair("first question", "first answer")
}

/// The events of a finished event stream, as (name, data).
async fn read_events(response: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    let text = response.text().await.expect("the event stream ends");
    agent_core::testing::sse_events(&text)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

// ---------------------------------------------------------------------------
// The model refuses, fails or stalls.

#[tokio::test]
async fn a_429_with_retry_info_is_waited_out_then_answered() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![
        google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            Some("0.2s"),
        ),
        Reply::Answer("answered on the retry"),
    ]);
    let started = Instant::now();
    let r = chat.say("s", "second question").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the hinted delay is waited"
    );
    let answer: ChatResponse = r.json().await.expect("json");
    assert_eq!(answer.response, "answered on the retry");
    let calls = chat.model.calls();
    assert_eq!(calls.len(), 2, "the refused call and its retry");
    assert_eq!(calls[0], calls[1], "the retry sends the same request");
    let mut expected = first_turn();
    expected.extend(pair("second question", "answered on the retry"));
    assert_eq!(chat.stored("s").await, expected, "one turn stored, once");
    chat.keeps_serving("s").await;
}

#[tokio::test]
async fn a_429_forever_is_a_503_after_bounded_retries() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
        Some("0.1s"),
    )]);
    let (message, retry_after) = envelope(chat.say("s", "doomed").await, 503, "unavailable").await;
    assert!(message.contains("Resource has been exhausted"), "{message}");
    assert_eq!(retry_after, Some(1), "the provider's hint, in whole seconds");
    chat.failed_cleanly("s", 3, "LLM_MAX_RETRIES=2: one call and two retries")
        .await;
}

#[tokio::test]
async fn a_429_with_a_long_hint_is_answered_at_once() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
        Some("45s"),
    )]);
    let started = Instant::now();
    let (_, retry_after) = envelope(chat.say("s", "doomed").await, 503, "unavailable").await;
    assert!(started.elapsed() < Duration::from_secs(10), "not waited for");
    assert_eq!(retry_after, Some(45), "the client is told what the provider asked");
    chat.failed_cleanly("s", 1, "a hint beyond 30 s is not waited for")
        .await;
}

#[tokio::test]
async fn a_503_forever_is_a_503_after_bounded_retries() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![overloaded()]);
    let (message, retry_after) = envelope(chat.say("s", "doomed").await, 503, "unavailable").await;
    assert!(message.contains("The model is overloaded"), "{message}");
    assert_eq!(retry_after, Some(5), "no hint from the provider: the default");
    chat.failed_cleanly("s", 3, "one call and two retries").await;
}

#[tokio::test]
async fn a_500_forever_is_a_503_after_bounded_retries() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![google_error(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        None,
    )]);
    let (message, retry_after) = envelope(chat.say("s", "doomed").await, 503, "unavailable").await;
    assert!(message.contains("An internal error has occurred"), "{message}");
    assert_eq!(retry_after, Some(5));
    chat.failed_cleanly("s", 3, "a 500 is retried, boundedly").await;
}

#[tokio::test]
async fn a_model_that_never_answers_is_a_504() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![Reply::Hang]);
    let started = Instant::now();
    let (message, _) = envelope(chat.say("s", "doomed").await, 504, "upstream_timeout").await;
    assert!(message.contains("LLM_TIMEOUT_SECONDS"), "{message}");
    // Three attempts of 1 s and two backoffs of at most 0.5 s and 1 s.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(10),
        "bounded: {elapsed:?}"
    );
    chat.failed_cleanly("s", 3, "each attempt timed out and was retried")
        .await;
}

#[tokio::test]
async fn a_200_that_is_not_json_is_a_502() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;

    chat.model.script(vec![Reply::Raw(
        r#"{"candidates": [{"content": {"parts": [{"text": "trunc"#,
    )]);
    let (message, retry_after) = envelope(chat.say("s", "doomed").await, 502, "upstream_error").await;
    assert!(message.contains("not JSON"), "{message}");
    assert_eq!(retry_after, None);
    assert_eq!(chat.model.calls().len(), 1, "a malformed answer is not retried");
    assert_eq!(chat.stored("s").await, first_turn(), "no half-written turn");

    chat.model
        .script(vec![Reply::Json(200, json!({"unexpected": "shape"}))]);
    let (message, _) = envelope(chat.say("s", "doomed").await, 502, "upstream_error").await;
    assert!(message.contains("no candidates"), "{message}");
    assert_eq!(chat.model.calls().len(), 1);
    assert_eq!(chat.stored("s").await, first_turn());
    chat.keeps_serving("s").await;
}

// ---------------------------------------------------------------------------
// Streaming: before and after the first byte.

async fn stream(chat: &Chat, session: &str, message: &str) -> reqwest::Response {
    chat.post(json!({"message": message, "session_id": session, "stream": true}))
        .await
}

#[tokio::test]
async fn a_stream_refused_before_its_first_byte_is_a_plain_503() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![overloaded()]);
    let (_, retry_after) = envelope(stream(&chat, "s", "doomed").await, 503, "unavailable").await;
    assert_eq!(retry_after, Some(5));
    let calls = chat.model.calls();
    assert_eq!(calls.len(), 3, "one call and two retries");
    assert!(calls[0].0.ends_with(":streamGenerateContent?alt=sse"), "{}", calls[0].0);
    assert_eq!(chat.stored("s").await, first_turn());
    chat.keeps_serving("s").await;
}

#[tokio::test]
async fn a_stream_cut_in_the_middle_ends_with_an_error_event() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![Reply::Sse(
        vec![chunk("The answer ", None), chunk("is forty", None)],
        Ending::Cut,
    )]);
    let events = read_events(stream(&chat, "s", "doomed").await).await;
    assert_eq!(names(&events), ["delta", "delta", "error"], "{events:?}");
    assert_eq!(events[0].1["text"], "The answer ");
    assert_eq!(events[2].1["error"]["code"], "unavailable", "{events:?}");
    chat.failed_cleanly("s", 1, "a stream under way is not retried").await;

    // Streaming works again on the same server.
    chat.model.script(vec![Reply::Answer("streamed fine")]);
    let events = read_events(stream(&chat, "s", "again").await).await;
    assert_eq!(names(&events), ["delta", "delta", "done"], "{events:?}");
    assert_eq!(events[2].1["response"], "streamed fine");
}

/// With `MODEL_FALLBACK=on`: a stream the fast tier refuses before its
/// first byte is opened on the strong tier instead, and says so in `done`.
#[tokio::test]
async fn a_stream_refused_before_its_first_byte_falls_back_to_the_other_tier() {
    let chat = Chat::start(&[("MODEL_FALLBACK", "on")]).await;
    chat.first_turn("s").await;
    let mut replies = vec![overloaded(); 3];
    replies.push(Reply::Answer("from the strong tier"));
    chat.model.script(replies);
    let events = read_events(stream(&chat, "s", "fall back").await).await;
    assert_eq!(names(&events), ["delta", "delta", "done"], "{events:?}");
    assert_eq!(events[2].1["response"], "from the strong tier");
    assert_eq!(events[2].1["fallback_from"], "gemini-2.5-flash", "{events:?}");
    let paths: Vec<String> = chat.model.calls().into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths.len(), 4, "three calls to the fast tier, then the strong one");
    assert!(
        paths[2].contains("/gemini-2.5-flash:streamGenerateContent"),
        "{paths:?}"
    );
    assert!(paths[3].contains("/gemini-2.5-pro:streamGenerateContent"), "{paths:?}");
}

/// With `MODEL_FALLBACK=on`: once a delta has gone out, a failure is the
/// stream's end; another model's answer cannot be spliced in.
#[tokio::test]
async fn a_stream_cut_in_the_middle_does_not_fall_back() {
    let chat = Chat::start(&[("MODEL_FALLBACK", "on")]).await;
    chat.first_turn("s").await;
    chat.model.script(vec![
        Reply::Sse(vec![chunk("The answer ", None)], Ending::Cut),
        Reply::Answer("never sent"),
    ]);
    let events = read_events(stream(&chat, "s", "doomed").await).await;
    assert_eq!(names(&events), ["delta", "error"], "{events:?}");
    chat.failed_cleanly("s", 1, "a stream under way is not handed to another model")
        .await;
}

#[tokio::test]
async fn a_stream_that_ends_before_the_model_finished_is_not_stored() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    // The body ends properly, but no chunk carried a finishReason: Gemini
    // had not stopped generating (a proxy or the network ended it).
    chat.model.script(vec![Reply::Sse(
        vec![chunk("The answer ", None), chunk("is forty", None)],
        Ending::Clean,
    )]);
    let events = read_events(stream(&chat, "s", "doomed").await).await;
    assert_eq!(names(&events), ["delta", "delta", "error"], "{events:?}");
    assert_eq!(events[2].1["error"]["code"], "unavailable", "{events:?}");
    assert_eq!(chat.model.calls().len(), 1);
    assert_eq!(
        chat.stored("s").await,
        first_turn(),
        "a truncated answer is not stored as the model's turn"
    );
    chat.keeps_serving("s").await;
}

#[tokio::test]
async fn a_stream_that_stalls_ends_with_a_timeout_event() {
    let chat = Chat::start(&[]).await;
    chat.first_turn("s").await;
    chat.model
        .script(vec![Reply::Sse(vec![chunk("The answer ", None)], Ending::Stall)]);
    let started = Instant::now();
    let events = read_events(stream(&chat, "s", "doomed").await).await;
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(names(&events), ["delta", "error"], "{events:?}");
    assert_eq!(events[1].1["error"]["code"], "upstream_timeout", "{events:?}");
    assert_eq!(chat.model.calls().len(), 1);
    assert_eq!(chat.stored("s").await, first_turn());
    chat.keeps_serving("s").await;
}

// ---------------------------------------------------------------------------
// The store goes away.

/// Another process on the same SQLite file holds its write lock for longer
/// than the store's busy timeout (5 s): the embedded store's outage. Reads
/// go on (WAL), writes cannot.
#[tokio::test]
async fn a_locked_store_is_a_503_and_nothing_is_half_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("agent.db");
    let chat = Chat::start(&[("SQLITE_PATH", db.to_str().expect("utf-8 path"))]).await;
    chat.first_turn("s").await;

    let other = rusqlite::Connection::open(&db).expect("a second connection");
    other.execute_batch("BEGIN EXCLUSIVE").expect("the write lock");

    chat.model.script(vec![Reply::Answer("never stored")]);
    let (message, retry_after) = envelope(chat.say("s", "doomed").await, 503, "unavailable").await;
    assert!(message.contains("nothing was saved"), "{message}");
    assert_eq!(retry_after, Some(2));
    assert_eq!(
        chat.model.calls().len(),
        1,
        "the model answered; the turn could not be stored"
    );

    // Streaming: the answer streams, then the store refuses it.
    let events = read_events(stream(&chat, "s", "doomed too").await).await;
    assert_eq!(names(&events), ["delta", "delta", "error"], "{events:?}");
    assert_eq!(events[2].1["error"]["code"], "unavailable", "{events:?}");

    // Reads and health are still served while the lock is held.
    assert_eq!(chat.stored("s").await, first_turn(), "no half-written turn");
    let health = chat.http.get(chat.url("/health")).send().await.expect("health");
    assert_eq!(health.status(), StatusCode::OK);

    other.execute_batch("ROLLBACK").expect("release the lock");
    drop(other);
    chat.keeps_serving("s").await;
}

// ---------------------------------------------------------------------------
// Clients: bodies at and over the limit, and clients that stall or trickle.

#[tokio::test]
async fn bodies_at_the_limit_pass_and_one_byte_over_is_a_413() {
    const LIMIT: usize = 1024;
    let chat = Chat::start(&[("MAX_BODY_BYTES", "1024")]).await;
    let body_of = |len: usize| {
        let skeleton = json!({"message": "", "session_id": "limit"}).to_string();
        let body = json!({"message": "a".repeat(len - skeleton.len()), "session_id": "limit"}).to_string();
        assert_eq!(body.len(), len);
        body
    };
    let send = |body: String| {
        chat.http
            .post(chat.url("/api/v1/chat"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    chat.model.script(vec![Reply::Answer("fits")]);
    let at = send(body_of(LIMIT)).await.expect("send");
    assert_eq!(
        at.status(),
        StatusCode::OK,
        "a body of exactly MAX_BODY_BYTES is accepted"
    );
    assert_eq!(chat.model.calls().len(), 1);

    chat.model.script(vec![Reply::Answer("never")]);
    let over = send(body_of(LIMIT + 1)).await.expect("send");
    let (message, _) = envelope(over, 413, "payload_too_large").await;
    assert!(
        message.contains("1024 bytes") && message.contains("MAX_BODY_BYTES"),
        "{message}"
    );

    // Without a Content-Length (chunked), the limit is found while reading.
    let over = body_of(LIMIT + 1).into_bytes();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = over.chunks(300).map(|c| Ok(c.to_vec())).collect();
    let chunked = chat
        .http
        .post(chat.url("/api/v1/chat"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .send()
        .await
        .expect("send");
    let (message, _) = envelope(chunked, 413, "payload_too_large").await;
    assert!(message.contains("1024 bytes"), "{message}");
    assert!(
        chat.model.calls().is_empty(),
        "a body over the limit never reaches the model"
    );

    let stored = chat.stored("limit").await;
    assert_eq!(stored.len(), 2, "only the body at the limit was stored");
    assert_eq!(stored[1], ("model".to_string(), "fits".to_string()));
    chat.keeps_serving("limit").await;
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_a_408_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let chat = Chat::start(&[("BODY_TIMEOUT_SECONDS", "1")]).await;
    chat.first_turn("s").await;
    let mut stalled = tokio::net::TcpStream::connect(chat.server.addr).await.expect("connect");
    let stalled_at = Instant::now();
    stalled
        .write_all(
            b"POST /api/v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"message\":\"stalled\",\"session_id\":\"s\"",
        )
        .await
        .expect("write");
    let pending = tokio::spawn(async move {
        let mut answer = Vec::new();
        stalled.read_to_end(&mut answer).await.expect("read");
        (Instant::now(), String::from_utf8_lossy(&answer).into_owned())
    });

    // Served while the stalled body is pending.
    chat.model.script(vec![Reply::Answer("meanwhile")]);
    let ok = chat.say("other", "not stalled").await;
    assert_eq!(ok.status(), StatusCode::OK);
    let served_at = Instant::now();

    let (answered_at, answer) = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the stalled request gets an answer")
        .expect("reader task");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(
        answered_at.duration_since(stalled_at) >= Duration::from_millis(900),
        "answered after BODY_TIMEOUT_SECONDS"
    );
    assert!(
        served_at < answered_at,
        "the other request did not wait for the stalled one"
    );
    assert_eq!(chat.stored("s").await, first_turn(), "nothing of the stalled request");
    chat.keeps_serving("s").await;
}

#[tokio::test]
async fn a_body_that_trickles_times_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A byte every 200 ms never leaves the connection idle for the timeout,
    // so only a deadline for the whole body stops it.
    let chat = Chat::start(&[("BODY_TIMEOUT_SECONDS", "1")]).await;
    chat.first_turn("s").await;
    let mut slow = tokio::net::TcpStream::connect(chat.server.addr).await.expect("connect");
    slow.write_all(
        b"POST /api/v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n",
    )
    .await
    .expect("write");
    let trickle = tokio::spawn(async move {
        let mut answer = Vec::new();
        for _ in 0..100 {
            if slow.write_all(b" ").await.is_err() {
                break;
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(std::time::Duration::from_millis(200), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    chat.model.script(vec![Reply::Answer("meanwhile")]);
    let ok = chat.say("other", "not trickling").await;
    assert_eq!(ok.status(), StatusCode::OK, "served meanwhile");
    let answer = trickle.await.expect("the trickling client");
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "answered before 100 bytes: {answer:?}"
    );
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert_eq!(chat.stored("s").await, first_turn(), "nothing of the trickled request");
    chat.keeps_serving("s").await;
}
