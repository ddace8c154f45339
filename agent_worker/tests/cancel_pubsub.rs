//! Cancelling on the real asynchronous path: `agent_function` (in process)
//! on the Firestore emulator publishes to the Pub/Sub emulator, whose push
//! subscription delivers, through a front that can hold a delivery, to a
//! running `agent_worker` process. The model is a Gemini wire-format double
//! that counts its calls and holds each answer until released; its answer
//! is a `calculate` call, so a run that went on would call it again.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::testing::{self, Process, TestServer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

const WORKER: &str = env!("CARGO_BIN_EXE_agent_worker");
const SECRET: &str = "whsec-cancel-secret";
/// A bound for failure messages, not a measurement.
const DEADLINE: Duration = Duration::from_secs(120);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Something a test lets go of when it chooses: a model answer, a delivery.
#[derive(Clone, Default)]
struct Held {
    count: Arc<AtomicU32>,
    release: Arc<Notify>,
}

impl Held {
    async fn hold(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.release.notified().await;
    }

    fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }

    async fn wait_count(&self, n: u32, what: &str) {
        let started = std::time::Instant::now();
        while self.count() < n {
            assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn generate(State(model): State<Held>) -> axum::Json<Value> {
    model.hold().await;
    axum::Json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"functionCall": {"name": "calculate", "args": {"expression": "1+1"}}}]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
        "modelVersion": "gemini-held"
    }))
}

#[derive(Clone)]
struct Front {
    worker_url: String,
    held: Held,
    http: reqwest::Client,
}

/// Holds each push until released, then passes it on to the worker.
async fn push(State(front): State<Front>, headers: HeaderMap, body: Bytes) -> Response {
    front.held.hold().await;
    let mut request = front.http.post(format!("{}/", front.worker_url)).body(body);
    if let Some(ct) = headers.get("content-type") {
        request = request.header("content-type", ct.clone());
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, answer.bytes().await.unwrap_or_default()).into_response()
}

/// A task's JSON as its callback carries it: without its callback state.
fn without_callback(task: &Value) -> Value {
    let mut task = task.clone();
    if let Some(fields) = task.as_object_mut() {
        fields.remove("callback");
    }
    task
}

#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<Value>>>);

async fn receive(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(agent_core::webhook::verify(SECRET.as_bytes(), &body, signature));
    lock(&hooks.0).push(serde_json::from_slice(&body).unwrap_or_default());
    StatusCode::NO_CONTENT
}

struct Rig {
    agent: TestServer,
    worker: Process,
    model: Held,
    front: Held,
    hooks: Hooks,
    hooks_url: String,
    http: reqwest::Client,
    _servers: Vec<TestServer>,
    _app: agent_core::App,
}

impl Rig {
    async fn start(name: &str) -> Rig {
        let common::Names {
            suffix,
            project,
            topic,
            admin,
        } = common::names(name).await;

        let model = Held::default();
        let model_server = TestServer::start(
            Router::new()
                .route("/v1beta/models/{*method}", axum::routing::post(generate))
                .with_state(model.clone()),
        )
        .await;
        let hooks = Hooks::default();
        let hooks_server = TestServer::start(
            Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(hooks.clone()),
        )
        .await;
        let firestore = testing::firestore_emulator_host();
        let worker = Process::start(
            WORKER,
            &[
                ("STORE", "firestore"),
                ("FIRESTORE_PROJECT", &project),
                ("FIRESTORE_EMULATOR_HOST", &firestore),
                ("LLM_PROVIDER", "gemini"),
                ("GEMINI_API_KEY", "test-key"),
                ("GEMINI_BASE_URL", &model_server.url),
                ("LLM_MAX_RETRIES", "0"),
                ("WEBHOOK_SECRET", SECRET),
                ("ALLOW_LOOPBACK_CALLBACKS", "true"),
                ("LOG_FORMAT", "json"),
            ],
        )
        .await;
        let front = Held::default();
        let front_server = TestServer::start(Router::new().route("/", axum::routing::post(push)).with_state(Front {
            worker_url: worker.url.clone(),
            held: front.clone(),
            http: reqwest::Client::new(),
        }))
        .await;
        admin
            .create_push_subscription(
                &format!("push-{name}-{suffix}"),
                &topic,
                &format!("{}/", front_server.url),
            )
            .await;

        let (app, agent) = common::agent(&project, &topic, SECRET).await;
        Rig {
            agent,
            worker,
            model,
            front,
            hooks,
            hooks_url: format!("{}/hook", hooks_server.url),
            http: reqwest::Client::new(),
            _servers: vec![model_server, hooks_server, front_server],
            _app: app,
        }
    }

