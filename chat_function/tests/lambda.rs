//! The chat function's binary under the AWS Lambda runtime, driven by a
//! local server speaking the Lambda Runtime API: Function URL events in,
//! answers out, whole (`LAMBDA_INVOKE_MODE=BUFFERED`, the default) or
//! through the streaming protocol (`RESPONSE_STREAM`).

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::testing::{GatedModel, TestServer, sse_events};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chat_function::ChatResponse;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_chat_function");

/// What the Runtime API was sent, in the order it arrived.
#[derive(Debug)]
enum Report {
    /// A whole answer (`POST .../response` without the streaming header).
    Whole(String, Value),
    /// A function error (`.../error`, or `init` for `/init/error`), or a
    /// streamed answer without its prelude: only ever read in a failure's
    /// message.
    #[expect(dead_code, reason = "read through Debug, in a failure's message")]
    Error(String, Value),
    /// A streamed answer began: its prelude (status, headers, cookies),
    /// and whether the request said so as the protocol asks (the streaming
    /// response mode, a chunked body, the HTTP integration content type).
    Prelude { id: String, prelude: Value, protocol: bool },
    /// The next piece of a streamed answer's body, when it arrived.
    Chunk(String, Bytes),
    /// The streamed answer's body ended.
    End(String),
}

/// The Lambda Runtime API, as the Lambda service serves it to a function:
/// `next` hands out queued events, `response` and `error` collect answers.
#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    reports: mpsc::UnboundedSender<Report>,
}

async fn next_invocation(State(api): State<RuntimeApi>) -> Response {
    let next = api.events.lock().expect("lock").pop_front();
    let Some((id, event)) = next else {
        // No more work: Lambda would freeze the process here.
        std::future::pending::<()>().await;
        unreachable!();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().expect("header"));
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().expect("header"),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:chat"
            .parse()
            .expect("header"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
            .parse()
            .expect("header"),
    );
    (headers, axum::Json(event)).into_response()
}

/// The separator between a streamed answer's prelude and its body.
const PRELUDE_END: [u8; 8] = [0; 8];

/// Reads a streamed answer as the Lambda service does, piece by piece,
/// reporting each piece as it arrives rather than once the body is whole.
async fn invocation_response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut body = body.into_data_stream();
    if header("lambda-runtime-function-response-mode") != "streaming" {
        let mut whole = Vec::new();
        while let Some(Ok(piece)) = body.next().await {
            whole.extend_from_slice(&piece);
        }
        let value = serde_json::from_slice(&whole).unwrap_or(Value::Null);
        let _ = api.reports.send(Report::Whole(id, value));
        return axum::http::StatusCode::ACCEPTED.into_response();
    }
    let protocol = header("transfer-encoding") == "chunked"
        && header("content-type") == "application/vnd.awslambda.http-integration-response";
    let mut head = Vec::new();
    let mut in_body = false;
    while let Some(piece) = body.next().await {
        let Ok(piece) = piece else { break };
        if in_body {
            let _ = api.reports.send(Report::Chunk(id.clone(), piece));
            continue;
        }
        head.extend_from_slice(&piece);
        if let Some(at) = head.windows(PRELUDE_END.len()).position(|w| w == PRELUDE_END) {
            let prelude = serde_json::from_slice(&head[..at]).unwrap_or(Value::Null);
            let _ = api.reports.send(Report::Prelude {
                id: id.clone(),
                prelude,
                protocol,
            });
            let rest = Bytes::copy_from_slice(&head[at + PRELUDE_END.len()..]);
            if !rest.is_empty() {
                let _ = api.reports.send(Report::Chunk(id.clone(), rest));
            }
            in_body = true;
        }
    }
    if !in_body {
        // No separator: the answer is broken; say what came instead.
        let _ = api.reports.send(Report::Error(
            id,
            json!({"no prelude separator in": String::from_utf8_lossy(&head)}),
        ));
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    }
    let _ = api.reports.send(Report::End(id));
    axum::http::StatusCode::ACCEPTED.into_response()
}

async fn invocation_error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.reports.send(Report::Error(id, value));
    axum::http::StatusCode::ACCEPTED.into_response()
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.reports.send(Report::Error("init".into(), value));
    axum::http::StatusCode::ACCEPTED.into_response()
}

