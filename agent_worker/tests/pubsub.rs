//! The asynchronous path for real: `agent_function` (in process) stores
//! tasks in the Firestore emulator and publishes them to the Pub/Sub
//! emulator, whose push subscription delivers to a running `agent_worker`
//! process. The model is a Gemini wire-format double that counts how many
//! times each task reached it: "ran exactly once" is one model call per
//! task, whatever Pub/Sub repeated.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::testing::{self, Process, PubSubAdmin, TestServer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const WORKER: &str = env!("CARGO_BIN_EXE_agent_worker");
const SECRET: &str = "whsec-test-secret";
/// How long the whole async path may take before a test gives up (a
/// deadline for a failure message, not a measurement).
const DEADLINE: Duration = Duration::from_secs(120);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Gemini `generateContent` double: answers `done: <task>`, counts calls
/// per task, and never answers the first call of a task named in `hang`.
#[derive(Clone, Default)]
struct Model {
    calls: Arc<Mutex<HashMap<String, u32>>>,
    hang: Arc<Mutex<Vec<String>>>,
}

impl Model {
    async fn start(&self) -> TestServer {
        async fn generate(State(model): State<Model>, body: Bytes) -> Response {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let task = request["contents"][0]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let n = {
                let mut calls = lock(&model.calls);
                let n = calls.entry(task.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if n == 1 && lock(&model.hang).contains(&task) {
                std::future::pending::<()>().await;
            }
            axum::Json(json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [{"text": format!("done: {task}")}]},
                    "finishReason": "STOP"
                }],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
                "modelVersion": "gemini-double"
            }))
            .into_response()
        }
        TestServer::start(
            Router::new()
                .route("/v1beta/models/{*method}", axum::routing::post(generate))
                .with_state(self.clone()),
        )
        .await
    }

    fn calls(&self, task: &str) -> u32 {
        lock(&self.calls).get(task).copied().unwrap_or(0)
    }
}

/// A webhook receiver that keeps every POST: the task id header, the
/// signature header and the exact bytes.
#[derive(Clone, Default)]
struct Hooks {
    seen: Arc<Mutex<Vec<(String, String, Bytes)>>>,
}

impl Hooks {
    async fn start(&self) -> TestServer {
        async fn receive(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            lock(&hooks.seen).push((header("x-task-id"), header("x-signature-256"), body));
            StatusCode::NO_CONTENT
        }
        TestServer::start(
            Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(self.clone()),
        )
        .await
    }

    /// The POSTs for `task_id`, after checking each one's signature.
    fn for_task(&self, task_id: &str) -> Vec<Value> {
        lock(&self.seen)
            .iter()
            .filter(|(id, _, _)| id == task_id)
            .map(|(_, signature, body)| {
                assert!(
                    agent_core::webhook::verify(SECRET.as_bytes(), body, signature),
                    "the signature of the callback for {task_id} verifies"
                );
                serde_json::from_slice(body).expect("the callback body is JSON")
            })
            .collect()
    }
}

/// What the worker's push endpoint sees, through a front that can answer
/// 503 to the first delivery of each message.
#[derive(Clone)]
struct Front {
    worker_url: Arc<Mutex<String>>,
    /// 503 the first delivery of each message: `Some(true)` after passing it
    /// on to the worker (the worker ran it but its ack was lost),
    /// `Some(false)` without passing it on.
    fail_first: Option<bool>,
    deliveries: Arc<Mutex<HashMap<String, u32>>>,
    http: reqwest::Client,
}

impl Front {
    async fn start(&self) -> TestServer {
        async fn push(State(front): State<Front>, headers: HeaderMap, body: Bytes) -> Response {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = message["message"]["messageId"].as_str().unwrap_or_default().to_string();
            let n = {
                let mut seen = lock(&front.deliveries);
                let n = seen.entry(id).or_insert(0);
                *n += 1;
                *n
            };
            if n == 1 && front.fail_first == Some(false) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let url = lock(&front.worker_url).clone();
            let mut request = front.http.post(format!("{url}/")).body(body);
            if let Some(ct) = headers.get("content-type") {
                request = request.header("content-type", ct.clone());
            }
            let Ok(answer) = request.send().await else {
                return StatusCode::BAD_GATEWAY.into_response();
            };
            if n == 1 && front.fail_first == Some(true) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, answer.bytes().await.unwrap_or_default()).into_response()
        }
        TestServer::start(
            Router::new()
                .route("/", axum::routing::post(push))
                .with_state(self.clone()),
        )
        .await
    }

    fn delivered_at_least(&self, ids: &[String], times: u32) -> bool {
        let seen = lock(&self.deliveries);
        ids.iter().all(|id| seen.get(id).copied().unwrap_or(0) >= times)
    }
}

