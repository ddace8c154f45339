//! The Lambda Runtime API, as the Lambda service serves it to a function,
//! on loopback: a function binary runs against it as it would on Lambda,
//! taking events and answering them whole or through the streaming
//! protocol, which it reads as the service does, piece by piece.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use super::TestServer;

/// What the Runtime API was sent, in the order it arrived.
#[derive(Debug)]
pub enum Report {
    /// A whole answer (`POST .../response` without the streaming header).
    Whole(String, Value),
    /// A function error (`.../error`, or `init` for `/init/error`), or a
    /// streamed answer without its prelude.
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

#[derive(Clone)]
struct Api {
    events: Arc<Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    reports: mpsc::UnboundedSender<Report>,
}

/// Hands out the next event, waiting for one as Lambda does (a function
/// with no work is frozen here).
async fn next_invocation(State(api): State<Api>) -> Response {
    let Some((id, event)) = api.events.lock().await.recv().await else {
        std::future::pending::<()>().await;
        unreachable!();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
        + 30_000;
    let headers = [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:test".to_string(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".to_string(),
        ),
    ];
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(name, value.parse().expect("a header value"));
    }
    (map, axum::Json(event)).into_response()
}

/// The separator between a streamed answer's prelude and its body.
const PRELUDE_END: [u8; 8] = [0; 8];

/// Reads an answer as the Lambda service does: whole, or when streamed,
/// piece by piece, reporting each piece as it arrives rather than once the
/// body is whole.
async fn invocation_response(
    State(api): State<Api>,
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
        return StatusCode::ACCEPTED.into_response();
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
        let _ = api.reports.send(Report::Error(
            id,
            json!({"no prelude separator in": String::from_utf8_lossy(&head)}),
        ));
        return StatusCode::BAD_REQUEST.into_response();
    }
    let _ = api.reports.send(Report::End(id));
    StatusCode::ACCEPTED.into_response()
}

async fn invocation_error(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.reports.send(Report::Error(id, value));
    StatusCode::ACCEPTED.into_response()
}

async fn init_error(State(api): State<Api>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.reports.send(Report::Error("init".into(), value));
    StatusCode::ACCEPTED.into_response()
}

/// A function binary running against a local Runtime API: events go in
/// with [`invoke`](Self::invoke), what it sends back comes out as
/// [`Report`]s. The process is killed when this is dropped.
pub struct LambdaRuntime {
    events: mpsc::UnboundedSender<(String, Value)>,
    reports: mpsc::UnboundedReceiver<Report>,
    _server: TestServer,
    _child: tokio::process::Child,
}

impl LambdaRuntime {
    /// Starts `bin` as Lambda would (its `AWS_LAMBDA_*` variables) with
    /// exactly `vars` besides, and no `.env` file.
    pub async fn start(bin: &str, vars: &[(&str, &str)]) -> LambdaRuntime {
        let (events, queued) = mpsc::unbounded_channel();
        let (tx, reports) = mpsc::unbounded_channel();
        let api = Api {
            events: Arc::new(Mutex::new(queued)),
            reports: tx,
        };
        let server = TestServer::start(
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
        let child = tokio::process::Command::new(bin)
            .env_clear()
            .env("ENV_FILE", "off")
            .env("AWS_LAMBDA_RUNTIME_API", server.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {bin}: {err}"));
        LambdaRuntime {
            events,
            reports,
            _server: server,
            _child: child,
        }
    }

    /// Queues invocation `id` of `event`, for the function's next poll.
    pub fn invoke(&self, id: &str, event: Value) {
        self.events
            .send((id.to_string(), event))
            .expect("the Runtime API is running");
    }

    /// What the function sent next (20 s at most).
    pub async fn next(&mut self) -> Report {
        match tokio::time::timeout(Duration::from_secs(20), self.reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("the Runtime API stopped"),
            Err(_) => panic!("nothing reached the Runtime API within 20 s"),
        }
    }

    /// The whole answer to invocation `id`, in buffered mode.
    pub async fn whole(&mut self, id: &str) -> Value {
        match self.next().await {
            Report::Whole(got, answer) if got == id => answer,
            other => panic!("want {id}'s whole answer, got {other:?}"),
        }
    }

    /// The prelude of invocation `id`'s streamed answer, sent as the
    /// protocol asks.
    pub async fn prelude(&mut self, id: &str) -> Value {
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

    /// The next piece of invocation `id`'s streamed body, `None` at its end.
    pub async fn chunk(&mut self, id: &str) -> Option<Bytes> {
        match self.next().await {
            Report::Chunk(got, piece) if got == id => Some(piece),
            Report::End(got) if got == id => None,
            other => panic!("want {id}'s body, got {other:?}"),
        }
    }

    /// The rest of invocation `id`'s streamed body, once it has ended.
    pub async fn rest(&mut self, id: &str) -> String {
        let mut body = Vec::new();
        while let Some(piece) = self.chunk(id).await {
            body.extend_from_slice(&piece);
        }
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// A Lambda Function URL event (payload format 2.0).
pub fn function_url_event(method: &str, path: &str, body: Option<Value>) -> Value {
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