    async fn submit(&self) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/agent", self.agent.url))
            .json(&json!({"task": "add forever", "async": true, "callback_url": self.hooks_url}))
            .send()
            .await
            .expect("submit");
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        body["task_id"].as_str().expect("task_id").to_string()
    }

    async fn cancel(&self, id: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/api/v1/tasks/{id}/cancel", self.agent.url))
            .send()
            .await
            .expect("cancel");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    async fn task(&self, id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/api/v1/tasks/{id}", self.agent.url))
            .send()
            .await
            .expect("get task");
        response.json().await.expect("json")
    }

    /// Waits until the worker has counted `outcome` once.
    async fn wait_worker(&self, outcome: &str) {
        let wanted = format!(r#"worker_tasks_total{{function="agent_worker",outcome="{outcome}"}} 1"#);
        let started = std::time::Instant::now();
        loop {
            let text = self
                .http
                .get(format!("{}/metrics", self.worker.url))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            if text.lines().any(|l| l == wanted) {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "{wanted} never showed:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn a_task_cancelled_while_its_message_is_on_the_way_never_runs() {
    let rig = Rig::start("cancel-queued").await;
    let id = rig.submit().await;
    rig.front.wait_count(1, "the push of the task").await;
    assert_eq!(rig.task(&id).await["status"], "queued");

    let cancelled = rig.cancel(&id).await;
    assert_eq!(
        (&cancelled["status"], &cancelled["attempts"]),
        (&json!("cancelled"), &json!(0))
    );
    assert_eq!(rig.cancel(&id).await, cancelled, "cancelling again answers the same");
    let sent = lock(&rig.hooks.0).clone();
    assert_eq!(sent, [without_callback(&cancelled)], "one callback, the cancelled task");
    assert_eq!(cancelled["callback"], json!({"status": "delivered", "attempts": 1}));

    rig.front.release.notify_one();
    rig.wait_worker("cancelled").await;
    assert_eq!(rig.model.count(), 0, "the model never saw the task");
    assert_eq!(rig.task(&id).await, cancelled);
    assert_eq!(lock(&rig.hooks.0).len(), 1, "the worker sent no callback of its own");
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn a_task_cancelled_while_it_runs_makes_no_further_model_call() {
    let rig = Rig::start("cancel-running").await;
    let id = rig.submit().await;
    rig.front.wait_count(1, "the push of the task").await;
    rig.front.release.notify_one();
    rig.model.wait_count(1, "the run's first model call").await;
    assert_eq!(rig.task(&id).await["status"], "running");

    let cancelled = rig.cancel(&id).await;
    assert_eq!(
        (&cancelled["status"], &cancelled["attempts"]),
        (&json!("cancelled"), &json!(1))
    );
    rig.model.release.notify_one();
    rig.wait_worker("stopped").await;
    assert_eq!(rig.model.count(), 1, "no model call after the cancel was stored");
    assert_eq!(rig.task(&id).await, cancelled, "the stopped run wrote nothing");
    assert_eq!(
        lock(&rig.hooks.0).clone(),
        [without_callback(&cancelled)],
        "one callback, the cancelled task"
    );
}