/// One isolated async deployment: its own topic, subscription and
/// Firestore project, a worker process, the agent in process.
struct Rig {
    admin: PubSubAdmin,
    topic: String,
    agent: TestServer,
    worker: Option<Process>,
    worker_port: u16,
    worker_vars: Vec<(String, String)>,
    model: Model,
    _model_server: TestServer,
    hooks: Hooks,
    hooks_server: TestServer,
    front: Front,
    _front_server: TestServer,
    _agent_app: agent_core::App,
    http: reqwest::Client,
}

impl Rig {
    async fn start(name: &str, fail_first: Option<bool>, lease_seconds: &str) -> Rig {
        let common::Names {
            suffix,
            project,
            topic,
            admin,
        } = common::names(name).await;

        let model = Model::default();
        let model_server = model.start().await;
        let hooks = Hooks::default();
        let hooks_server = hooks.start().await;

        let firestore = testing::firestore_emulator_host();
        let worker_vars: Vec<(String, String)> = [
            ("STORE", "firestore"),
            ("FIRESTORE_PROJECT", project.as_str()),
            ("FIRESTORE_EMULATOR_HOST", firestore.as_str()),
            ("LLM_PROVIDER", "gemini"),
            ("GEMINI_API_KEY", "test-key"),
            ("GEMINI_BASE_URL", model_server.url.as_str()),
            ("LLM_MAX_RETRIES", "0"),
            ("WEBHOOK_SECRET", SECRET),
            ("ALLOW_LOOPBACK_CALLBACKS", "true"),
            ("TASK_LEASE_SECONDS", lease_seconds),
            ("LOG_FORMAT", "json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let worker_port = testing::free_port();
        let worker = start_worker(worker_port, &worker_vars).await;

        let front = Front {
            worker_url: Arc::new(Mutex::new(worker.url.clone())),
            fail_first,
            deliveries: Arc::default(),
            http: reqwest::Client::new(),
        };
        let front_server = front.start().await;
        admin
            .create_push_subscription(
                &format!("push-{name}-{suffix}"),
                &topic,
                &format!("{}/", front_server.url),
            )
            .await;

        let (app, agent) = common::agent(&project, &topic, SECRET).await;
        Rig {
            admin,
            topic,
            agent,
            worker: Some(worker),
            worker_port,
            worker_vars,
            model,
            _model_server: model_server,
            hooks,
            hooks_server,
            front,
            _front_server: front_server,
            _agent_app: app,
            http: reqwest::Client::new(),
        }
    }

    /// Submits `task` asynchronously with a callback; returns its id.
    async fn submit(&self, task: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/agent", self.agent.url))
            .json(&json!({"task": task, "async": true, "callback_url": format!("{}/hook", self.hooks_server.url)}))
            .send()
            .await
            .expect("submit");
        assert_eq!(response.status(), 202, "an async task is accepted");
        let location = response.headers().get("location").cloned();
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], "queued");
        let id = body["task_id"].as_str().expect("task_id").to_string();
        assert_eq!(body["status_url"], format!("/api/v1/tasks/{id}"));
        assert_eq!(
            location.and_then(|l| l.to_str().ok().map(String::from)),
            Some(format!("/api/v1/tasks/{id}"))
        );
        id
    }

    async fn task(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/api/v1/tasks/{id}", self.agent.url))
            .send()
            .await
            .expect("get task")
            .json()
            .await
            .expect("json")
    }

