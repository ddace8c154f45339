//! A queued multi-agent run fanned out across two `agent_worker` processes
//! for real: `agent_function` (in process) stores the run in the Firestore
//! emulator and publishes it to the Pub/Sub emulator; the worker that
//! claims it plans, makes each subtask a child task and publishes the
//! children; whichever worker a child's message reaches runs it, and the
//! child that ends last publishes the parent, whose claim asks for the
//! synthesis.
//!
//! Pub/Sub pushes to a front that stands for the queue's worst: it hands
//! each message to one worker or the other in turn, and a copy of it to
//! the other worker (every message is delivered twice): at the same time
//! for half of them, so that the two race for the claim, and once the
//! first has answered for the others, so that each worker surely runs
//! some whoever wins the races. If a worker is dead, the live one answers.
//!
//! The model is one Gemini wire-format double that each worker reaches
//! under a path of its own (`/a`, `/b`), so it knows who called: it plays
//! the planner (a plan of six independent subtasks), the executors (each
//! held until another executor call is in flight beside it, so that
//! "children run at the same time" is counted at the double, not timed)
//! and the synthesis.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::multi::SYNTHESIS_INSTRUCTION;
use agent_core::testing::{self, CallbackReceiver, Process, PubSubAdmin, TestServer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const WORKER: &str = env!("CARGO_BIN_EXE_agent_worker");
const SECRET: &str = "whsec-fanout-secret";
/// A bound for failure messages, not a measurement.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long an executor call waits for another to be in flight beside it
/// before it answers anyway: a bound, so that a run whose children never
/// overlap fails on the count, not by hanging.
const COMPANY_WAIT: Duration = Duration::from_secs(3);
/// The subtasks of the plan.
const SUBTASKS: usize = 6;
/// The two workers, by the path each one reaches the model under.
const WORKERS: [&str; 2] = ["a", "b"];
const TASK: &str = "six independent parts, fanned out";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What subtask `i` asks: its executor's user turn.
fn description(i: usize) -> String {
    format!("part {i} of the fan-out: answer with its number")
}

fn plan() -> String {
    let subtasks: Vec<Value> = (0..SUBTASKS)
        .map(|i| json!({"id": format!("s{i}"), "description": description(i), "tools": [], "depends_on": []}))
        .collect();
    json!({ "subtasks": subtasks }).to_string()
}

fn gemini_text(model: &str, text: &str) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
        "modelVersion": model
    })
}

/// What the model double saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// (worker, request) of each planner call.
    planner: Vec<String>,
    synthesis: Vec<String>,
    /// (worker, subtask description) of each executor call, as it arrived.
    executor_calls: Vec<(String, String)>,
    /// The same, for each executor call answered.
    answered: Vec<(String, String)>,
    /// Executor calls in flight now, by worker.
    in_flight: BTreeMap<String, usize>,
    /// The most executor calls in flight at once (both workers').
    most_in_flight: usize,
}

impl Seen {
    fn in_flight_total(&self) -> usize {
        self.in_flight.values().sum()
    }

    fn answers_for(&self, description: &str) -> Vec<&str> {
        self.answered
            .iter()
            .filter(|(_, d)| d == description)
            .map(|(w, _)| w.as_str())
            .collect()
    }

    fn calls_for(&self, description: &str) -> Vec<&str> {
        self.executor_calls
            .iter()
            .filter(|(_, d)| d == description)
            .map(|(w, _)| w.as_str())
            .collect()
    }
}

/// The Gemini double both workers call.
#[derive(Default)]
struct Double {
    seen: Mutex<Seen>,
    /// A worker whose executor calls are never answered (until it dies).
    hold: Mutex<Option<String>>,
}

/// An executor call in flight, counted out when it answers or is dropped
/// (its worker went away).
struct InFlight<'a> {
    double: &'a Double,
    worker: String,
}

