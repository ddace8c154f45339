//! Helpers for the function crates' tests: settings from a list of
//! variables, a router served on a real loopback port, scripted wire-format
//! servers, function binaries as real processes, and the Firestore emulator.
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

/// Settings as if the environment held exactly `vars`.
pub fn settings(vars: &[(&str, &str)]) -> Settings {
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