/// A Runtime API serving `events` in order, the chat function running
/// against it with `vars`, and what the function sends back.
struct Lambda {
    reports: mpsc::UnboundedReceiver<Report>,
    _runtime: TestServer,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Lambda {
    async fn start(events: Vec<(&str, Value)>, vars: &[(&str, &str)]) -> Lambda {
        let (tx, reports) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            events: Arc::new(Mutex::new(
                events.into_iter().map(|(id, e)| (id.to_string(), e)).collect(),
            )),
            reports: tx,
        };
        let runtime = TestServer::start(
            axum::Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
                .route(
                    "/2018-06-01/runtime/invocation/{id}/response",
                    post(invocation_response),
                )
                .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
                .route("/2018-06-01/runtime/init/error", post(init_error))
                .with_state(api),
        )
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("lambda.db");
        let child = Command::new(BIN)
            .env_clear()
            .current_dir(dir.path())
            .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "chat")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/chat")
            .env("SQLITE_PATH", db.to_str().expect("utf-8"))
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chat_function");
        Lambda {
            reports,
            _runtime: runtime,
            _child: child,
            _dir: dir,
        }
    }

    async fn next(&mut self) -> Report {
        tokio::time::timeout(Duration::from_secs(20), self.reports.recv())
            .await
            .expect("a report in time")
            .expect("open")
    }

    /// The whole answer to invocation `id`, in buffered mode.
    async fn whole(&mut self, id: &str) -> Value {
        match self.next().await {
            Report::Whole(got, answer) if got == id => answer,
            other => panic!("want {id}'s whole answer, got {other:?}"),
        }
    }

    /// The prelude of invocation `id`'s streamed answer.
    async fn prelude(&mut self, id: &str) -> Value {
        match self.next().await {
            Report::Prelude {
                id: got,
                prelude,
                protocol,
            } if got == id => {
                assert!(protocol, "{id}: streamed without the protocol's headers");
                prelude
            }
            other => panic!("want {id}'s prelude, got {other:?}"),
        }
    }

    /// The rest of invocation `id`'s streamed body, once it has ended.
    async fn rest(&mut self, id: &str) -> String {
        let mut body = Vec::new();
        loop {
            match self.next().await {
                Report::Chunk(got, piece) if got == id => body.extend_from_slice(&piece),
                Report::End(got) if got == id => return String::from_utf8(body).expect("utf-8"),
                other => panic!("want {id}'s body, got {other:?}"),
            }
        }
    }
}

/// A Lambda Function URL event (payload format 2.0).
fn function_url_event(method: &str, path: &str, body: Option<Value>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "abcdefg.lambda-url.us-east-1.on.aws",
            "x-forwarded-for": "203.0.113.9",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "user-agent": "curl/8.5.0"
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefg",
            "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefg",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "c2b5fb6a-0000-4000-8000-000000000000",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:01:00:00 +0000",
            "timeEpoch": 1795400000000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// The chat function's routes that answer whole, each one's full status,
/// content type and JSON body, in either mode.
fn buffered_events() -> Vec<(&'static str, Value)> {
    vec![
        (
            "inv-1",
            function_url_event(
                "POST",
                "/api/v1/chat",
                Some(json!({"message": "hello from lambda", "session_id": "lambda-s"})),
            ),
        ),
        ("inv-2", function_url_event("GET", "/api/v1/sessions/lambda-s", None)),
        (
            "inv-3",
            function_url_event("POST", "/api/v1/chat", Some(json!({"message": ""}))),
        ),
        ("inv-4", function_url_event("GET", "/api/v1/no-such-route", None)),
        ("inv-5", function_url_event("GET", "/health", None)),
    ]
}

/// Checks the answers to [`buffered_events`], given as (status, headers,
/// body) in order.
fn check_buffered_answers(answers: Vec<(u16, Value, String)>) {
    let [chat, session, bad, missing, health] = <[_; 5]>::try_from(answers).expect("five answers");
    for (status, headers, body) in [&chat, &session, &bad, &missing, &health] {
        let content_type = headers["content-type"].as_str().unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{status}: {headers} {body}"
        );
    }
    assert_eq!(chat.0, 200, "{chat:?}");
    let answer: ChatResponse = serde_json::from_str(&chat.2).expect("a chat response");
    assert_eq!(answer.session_id, "lambda-s");
    assert!(answer.response.contains("hello from lambda"), "{answer:?}");

    assert_eq!(session.0, 200, "{session:?}");
    let body: Value = serde_json::from_str(&session.2).expect("json");
    assert_eq!(body["messages"].as_array().expect("messages").len(), 2, "{body}");

    for ((status, _, body), want, code) in [(&bad, 400, "invalid_argument"), (&missing, 404, "not_found")] {
        assert_eq!(*status, want, "{body}");
        let body: Value = serde_json::from_str(body).expect("json");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }

    // Ready or still starting, the status and the body agree.
    let body: Value = serde_json::from_str(&health.2).expect("json");
    assert_eq!(body["function"], "chat_function", "{body}");
    assert_eq!(health.0 == 200, body["status"] == "ok", "{health:?}");
}