    /// Waits until every task is completed or failed; returns them.
    async fn wait_finished(&self, ids: &[String]) -> Vec<Value> {
        let started = std::time::Instant::now();
        loop {
            let mut tasks = Vec::new();
            for id in ids {
                tasks.push(self.task(id).await);
            }
            if tasks
                .iter()
                .all(|t| t["status"] == "completed" || t["status"] == "failed")
            {
                return tasks;
            }
            if started.elapsed() > DEADLINE {
                let pending: Vec<_> = tasks.iter().filter(|t| t["status"] != "completed").collect();
                panic!("{} tasks did not finish, e.g. {:?}", pending.len(), pending.first());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn worker_metric(&self, line_prefix: &str) -> u64 {
        let Some(worker) = &self.worker else { return 0 };
        let text = self
            .http
            .get(format!("{}/metrics", worker.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with(line_prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn wait_for(&self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        let started = std::time::Instant::now();
        while !done().await {
            assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The callback is sent after the store records the finish, so a
    /// finished status can be read before its callback has arrived.
    async fn wait_callbacks(&self, ids: &[&str]) {
        self.wait_for("every finished task's callback", async || {
            ids.iter().all(|id| !self.hooks.for_task(id).is_empty())
        })
        .await;
    }

    /// Every task completed, in one attempt, with one model call and one
    /// signed callback.
    async fn assert_ran_once(&self, names: &[String], tasks: &[Value]) {
        let ids: Vec<&str> = tasks.iter().map(|t| t["task_id"].as_str().expect("id")).collect();
        self.wait_callbacks(&ids).await;
        for (name, task) in names.iter().zip(tasks) {
            let id = task["task_id"].as_str().expect("id");
            assert_eq!(task["status"], "completed", "{task}");
            assert_eq!(task["attempts"], 1, "{task}");
            assert_eq!(task["result"]["response"], format!("done: {name}"));
            assert_eq!(self.model.calls(name), 1, "{name} reached the model once");
            let hooks = self.hooks.for_task(id);
            assert_eq!(hooks.len(), 1, "one callback for {id}");
            assert_eq!(hooks[0]["status"], "completed");
            assert_eq!(hooks[0]["result"]["response"], format!("done: {name}"));
        }
    }
}

async fn start_worker(port: u16, vars: &[(String, String)]) -> Process {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Process::start_on(WORKER, port, &vars).await
}

async fn submit_all(rig: &Rig, label: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = (0..n).map(|i| format!("{label} task {i}")).collect();
    let ids = futures_util::future::join_all(names.iter().map(|name| rig.submit(name))).await;
    (names, ids)
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn fifty_tasks_complete_once_each() {
    let rig = Rig::start("plain", None, "60").await;
    let (names, ids) = submit_all(&rig, "plain", 50).await;
    let tasks = rig.wait_finished(&ids).await;
    rig.assert_ran_once(&names, &tasks).await;
    assert_eq!(
        rig.worker_metric("worker_tasks_total{function=\"agent_worker\",outcome=\"completed\"}")
            .await,
        50
    );
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn a_503_to_every_first_delivery_still_runs_each_task_once() {
    // Even-numbered messages: the worker never sees the first delivery.
    // Odd-numbered ones: the worker runs the task, but Pub/Sub is told 503
    // (an acknowledgement lost on the way), so the redelivery finds it done.
    for forward in [false, true] {
        let label = if forward { "acklost" } else { "refused" };
        let rig = Rig::start(label, Some(forward), "60").await;
        let (names, ids) = submit_all(&rig, label, 25).await;
        let tasks = rig.wait_finished(&ids).await;
        let message_ids: Vec<String> = lock(&rig.front.deliveries).keys().cloned().collect();
        assert_eq!(message_ids.len(), 25, "one message per task");
        rig.wait_for("every message to be redelivered", async || {
            rig.front.delivered_at_least(&message_ids, 2)
        })
        .await;
        if forward {
            // The redeliveries reach a finished task: acknowledged, not run.
            rig.wait_for("the redeliveries to be acknowledged as duplicates", async || {
                rig.worker_metric("worker_tasks_total{function=\"agent_worker\",outcome=\"duplicate\"}")
                    .await
                    >= 25
            })
            .await;
        }
        rig.assert_ran_once(&names, &tasks).await;
    }
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn every_message_published_twice_still_runs_each_task_once() {
    let rig = Rig::start("twice", None, "60").await;
    let (names, ids) = submit_all(&rig, "twice", 50).await;
    for id in &ids {
        rig.admin.publish(&rig.topic, &agent_core::queue::message(id)).await;
    }
    let tasks = rig.wait_finished(&ids).await;
    rig.wait_for("the 50 second copies to be acknowledged as duplicates", async || {
        rig.worker_metric("worker_tasks_total{function=\"agent_worker\",outcome=\"duplicate\"}")
            .await
            >= 50
    })
    .await;
    rig.assert_ran_once(&names, &tasks).await;
    assert_eq!(
        rig.worker_metric("worker_tasks_total{function=\"agent_worker\",outcome=\"claimed\"}")
            .await,
        50
    );
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn a_worker_killed_mid_task_is_replaced_and_the_task_completes_once() {
    let mut rig = Rig::start("killed", None, "2").await;
    let name = "killed task 0".to_string();
    lock(&rig.model.hang).push(name.clone());
    let id = rig.submit(&name).await;
    rig.wait_for("the worker to be inside the task", async || rig.model.calls(&name) == 1)
        .await;
    assert_eq!(rig.task(&id).await["status"], "running");

    rig.worker.take().expect("worker").kill().await;
    let replacement = start_worker(rig.worker_port, &rig.worker_vars).await;
    *lock(&rig.front.worker_url) = replacement.url.clone();
    rig.worker = Some(replacement);

    let task = rig.wait_finished(std::slice::from_ref(&id)).await.remove(0);
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["attempts"], 2,
        "claimed again once the dead worker's lease passed: {task}"
    );
    assert_eq!(task["result"]["response"], format!("done: {name}"));
    assert_eq!(
        rig.model.calls(&name),
        2,
        "the interrupted call and the one that finished"
    );
    rig.wait_callbacks(&[id.as_str()]).await;
    assert_eq!(rig.hooks.for_task(&id).len(), 1, "one callback for the one completion");
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn a_malformed_message_is_acknowledged_counted_and_not_redelivered() {
    let rig = Rig::start("malformed", None, "60").await;
    let malformed = "worker_malformed_messages_total{function=\"agent_worker\"}";
    rig.admin.publish(&rig.topic, b"this is not a task").await;
    rig.wait_for("the malformed message to be counted", async || {
        rig.worker_metric(malformed).await == 1
    })
    .await;
    // A redelivery would come about a second after a non-2xx answer.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rig.worker_metric(malformed).await,
        1,
        "acknowledged once, never redelivered"
    );
    let deliveries: u32 = lock(&rig.front.deliveries).values().sum();
    assert_eq!(deliveries, 1);

    // A task that follows is unaffected.
    let id = rig.submit("malformed task 0").await;
    assert_eq!(rig.wait_finished(&[id]).await[0]["status"], "completed");
}

/// A chat batch with `"async": true`, submitted to `chat_function` (in
/// process, on the agent's app: the same Firestore project and topic), is
/// delivered by Pub/Sub to the worker process like an agent task: run once,
/// its result the synchronous batch's answer, its callback signed.
#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn an_async_chat_batch_runs_once_through_pubsub() {
    let rig = Rig::start("batch", None, "60").await;
    let chat = TestServer::start(chat_function::router(&rig._agent_app)).await;
    let response = rig
        .http
        .post(format!("{}/api/v1/chat/batch", chat.url))
        .json(&json!({
            "requests": [
                {"message": "batch first", "session_id": "batch-notes"},
                {"message": "  "},
                {"message": "batch second", "session_id": "batch-notes"},
                {"message": "batch alone"},
            ],
            "async": true,
            "callback_url": format!("{}/hook", rig.hooks_server.url),
        }))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.expect("json");
    let id = accepted["task_id"].as_str().expect("task_id").to_string();
    let task = rig.wait_finished(std::slice::from_ref(&id)).await.remove(0);
    assert_eq!(
        (&task["status"], &task["kind"]),
        (&json!("completed"), &json!("chat_batch")),
        "{task}"
    );
    assert_eq!(task["attempts"], 1, "{task}");
    let results = task["result"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "{task}");
    assert_eq!(results[1]["error"]["code"], "invalid_argument", "{task}");
    // The double answers with the first message it is sent: the session's
    // second turn carries the first in its history.
    assert_eq!(results[0]["response"], "done: batch first");
    assert_eq!(results[2]["response"], "done: batch first");
    assert_eq!(results[3]["response"], "done: batch alone");
    assert_eq!(task["result"]["usage"]["model_calls"], 3, "{task}");
    assert_eq!(rig.model.calls("batch first"), 2, "each turn of the session once");
    assert_eq!(rig.model.calls("batch alone"), 1);

    rig.wait_callbacks(&[id.as_str()]).await;
    let hooks = rig.hooks.for_task(&id);
    assert_eq!(hooks.len(), 1, "one signed callback");
    assert_eq!(hooks[0]["result"], task["result"]);
}