impl<'a> InFlight<'a> {
    fn enter(double: &'a Double, worker: &str, description: &str) -> InFlight<'a> {
        let mut seen = lock(&double.seen);
        seen.executor_calls.push((worker.to_string(), description.to_string()));
        *seen.in_flight.entry(worker.to_string()).or_default() += 1;
        seen.most_in_flight = seen.most_in_flight.max(seen.in_flight_total());
        InFlight {
            double,
            worker: worker.to_string(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut seen = lock(&self.double.seen);
        if let Some(n) = seen.in_flight.get_mut(&self.worker) {
            *n = n.saturating_sub(1);
        }
    }
}

async fn generate(
    State(double): State<Arc<Double>>,
    Path((worker, method)): Path<(String, String)>,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = method.split(':').next().unwrap_or_default().to_string();
    let system = body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let last = body["contents"]
        .as_array()
        .and_then(|c| c.last())
        .map(|c| c["parts"][0]["text"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    if body.get("generationConfig").is_some() {
        lock(&double.seen).planner.push(worker);
        return (StatusCode::OK, axum::Json(gemini_text(&model, &plan())));
    }
    if system == SYNTHESIS_INSTRUCTION {
        lock(&double.seen).synthesis.push(worker);
        return (StatusCode::OK, axum::Json(gemini_text(&model, "the final answer")));
    }
    let in_flight = InFlight::enter(&double, &worker, &last);
    if lock(&double.hold).as_deref() == Some(worker.as_str()) {
        std::future::pending::<()>().await;
    }
    let deadline = tokio::time::Instant::now() + COMPANY_WAIT;
    while lock(&double.seen).most_in_flight < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(in_flight);
    lock(&double.seen).answered.push((worker, last.clone()));
    (
        StatusCode::OK,
        axum::Json(gemini_text(&model, &format!("done: {last}"))),
    )
}

/// One push the front passed on: to which worker, whether it was the
/// message's primary delivery (whose answer Pub/Sub gets), and the answer
/// (`None`: the worker could not be reached).
#[derive(Debug, Clone)]
struct Forward {
    task_id: String,
    worker: usize,
    primary: bool,
    status: Option<u16>,
}

/// The push endpoint in front of the two workers.
#[derive(Clone)]
struct Front {
    /// Each worker's URL; `None` once it is killed.
    workers: Arc<Mutex<[Option<String>; 2]>>,
    /// Message ids in the order first seen: the `k`th goes first to worker
    /// `k % 2`.
    order: Arc<Mutex<HashMap<String, usize>>>,
    forwards: Arc<Mutex<Vec<Forward>>>,
    http: reqwest::Client,
}

impl Front {
    /// Passes the push on to `worker`; its answer, or `None` when it could
    /// not be reached (or died before answering).
    async fn forward(&self, worker: usize, task_id: &str, primary: bool, body: Bytes) -> Option<(StatusCode, Bytes)> {
        let url = lock(&self.workers)[worker].clone();
        let answer = match url {
            None => None,
            Some(url) => {
                let sent = self
                    .http
                    .post(format!("{url}/"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(answer) => {
                        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                        answer.bytes().await.ok().map(|bytes| (status, bytes))
                    }
                    Err(_) => None,
                }
            }
        };
        lock(&self.forwards).push(Forward {
            task_id: task_id.to_string(),
            worker,
            primary,
            status: answer.as_ref().map(|(s, _)| s.as_u16()),
        });
        answer
    }

    fn forwards(&self) -> Vec<Forward> {
        lock(&self.forwards).clone()
    }
}

async fn push(State(front): State<Front>, body: Bytes) -> Response {
    use base64::Engine as _;
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = message["message"]["messageId"].as_str().unwrap_or_default().to_string();
    let task_id = message["message"]["data"]
        .as_str()
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .and_then(|data| serde_json::from_slice::<Value>(&data).ok())
        .and_then(|data| data["task_id"].as_str().map(str::to_string))
        .unwrap_or_default();
    // The `k`th message goes first to worker `k % 2`; its copy races it
    // for every other pair of messages, and follows its answer otherwise:
    // so each worker surely runs some children, whoever wins the races.
    let (primary, race) = {
        let mut order = lock(&front.order);
        let next = order.len();
        let k = *order.entry(id).or_insert(next);
        (k % 2, (k / 2) % 2 == 1)
    };
    let other = 1 - primary;
    // The copy: the same message, to the other worker.
    let copy = {
        let (front, task_id, body) = (front.clone(), task_id.clone(), body.clone());
        async move { front.forward(other, &task_id, false, body).await }
    };
    let mut copy = Some(copy);
    if race && let Some(copy) = copy.take() {
        tokio::spawn(copy);
    }
    let answer = front.forward(primary, &task_id, true, body.clone()).await;
    if let Some(copy) = copy {
        tokio::spawn(copy);
    }
    if let Some((status, bytes)) = answer {
        return (status, bytes).into_response();
    }
    // The primary is dead: the live one answers, else Pub/Sub redelivers.
    match front.forward(other, &task_id, true, body).await {
        Some((status, bytes)) => (status, bytes).into_response(),
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Two workers behind the front, the double, the agent in process.
struct Rig {
    agent: TestServer,
    workers: [Option<Process>; 2],
    double: Arc<Double>,
    front: Front,
    hooks: CallbackReceiver,
    admin: PubSubAdmin,
    subscription: String,
    http: reqwest::Client,
    _servers: Vec<TestServer>,
    _app: agent_core::App,
}

impl Rig {
    async fn start(name: &str, lease_seconds: &str) -> Rig {
        let common::Names {
            suffix,
            project,
            topic,
            admin,
        } = common::names(name).await;

        let double = Arc::new(Double::default());
        let double_server = TestServer::start(
            Router::new()
                .route("/{worker}/v1beta/models/{method}", axum::routing::post(generate))
                .with_state(double.clone()),
        )
        .await;
        let hooks = CallbackReceiver::start().await;

        let (firestore, pubsub) = (testing::firestore_emulator_host(), testing::pubsub_emulator_host());
        let mut workers = Vec::new();
        for label in WORKERS {
            let model_url = format!("{}/{label}", double_server.url);
            let vars = [
                ("STORE", "firestore"),
                ("FIRESTORE_PROJECT", project.as_str()),
                ("FIRESTORE_EMULATOR_HOST", firestore.as_str()),
                // Children and resumed parents are published from the worker.
                ("QUEUE", "pubsub"),
                ("PUBSUB_PROJECT", common::PUBSUB_PROJECT),
                ("PUBSUB_TOPIC", topic.as_str()),
                ("PUBSUB_EMULATOR_HOST", pubsub.as_str()),
                ("LLM_PROVIDER", "gemini"),
                ("GEMINI_API_KEY", "test-key"),
                ("GEMINI_BASE_URL", model_url.as_str()),
                ("MODEL_ROUTING", "auto"),
                ("MODEL_FALLBACK", "off"),
                ("LLM_MAX_RETRIES", "0"),
                ("WEBHOOK_SECRET", SECRET),
                ("ALLOW_LOOPBACK_CALLBACKS", "true"),
                ("TASK_LEASE_SECONDS", lease_seconds),
                ("LOG_FORMAT", "json"),
            ];
            workers.push(Process::start(WORKER, &vars).await);
        }
        let [a, b]: [Process; 2] = workers.try_into().unwrap_or_else(|_| unreachable!());

        let front = Front {
            workers: Arc::new(Mutex::new([Some(a.url.clone()), Some(b.url.clone())])),
            order: Arc::default(),
            forwards: Arc::default(),
            http: reqwest::Client::new(),
        };
        let front_server = TestServer::start(
            Router::new()
                .route("/", axum::routing::post(push))
                .with_state(front.clone()),
        )
        .await;
        let subscription = format!("push-{name}-{suffix}");
        admin
            .create_push_subscription(&subscription, &topic, &format!("{}/", front_server.url))
            .await;

        let (app, agent) = common::agent(&project, &topic, SECRET).await;
        Rig {
            agent,
            workers: [Some(a), Some(b)],
            double,
            front,
            hooks,
            admin,
            subscription,
            http: reqwest::Client::new(),
            _servers: vec![double_server, front_server],
            _app: app,
        }
    }

    fn seen(&self) -> Seen {
        lock(&self.double.seen).clone()
    }

    /// Submits the run with `"async": true`; returns its id.
    async fn submit(&self) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/multi-agent", self.agent.url))
            .json(&json!({
                "task": TASK,
                "async": true,
                "max_subtasks": SUBTASKS,
                "callback_url": self.hooks.url,
            }))
            .send()
            .await
            .expect("submit");
        assert_eq!(response.status(), 202, "a queued run is accepted");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], "queued", "{body}");
        body["task_id"].as_str().expect("task_id").to_string()
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

    async fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}; the double saw {:#?}\nthe front passed on {:#?}",
                self.seen(),
                self.front.forwards()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the run has ended; returns its task.
    async fn wait_finished(&self, id: &str) -> Value {
        let started = std::time::Instant::now();
        loop {
            let task = self.task(id).await;
            if ["completed", "failed", "cancelled"].contains(&task["status"].as_str().unwrap_or_default()) {
                return task;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "run {id} did not finish: {task:#}\nthe double saw {:#?}\nthe front passed on {:#?}",
                self.seen(),
                self.front.forwards()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The run's progress stream, read from its start to its `done`.
    async fn events(&self, id: &str) -> Vec<(String, Value)> {
        let response = self
            .http
            .get(format!("{}/api/v1/tasks/{id}/events", self.agent.url))
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), 200);
        let text = tokio::time::timeout(DEADLINE, response.text())
            .await
            .expect("the stream ends after done")
            .expect("text");
        testing::sse_events(&text)
    }

    /// The callbacks sent for `id`, each checked to be signed.
    fn hooks_for(&self, id: &str) -> Vec<Value> {
        self.hooks
            .all()
            .into_iter()
            .filter(|hook| hook.task_id == id)
            .map(|hook| {
                assert!(
                    agent_core::webhook::verify(SECRET.as_bytes(), &hook.body, &hook.signature),
                    "a callback's signature verifies"
                );
                serde_json::from_slice(&hook.body).unwrap_or_default()
            })
            .collect()
    }

    /// What every run here shows once it has completed, whoever ran what:
    /// one plan, one synthesis, each subtask answered once, six children
    /// ended, one callback. Returns the run's children as its task shows
    /// them, and its progress stream's events.
    async fn assert_completed_once(&self, id: &str, task: &Value) -> (Vec<Value>, Vec<(String, Value)>) {
        assert_eq!(task["status"], "completed", "{task:#}");
        assert_eq!(task["kind"], "multi_agent", "{task:#}");
        // Two claims: the plan and fan-out, the resume after the children.
        assert_eq!(task["attempts"], 2, "{task:#}");
        let seen = self.seen();
        assert_eq!(seen.planner.len(), 1, "the planner was asked once: {seen:#?}");
        assert_eq!(seen.synthesis.len(), 1, "the synthesis was asked once: {seen:#?}");
        for i in 0..SUBTASKS {
            assert_eq!(
                seen.answers_for(&description(i)).len(),
                1,
                "subtask {i}'s executor was answered once: {seen:#?}"
            );
        }
        assert_eq!(seen.answered.len(), SUBTASKS, "{seen:#?}");
        assert!(
            seen.most_in_flight >= 2,
            "children were in flight together, counted at the double: {seen:#?}"
        );

        let outcome = &task["result"];
        assert_eq!(outcome["response"], "the final answer", "{task:#}");
        let subtasks = outcome["subtasks"].as_array().expect("subtasks");
        assert_eq!(subtasks.len(), SUBTASKS, "{task:#}");
        for (i, subtask) in subtasks.iter().enumerate() {
            assert_eq!(subtask["id"], format!("s{i}"), "{subtask}");
            assert_eq!(subtask["status"], "completed", "{subtask}");
            assert_eq!(subtask["response"], format!("done: {}", description(i)), "{subtask}");
        }
        // Every call that answered, once: the plan, six executors, the synthesis.
        assert_eq!(outcome["usage"]["model_calls"], 2 + SUBTASKS, "{task:#}");

        let children = task["children"].as_array().expect("children").clone();
        assert_eq!(children.len(), SUBTASKS, "{task:#}");
        for (i, child) in children.iter().enumerate() {
            assert_eq!(child["task_id"], format!("{id}-{i}"), "{child}");
            assert_eq!(child["subtask"], format!("s{i}"), "{child}");
            assert_eq!(child["status"], "completed", "{child}");
            assert_eq!(child["outcome"], "completed", "{child}");
        }

        let events = self.events(id).await;
        let count = |name: &str| events.iter().filter(|(n, _)| n == name).count();
        assert_eq!(
            (count("plan"), count("synthesis"), count("done")),
            (1, 1, 1),
            "{events:#?}"
        );
        let mut finished: Vec<String> = events
            .iter()
            .filter(|(n, _)| n == "subtask_finished")
            .map(|(_, d)| {
                assert_eq!(d["status"], "completed", "{d}");
                d["id"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        finished.sort();
        let ids: Vec<String> = (0..SUBTASKS).map(|i| format!("s{i}")).collect();
        assert_eq!(finished, ids, "each subtask finished once in the stream");
        let names: Vec<&str> = events
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "status")
            .collect();
        assert_eq!(names.first(), Some(&"plan"), "{names:?}");
        assert_eq!(&names[names.len() - 2..], ["synthesis", "done"], "{names:?}");
        assert_eq!(events.last().map(|(_, d)| &d["result"]), Some(&task["result"]));

        // One callback, for the run; none for its children.
        self.wait_for("the run's callback", || !self.hooks_for(id).is_empty())
            .await;
        let hooks = self.hooks_for(id);
        assert_eq!(hooks.len(), 1, "{hooks:#?}");
        assert_eq!(hooks[0]["status"], "completed");
        assert_eq!(hooks[0]["result"], task["result"]);
        let sent: Vec<String> = self.hooks.all().into_iter().map(|hook| hook.task_id).collect();
        assert_eq!(sent, [id.to_string()], "callbacks only for the run");
        (children, events)
    }

    async fn stop(self) {
        self.admin.delete_subscription(&self.subscription).await;
        for worker in self.workers.into_iter().flatten() {
            worker.kill().await;
        }
    }
}

#[tokio::test]
#[ignore = "needs the Pub/Sub and Firestore emulators; ./scripts/test.sh starts them"]
async fn six_children_run_once_each_on_two_workers_though_every_message_comes_twice() {
    let rig = Rig::start("fanout-twice", "60").await;
    let id = rig.submit().await;
    let task = rig.wait_finished(&id).await;
    let (children, events) = rig.assert_completed_once(&id, &task).await;
    let started = events.iter().filter(|(n, _)| n == "subtask_started").count();
    assert_eq!(started, SUBTASKS, "{events:#?}");
    for child in &children {
        assert_eq!(child["attempts"], 1, "claimed once, whatever came twice: {child}");
    }

    let seen = rig.seen();
    // Who ran what, as the double saw it: each worker some.
    let ran: BTreeMap<&str, usize> = seen.answered.iter().fold(BTreeMap::new(), |mut ran, (w, _)| {
        *ran.entry(w.as_str()).or_default() += 1;
        ran
    });
    assert_eq!(
        ran.keys().copied().collect::<Vec<_>>(),
        WORKERS,
        "both workers ran children: {seen:#?}"
    );
    for i in 0..SUBTASKS {
        assert_eq!(
            seen.calls_for(&description(i)).len(),
            1,
            "subtask {i} reached the model once: {seen:#?}"
        );
    }
    // Every child's message reached both workers, and Pub/Sub was told
    // each child is done by the worker it chose.
    rig.wait_for("every child's message at both workers, and acknowledged", || {
        let forwards = rig.front.forwards();
        (0..SUBTASKS).all(|i| {
            let child = format!("{id}-{i}");
            let at = |worker: usize| forwards.iter().any(|f| f.task_id == child && f.worker == worker);
            let acknowledged = forwards
                .iter()
                .any(|f| f.task_id == child && f.primary && f.status == Some(200));
            at(0) && at(1) && acknowledged
        })
    })
    .await;
    rig.stop().await;
}

#[tokio::test]
#[ignore = "needs the Pub/Sub and Firestore emulators; ./scripts/test.sh starts them"]
async fn a_worker_killed_mid_child_leaves_its_children_to_the_other_and_each_runs_once() {
    // A short lease: the dead worker's children are claimed again soon.
    let mut rig = Rig::start("fanout-killed", "3").await;
    *lock(&rig.double.hold) = Some(WORKERS[0].to_string());
    let id = rig.submit().await;
    rig.wait_for("worker a inside a child, with another child in flight", || {
        let seen = lock(&rig.double.seen);
        seen.in_flight.get(WORKERS[0]).copied().unwrap_or(0) >= 1 && seen.most_in_flight >= 2
    })
    .await;
    // Worker a is told no more, then killed with the child(ren) it holds.
    lock(&rig.front.workers)[0] = None;
    rig.workers[0].take().expect("worker a").kill().await;

    let task = rig.wait_finished(&id).await;
    let (children, events) = rig.assert_completed_once(&id, &task).await;
    let seen = rig.seen();
    // What a was inside of when it died: every call it made is held.
    let killed: Vec<String> = seen
        .executor_calls
        .iter()
        .filter(|(w, _)| w == WORKERS[0])
        .map(|(_, d)| d.clone())
        .collect();
    assert!(!killed.is_empty(), "{seen:#?}");
    // A killed child may have stored its first start before it died.
    let started = events.iter().filter(|(n, _)| n == "subtask_started").count();
    assert!((SUBTASKS..=SUBTASKS + killed.len()).contains(&started), "{events:#?}");
    assert!(
        seen.answered.iter().all(|(w, _)| w == WORKERS[1]),
        "the held calls were never answered; b answered every subtask: {seen:#?}"
    );
    for (i, child) in children.iter().enumerate() {
        let description = description(i);
        let calls = seen.calls_for(&description);
        if killed.contains(&description) {
            assert_eq!(
                calls, WORKERS,
                "subtask {i}: a's call died with it, b ran it: {seen:#?}"
            );
            assert_eq!(child["attempts"], 2, "claimed again after a's lease passed: {child}");
        } else {
            assert_eq!(calls, [WORKERS[1]], "subtask {i} ran once, on b: {seen:#?}");
            // 2 only if a died between claiming it and calling the model.
            let attempts = child["attempts"].as_u64().unwrap_or_default();
            assert!((1..=2).contains(&attempts), "{child}");
        }
    }
    rig.stop().await;
}