#[tokio::test]
async fn buffered_mode_answers_function_url_events_whole() {
    let mut events = buffered_events();
    events.push((
        "inv-6",
        function_url_event(
            "POST",
            "/api/v1/chat",
            Some(json!({"message": "stream me", "stream": true})),
        ),
    ));
    let mut lambda = Lambda::start(events, &[]).await;
    let mut answers = Vec::new();
    for id in ["inv-1", "inv-2", "inv-3", "inv-4", "inv-5"] {
        let answer = lambda.whole(id).await;
        let status = answer["statusCode"].as_u64().expect("a status") as u16;
        let body = answer["body"].as_str().expect("a body").to_string();
        answers.push((status, answer["headers"].clone(), body));
    }
    check_buffered_answers(answers);

    // A chat stream is held until it ends, then sent whole.
    let stream = lambda.whole("inv-6").await;
    assert_eq!(stream["statusCode"], 200, "{stream}");
    let events = sse_events(stream["body"].as_str().expect("a body"));
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("done"), "{events:?}");
}

#[tokio::test]
async fn response_stream_mode_answers_whole_routes_with_their_full_bodies() {
    let mut events = buffered_events();
    // A CORS preflight: a 204 with no body at all is still a whole answer.
    let mut preflight = function_url_event("OPTIONS", "/api/v1/chat", None);
    preflight["headers"]["origin"] = json!("https://app.example.com");
    preflight["headers"]["access-control-request-method"] = json!("POST");
    events.push(("inv-6", preflight));
    let mut lambda = Lambda::start(events, &[("LAMBDA_INVOKE_MODE", "RESPONSE_STREAM")]).await;
    let mut answers = Vec::new();
    for id in ["inv-1", "inv-2", "inv-3", "inv-4", "inv-5"] {
        let prelude = lambda.prelude(id).await;
        let status = prelude["statusCode"].as_u64().expect("a status") as u16;
        let body = lambda.rest(id).await;
        answers.push((status, prelude["headers"].clone(), body));
    }
    check_buffered_answers(answers);

    let prelude = lambda.prelude("inv-6").await;
    assert_eq!(prelude["statusCode"], 204, "{prelude}");
    assert!(
        prelude["headers"]["access-control-allow-origin"].is_string(),
        "{prelude}"
    );
    assert_eq!(lambda.rest("inv-6").await, "");
}

/// The done-when of streaming on Lambda: the model double holds the rest of
/// its answer until the test has seen the first `delta` reach the Runtime
/// API, so a function that held its stream back would never be released.
#[tokio::test]
async fn response_stream_mode_sends_each_delta_as_the_model_writes_it() {
    let model = GatedModel::start().await;
    let events = vec![(
        "inv-1",
        function_url_event(
            "POST",
            "/api/v1/chat",
            Some(json!({"message": "stream me", "session_id": "streamed", "stream": true})),
        ),
    )];
    let mut lambda = Lambda::start(
        events,
        &[
            ("LAMBDA_INVOKE_MODE", "RESPONSE_STREAM"),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "test-key"),
            ("OPENAI_BASE_URL", &model.base_url),
            ("OPENAI_MODEL", "gpt-4o-mini"),
            ("LLM_MAX_RETRIES", "0"),
        ],
    )
    .await;
    let prelude = lambda.prelude("inv-1").await;
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream", "{prelude}");

    let mut before = String::new();
    while !sse_events(&before).iter().any(|(name, _)| name == "delta") {
        match lambda.next().await {
            Report::Chunk(id, piece) if id == "inv-1" => before.push_str(&String::from_utf8_lossy(&piece)),
            other => panic!("want the stream's first delta, got {other:?}"),
        }
    }
    let first = sse_events(&before);
    assert!(
        first.iter().all(|(name, _)| name == "delta"),
        "nothing but deltas before the model finished: {first:?}"
    );
    model.release();

    let after = lambda.rest("inv-1").await;
    let events = sse_events(&format!("{before}{after}"));
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().expect("a delta's text"))
        .collect();
    assert_eq!(text, GatedModel::ANSWER, "{events:?}");
    let (name, done) = events.last().expect("events");
    assert_eq!(name, "done", "{events:?}");
    assert_eq!(done["response"], GatedModel::ANSWER, "{done}");
    assert_eq!(done["session_id"], "streamed", "{done}");
}
