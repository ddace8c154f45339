//! Helpers for the function crates' tests: settings from a list of
//! variables, a router served on a real loopback port, scripted wire-format
//! servers, function binaries as real processes, the Firestore emulator,
//! and an OTLP receiver for exported traces.
//!
//! Compiled only for tests and with the `testing` feature, which the
//! function crates enable from `[dev-dependencies]`: their integration tests
//! use these helpers, and nothing in production may.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Settings;

mod callbacks;
mod issuer;
pub mod lambda;
mod otlp;
pub use callbacks::{CallbackReceiver, Received};
pub use issuer::TestIssuer;
pub use otlp::{ExportedSpan, OtlpReceiver};

/// Settings as if the environment held exactly `vars`.
pub fn settings(vars: &[(&str, &str)]) -> Settings {
    crate::config::dotenv::read_no_file();
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match Settings::from_lookup(|name| map.get(name).cloned()) {
        Ok(s) => s,
        Err(err) => panic!("test settings are invalid: {err}"),
    }
}

/// A router served on `127.0.0.1:<free port>` until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(router: Router) -> TestServer {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(err) => panic!("cannot bind a loopback port: {err}"),
        };
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("no local address: {err}"));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(err) = crate::runtime::serve_on(listener, router, shutdown).await {
                eprintln!("test server failed: {err:#}");
            }
        });
        TestServer {
            addr,
            url: format!("http://{addr}"),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops accepting and waits for open requests to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A stand-in for the metadata server's identity endpoint (the one thing
/// that cannot run off Google Cloud): each ID token is
/// `token-for:<audience>`, so a test can see which audience a call asked
/// for. Point `GCE_METADATA_HOST` at its address (without `http://`).
pub async fn metadata_server() -> TestServer {
    async fn identity(
        headers: axum::http::HeaderMap,
        axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    ) -> Result<String, axum::http::StatusCode> {
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return Err(axum::http::StatusCode::FORBIDDEN);
        }
        Ok(format!(
            "token-for:{}",
            query.get("audience").cloned().unwrap_or_default()
        ))
    }
    TestServer::start(Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/identity",
        axum::routing::get(identity),
    ))
    .await
}

/// A port that was free a moment ago, for tests that start processes.
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("cannot find a free port: {err}"),
    }
}

/// A server that answers `POST path` with scripted JSON replies, in order
/// (the last one repeats), and records every request body: a model
/// provider's or a tool function's wire format, for tests that drive a
/// whole run.
pub struct Scripted {
    pub server: TestServer,
    requests: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Scripted {
    pub async fn start(path: &str, replies: Vec<(u16, serde_json::Value)>) -> Scripted {
        use std::sync::{Arc, Mutex};

        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::response::IntoResponse;

        type Shared = (Arc<Mutex<Vec<serde_json::Value>>>, Arc<Vec<(u16, serde_json::Value)>>);
        async fn reply(State((seen, replies)): State<Shared>, body: axum::body::Bytes) -> axum::response::Response {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let n = {
                let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                seen.push(body);
                seen.len()
            };
            match replies.get(n - 1).or(replies.last()) {
                Some((status, json)) => {
                    let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    (status, axum::Json(json.clone())).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }

        let requests = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route(path, axum::routing::post(reply))
            .with_state((requests.clone(), Arc::new(replies)));
        Scripted {
            server: TestServer::start(router).await,
            requests,
        }
    }

    /// The bodies received so far, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A function binary running as a real process on a free port, killed when
/// dropped.
pub struct Process {
    pub child: tokio::process::Child,
    pub url: String,
}

impl Process {
    /// Starts `bin` with exactly `vars` (plus `PORT`) and waits for a 200 on
    /// `/health`.
    pub async fn start(bin: &str, vars: &[(&str, &str)]) -> Process {
        Process::start_on(bin, free_port(), vars).await
    }

    /// As [`Process::start`], on a given port (a restart behind the same URL).
    pub async fn start_on(bin: &str, port: u16, vars: &[(&str, &str)]) -> Process {
        let child = tokio::process::Command::new(bin)
            .env_clear()
            // A .env above the repository must not change what is tested.
            .env("ENV_FILE", "off")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {bin}: {err}"));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(r) = http.get(format!("{url}/health")).send().await
                && r.status().is_success()
            {
                return Process { child, url };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{bin} did not become healthy on port {port}");
    }

    /// Sends the process SIGTERM, as Cloud Run does to scale in; does not
    /// wait for it.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process is running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM {pid}");
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The emulator host `./scripts/test.sh` started, for the tests that need
/// it; a clear failure when run without it.
pub fn firestore_emulator_host() -> String {
    match std::env::var("FIRESTORE_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => panic!("FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test.sh, which starts the Firestore emulator"),
    }
}

/// A Firestore emulator of a test's own, for tests that stop and restart it.
/// It runs in a process group of its own (gcloud leaves a Java child
/// behind) and is stopped by that group's id.
pub struct FirestoreEmulator {
    pub host: String,
    port: u16,
    child: Option<tokio::process::Child>,
}

impl FirestoreEmulator {
    pub async fn start() -> FirestoreEmulator {
        let mut emulator = FirestoreEmulator {
            host: String::new(),
            port: free_port(),
            child: None,
        };
        emulator.host = format!("127.0.0.1:{}", emulator.port);
        emulator.restart().await;
        emulator
    }

    /// Starts (again) on the same port; waits until it answers.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new("gcloud")
            .args(["emulators", "firestore", "start", &format!("--host-port={}", self.host)])
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start the Firestore emulator (gcloud): {err}"));
        self.child = Some(child);
        let http = reqwest::Client::new();
        for _ in 0..240 {
            if let Ok(r) = http.get(format!("http://{}/", self.host)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        panic!("the Firestore emulator did not start on {}", self.host);
    }

    /// Stops the whole process group and waits until the port is closed.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pgid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .status();
            }
            let _ = child.wait().await;
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for FirestoreEmulator {
    fn drop(&mut self) {
        if let Some(child) = &self.child
            && let Some(pgid) = child.id()
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
    }
}

/// An [`App`](crate::App) on a SQLite file of its own (its folder removed on
/// drop), with the offline model unless `vars` name another: what a
/// function's tests start from.
pub struct TestApp {
    pub app: crate::App,
    dir: std::path::PathBuf,
}

impl TestApp {
    pub async fn start(function: &'static str, vars: &[(&str, &str)]) -> TestApp {
        let dir = std::env::temp_dir().join(format!("agent-test-{}", uuid::Uuid::new_v4().simple()));
        let db = dir.join("agent.db");
        let db = db.to_string_lossy().into_owned();
        let mut all = vec![("SQLITE_PATH", db.as_str()), ("LLM_PROVIDER", "offline")];
        all.extend_from_slice(vars);
        match crate::App::build(settings(&all), function).await {
            Ok(app) => TestApp { app, dir },
            Err(err) => panic!("the test app does not start: {err:#}"),
        }
    }
}

impl TestApp {
    /// The SQLite file the app stores in, for tests that read it directly.
    pub fn sqlite_path(&self) -> std::path::PathBuf {
        self.dir.join("agent.db")
    }
}

impl std::ops::Deref for TestApp {
    type Target = crate::App;

    fn deref(&self) -> &crate::App {
        &self.app
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Pub/Sub emulator host `./scripts/test.sh` started; a clear failure
/// when run without it.
pub fn pubsub_emulator_host() -> String {
    match std::env::var("PUBSUB_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => panic!("PUBSUB_EMULATOR_HOST is not set: run ./scripts/test.sh, which starts the Pub/Sub emulator"),
    }
}

/// Topics and push subscriptions on the Pub/Sub emulator, through its REST
/// API (what `gcloud pubsub` does in production).
pub struct PubSubAdmin {
    pub host: String,
    pub project: String,
    http: reqwest::Client,
}

impl PubSubAdmin {
    pub fn new(host: &str, project: &str) -> PubSubAdmin {
        PubSubAdmin {
            host: host.to_string(),
            project: project.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("http://{}/v1/projects/{}/{path}", self.host, self.project);
        let response = self
            .http
            .request(method, &url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("the Pub/Sub emulator is unreachable at {url}: {err}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            panic!("{url} answered {status}: {text}");
        }
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    pub async fn create_topic(&self, topic: &str) {
        self.call(reqwest::Method::PUT, &format!("topics/{topic}"), serde_json::json!({}))
            .await;
    }

    /// A push subscription to `endpoint` that redelivers a failed push after
    /// 1 to 2 s, as a production subscription with a retry policy would.
    pub async fn create_push_subscription(&self, name: &str, topic: &str, endpoint: &str) {
        let body = serde_json::json!({
            "topic": format!("projects/{}/topics/{topic}", self.project),
            "pushConfig": {"pushEndpoint": endpoint},
            "ackDeadlineSeconds": 60,
            "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "2s"},
        });
        self.call(reqwest::Method::PUT, &format!("subscriptions/{name}"), body)
            .await;
    }

    pub async fn delete_subscription(&self, name: &str) {
        let url = format!("http://{}/v1/projects/{}/subscriptions/{name}", self.host, self.project);
        let _ = self.http.delete(url).send().await;
    }

    /// Publishes raw message data; returns the message id.
    pub async fn publish(&self, topic: &str, data: &[u8]) -> String {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("topics/{topic}:publish"),
                serde_json::json!({"messages": [{"data": data}]}),
            )
            .await;
        answer["messageIds"][0].as_str().unwrap_or_default().to_string()
    }
}

/// The events of a server-sent event stream's text, as (name, JSON data);
/// data that is not JSON reads as null.
pub fn sse_events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap_or(serde_json::Value::Null)))
        })
        .collect()
}

/// Checks an error answer: its status, a JSON body, the envelope's `code`
/// and a message. Returns the message and `Retry-After` in whole seconds.
pub async fn error_envelope(response: reqwest::Response, status: u16, code: &str) -> (String, Option<u64>) {
    assert_eq!(response.status().as_u16(), status, "status");
    let headers = response.headers();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
    let retry_after = headers.get("retry-after").map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("Retry-After in whole seconds")
    });
    let body: serde_json::Value = response.json().await.expect("a JSON envelope");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("a message").to_string();
    assert!(!message.is_empty(), "{body}");
    (message, retry_after)
}

/// A model speaking OpenAI's chat completions wire format that says when it
/// is called and holds its answer, [`GatedModel::ANSWER`], until released:
/// a plain call gets nothing until then; a streamed call gets its first
/// delta at once and the rest then. For tests of what happens while a model
/// call is under way (a client that goes away).
pub struct GatedModel {
    pub server: TestServer,
    /// `OPENAI_BASE_URL` for it.
    pub base_url: String,
    called: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl GatedModel {
    /// What it answers, in two deltas when streamed.
    pub const ANSWER: &'static str = "done at last";
    const HEAD: &'static str = "done ";
    const TAIL: &'static str = "at last";

    pub async fn start() -> GatedModel {
        use std::sync::Arc;

        use axum::extract::State;
        use axum::response::{IntoResponse, Response};
        use futures_util::StreamExt;
        use serde_json::json;
        use tokio::sync::{Notify, mpsc};

        type Gate = (mpsc::UnboundedSender<()>, Arc<Notify>);
        fn chunk(delta: serde_json::Value, finish_reason: Option<&str>) -> String {
            let chunk = json!({
                "id": "chatcmpl-gated", "object": "chat.completion.chunk", "created": 1, "model": "gated",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            });
            format!("data: {chunk}\n\n")
        }
        async fn answer(State((called, release)): State<Gate>, body: axum::body::Bytes) -> Response {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let _ = called.send(());
            if request["stream"] != json!(true) {
                release.notified().await;
                return axum::Json(json!({
                    "id": "chatcmpl-gated", "object": "chat.completion", "created": 1, "model": "gated",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": GatedModel::ANSWER}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
                }))
                .into_response();
            }
            let head = chunk(json!({"role": "assistant", "content": GatedModel::HEAD}), None);
            let rest = async move {
                release.notified().await;
                let usage = json!({
                    "id": "chatcmpl-gated", "object": "chat.completion.chunk", "created": 1, "model": "gated",
                    "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
                });
                format!(
                    "{}data: {usage}\n\ndata: [DONE]\n\n",
                    chunk(json!({"content": GatedModel::TAIL}), Some("stop"))
                )
            };
            let body = futures_util::stream::once(std::future::ready(head))
                .chain(futures_util::stream::once(rest))
                .map(Ok::<_, std::convert::Infallible>);
            (
                [(http::header::CONTENT_TYPE, "text/event-stream")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }

        let (called_tx, called) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let router = Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state((called_tx, release.clone()));
        let server = TestServer::start(router).await;
        GatedModel {
            base_url: format!("{}/v1", server.url),
            server,
            called,
            release,
        }
    }

    /// Waits (10 s at most) until it is called.
    pub async fn called(&mut self) {
        match tokio::time::timeout(std::time::Duration::from_secs(10), self.called.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("the gated model stopped"),
            Err(_) => panic!("the gated model was not called within 10 s"),
        }
    }

    /// Lets one held answer go (the next one, if none is held yet).
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// `router`, with each request that carries an `x-test-watch` header saying
/// (with that header's value) when the server lets go of it: its handler's
/// future was dropped before it answered, or its response body was dropped
/// (once sent, or when the client went away). What hyper does when a client
/// disconnects, made observable, so a test can wait for it instead of
/// sleeping.
pub fn watch_drops(router: Router) -> (Router, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use axum::extract::{Request, State};
    use axum::middleware::Next;
    use axum::response::Response;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    struct OnDrop(Option<(mpsc::UnboundedSender<String>, String)>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some((dropped, name)) = self.0.take() {
                let _ = dropped.send(name);
            }
        }
    }
    async fn watch(State(dropped): State<mpsc::UnboundedSender<String>>, request: Request, next: Next) -> Response {
        let Some(name) = request
            .headers()
            .get("x-test-watch")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return next.run(request).await;
        };
        // Declared first, so dropped after the handler's future.
        let mut handler = OnDrop(Some((dropped.clone(), name.clone())));
        let response = next.run(request).await;
        handler.0 = None;
        let body = OnDrop(Some((dropped, name)));
        response.map(|inner| {
            // A stream's fields drop before its closure's: the body, then the signal.
            axum::body::Body::from_stream(inner.into_data_stream().map(move |chunk| {
                let _watched = &body;
                chunk
            }))
        })
    }

    let (dropped, watched) = mpsc::unbounded_channel();
    (
        router.layer(axum::middleware::from_fn_with_state(dropped, watch)),
        watched,
    )
}

/// Sends `POST path` with a JSON `body` and these extra headers over a raw
/// connection, and returns it: the test reads what it wants, then drops it
/// to disconnect, as a client going away does.
pub async fn raw_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;

    let body = body.to_string();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    );
    let mut connection = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
    connection
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|err| panic!("cannot send the request to {addr}: {err}"));
    connection
}

/// Reads from `connection` (10 s at most) until what it received contains
/// `wanted`, and returns what it received.
pub async fn read_until(connection: &mut tokio::net::TcpStream, wanted: &str) -> String {
    use tokio::io::AsyncReadExt;

    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&received).contains(wanted) {
            match connection.read(&mut buf).await {
                Ok(0) => panic!(
                    "the connection closed before {wanted:?}: {}",
                    String::from_utf8_lossy(&received)
                ),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(err) => panic!("cannot read the answer: {err}"),
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .is_err()
    {
        panic!(
            "{wanted:?} did not arrive within 10 s: {}",
            String::from_utf8_lossy(&received)
        );
    }
    String::from_utf8_lossy(&received).into_owned()
}
