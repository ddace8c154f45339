//! `POST /api/v1/tasks/{id}/cancel` on the embedded defaults (the local
//! queue, SQLite on disk), against a model double that holds its answer:
//! a queued task never reaches the model, a running one makes no call after
//! the cancel is stored (a multi-agent run starts no further subtask), a
//! cancel is idempotent, a finished task is a 409, and another principal's
//! task is a 404.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use agent_core::testing::{TestServer, error_envelope, sse_events};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::{Agent, DEADLINE};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

const SECRET: &str = "cancel-webhook-secret";

/// A model speaking OpenAI's chat completions wire format that counts its
/// calls, says when it is called, and holds each answer until released.
/// Its answer is a `calculate` call, so a run that went on would run the
/// tool and call the model again.
struct HeldModel {
    base_url: String,
    calls: Arc<AtomicUsize>,
    called: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
    _server: TestServer,
}

#[derive(Clone)]
struct Gate {
    calls: Arc<AtomicUsize>,
    called: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

async fn answer(State(gate): State<Gate>, axum::Json(request): axum::Json<Value>) -> axum::Json<Value> {
    let n = gate.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if request.get("response_format").is_some() {
        // A multi-agent planner: two subtasks, the second after the first.
        let plan = json!({"subtasks": [
            {"id": "s1", "description": "add one and one", "tools": ["calculate"], "depends_on": []},
            {"id": "s2", "description": "add two and two", "tools": ["calculate"], "depends_on": ["s1"]}
        ]});
        return axum::Json(json!({
            "id": format!("chatcmpl-held-{n}"), "object": "chat.completion", "created": 1, "model": "held",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": plan.to_string()}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        }));
    }
    let _ = gate.called.send(());
    gate.release.notified().await;
    axum::Json(json!({
        "id": format!("chatcmpl-held-{n}"), "object": "chat.completion", "created": 1, "model": "held",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": format!("call-{n}"), "type": "function",
                            "function": {"name": "calculate", "arguments": "{\"expression\":\"1+1\"}"}}]
        }}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    }))
}

impl HeldModel {
    async fn start() -> HeldModel {
        let (called_tx, called) = mpsc::unbounded_channel();
        let gate = Gate {
            calls: Arc::new(AtomicUsize::new(0)),
            called: called_tx,
            release: Arc::new(Notify::new()),
        };
        let (calls, release) = (gate.calls.clone(), gate.release.clone());
        let router = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(gate);
        let server = TestServer::start(router).await;
        HeldModel {
            base_url: format!("{}/v1", server.url),
            calls,
            called,
            release,
            _server: server,
        }
    }

    async fn called(&mut self) {
        match tokio::time::timeout(DEADLINE, self.called.recv()).await {
            Ok(Some(())) => {}
            _ => panic!("the model was not called"),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Agent {
    async fn cancel(&self, id: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(format!("{}/api/v1/tasks/{id}/cancel", self.server.url));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().await.expect("the agent function answers")
    }

    async fn submit(&self, body: Value, key: Option<&str>) -> String {
        let mut request = self.http.post(format!("{}/api/v1/agent", self.server.url)).json(&body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.expect("the agent function answers");
        assert_eq!(response.status(), 202);
        let accepted: Value = response.json().await.expect("json");
        accepted["task_id"].as_str().expect("a task id").to_string()
    }

    /// Waits until the worker has counted `outcome` `n` times.
    async fn wait_worker(&self, outcome: &str, n: u32, key: Option<&str>) {
        let wanted = format!(r#"outcome="{outcome}"}} {n}"#);
        let started = std::time::Instant::now();
        loop {
            let mut request = self.http.get(format!("{}/metrics", self.server.url));
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            let text = request.send().await.expect("metrics").text().await.expect("text");
            if text
                .lines()
                .any(|l| l.starts_with("worker_tasks_total{") && l.ends_with(&wanted))
            {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "{wanted:?} never showed in:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn ok_json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_queued_task_cancelled_never_reaches_the_model() {
    let mut model = HeldModel::start().await;
    let agent = Agent::start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &model.base_url),
        ("LOCAL_QUEUE_CONCURRENCY", "1"),
    ])
    .await;
    // The one slot is taken by a run held in its first model call, so the
    // second task waits, queued, with its delivery on the way.
    let running = agent.submit(json!({"task": "first", "async": true}), None).await;
    model.called().await;
    let queued = agent.submit(json!({"task": "second", "async": true}), None).await;
    assert_eq!(agent.get(&format!("/api/v1/tasks/{queued}")).await["status"], "queued");

    let cancelled = ok_json(agent.cancel(&queued, None).await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["attempts"], 0, "{cancelled}");
    assert!(cancelled["finished_at"].is_string() && cancelled.get("started_at").is_none());
    assert_eq!(agent.get(&format!("/api/v1/tasks/{queued}")).await, cancelled);
    let again = ok_json(agent.cancel(&queued, None).await).await;
    assert_eq!(again, cancelled, "cancelling again answers the same");

    // Free the slot: the queued task's delivery comes now, and is
    // acknowledged without running.
    ok_json(agent.cancel(&running, None).await).await;
    model.release.notify_one();
    agent.wait_worker("cancelled", 1, None).await;
    agent.wait_worker("stopped", 1, None).await;
    assert_eq!(model.calls(), 1, "only the first task called the model");
    assert_eq!(agent.get(&format!("/api/v1/tasks/{queued}")).await, cancelled);
    assert!(agent.runnable().await.is_empty(), "nothing is left to deliver");
}

#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<Bytes>>>);

async fn receive(State(hooks): State<Hooks>, body: Bytes) -> StatusCode {
    hooks.0.lock().expect("lock").push(body);
    StatusCode::OK
}

#[tokio::test]
async fn a_running_task_cancelled_makes_no_further_call_and_calls_back_once() {
    let mut model = HeldModel::start().await;
    let agent = Agent::start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &model.base_url),
        ("WEBHOOK_SECRET", SECRET),
        ("ALLOW_LOOPBACK_CALLBACKS", "true"),
    ])
    .await;
    let hooks = Hooks::default();
    let receiver = TestServer::start(
        axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hooks.clone()),
    )
    .await;
    let id = agent
        .submit(
            json!({"task": "add forever", "async": true, "callback_url": format!("{}/hook", receiver.url)}),
            None,
        )
        .await;
    model.called().await;
    assert_eq!(agent.get(&format!("/api/v1/tasks/{id}")).await["status"], "running");

    let cancelled = ok_json(agent.cancel(&id, None).await).await;
    assert_eq!(
        (&cancelled["status"], &cancelled["attempts"]),
        (&json!("cancelled"), &json!(1)),
        "{cancelled}"
    );
    // The callback went out before the answer.
    let sent = hooks.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1, "one callback");
    let body: Value = serde_json::from_slice(&sent[0]).expect("json");
    assert_eq!(
        cancelled["callback"],
        json!({"status": "delivered", "attempts": 1}),
        "the cancel answers once its callback is delivered"
    );
    let mut without_callback = cancelled.clone();
    if let Some(fields) = without_callback.as_object_mut() {
        fields.remove("callback");
    }
    assert_eq!(
        body, without_callback,
        "the callback is the task as the cancel answered it, without its callback state"
    );

    // The model answers the call it was making with a tool call; the run
    // stops before running it, and calls the model no more.
    model.release.notify_one();
    agent.wait_worker("stopped", 1, None).await;
    assert_eq!(model.calls(), 1, "no model call after the cancel was stored");
    let task = agent.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(task, cancelled, "the stopped run wrote nothing");
    assert_eq!(ok_json(agent.cancel(&id, None).await).await, cancelled);
    assert_eq!(hooks.0.lock().expect("lock").len(), 1, "and no second callback");

    // The event stream ends at once with the cancelled task, and no step.
    let response = agent
        .http
        .get(format!("{}/api/v1/tasks/{id}/events", agent.server.url))
        .send()
        .await
        .expect("events");
    let events = sse_events(
        &tokio::time::timeout(DEADLINE, response.text())
            .await
            .expect("ends")
            .expect("text"),
    );
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["done"], "{events:?}");
    assert_eq!(events[0].1, cancelled);
}

#[tokio::test]
async fn a_multi_agent_run_cancelled_mid_run_starts_no_further_subtask() {
    let mut model = HeldModel::start().await;
    let agent = Agent::start(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &model.base_url)]).await;
    let response = agent
        .http
        .post(format!("{}/api/v1/multi-agent", agent.server.url))
        .json(&json!({"task": "add things, in order", "async": true}))
        .send()
        .await
        .expect("the agent function answers");
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("a task id")
        .to_string();
    // The planner has answered; the first subtask's model call is held.
    model.called().await;
    let cancelled = ok_json(agent.cancel(&id, None).await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    // The held call answers with a tool call; the subtask stops before
    // running it, and the second subtask never starts.
    model.release.notify_one();
    agent.wait_worker("stopped", 1, None).await;
    assert_eq!(model.calls(), 2, "the planner and the first subtask's one call");
    // The subtasks run as child tasks, each with its own events.
    let mut events = Vec::new();
    for task_id in [id.clone(), format!("{id}-0"), format!("{id}-1")] {
        let found = agent.app.stores.tasks.events(&task_id, None, 100).await;
        events.extend(found.expect("the task's events"));
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.data["type"].as_str().unwrap_or("?"),
                e.data["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(kinds.contains(&"subtask_started s1".to_string()), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k.ends_with("s2")), "{kinds:?}");
    let mut task = agent.get(&format!("/api/v1/tasks/{id}")).await;
    // The first subtask's child was cancelled with it; the second, which
    // depends on it, was never made.
    assert_eq!(
        common::children(&task, &["subtask", "status"]),
        [["s1", "cancelled"]],
        "{task}"
    );
    if let Some(fields) = task.as_object_mut() {
        fields.remove("children");
    }
    assert_eq!(task, cancelled, "the stopped run wrote nothing");
}

#[tokio::test]
async fn a_finished_task_is_a_conflict() {
    let agent = Agent::start(&[]).await;
    let id = agent
        .submit(json!({"task": "Calcula 2 + 2", "async": true}), None)
        .await;
    let (task, _) = agent.wait_finished(&id).await;
    assert_eq!(task["status"], "completed", "{task}");
    let (message, _) = error_envelope(agent.cancel(&id, None).await, 409, "conflict").await;
    assert!(message.contains("already finished (completed)"), "{message}");
    assert_eq!(agent.get(&format!("/api/v1/tasks/{id}")).await, task, "left as it was");

    let sync: Value = agent
        .post(json!({"task": "Calcula 3 + 3"}))
        .await
        .json()
        .await
        .expect("json");
    let sync_id = sync["task_id"].as_str().expect("id");
    let (message, _) = error_envelope(agent.cancel(sync_id, None).await, 409, "conflict").await;
    assert!(message.contains("already finished (completed)"), "{message}");
}

#[tokio::test]
async fn another_principals_task_is_not_found() {
    let mut model = HeldModel::start().await;
    let agent = Agent::start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &model.base_url),
        ("API_KEYS", "alice:alice-key,bob:bob-key"),
    ])
    .await;
    let id = agent
        .submit(json!({"task": "mine", "async": true}), Some("alice-key"))
        .await;
    model.called().await;

    let (theirs, _) = error_envelope(agent.cancel(&id, Some("bob-key")).await, 404, "not_found").await;
    let missing = "0b7c6f1e-3f1a-4c2e-9d7a-5e2f8a1b4c3d";
    let (none, _) = error_envelope(agent.cancel(missing, Some("bob-key")).await, 404, "not_found").await;
    assert_eq!(theirs, none.replace(missing, &id), "the same answer as a missing task");
    error_envelope(agent.cancel("a b", Some("bob-key")).await, 400, "invalid_argument").await;
    error_envelope(agent.cancel(&id, None).await, 401, "unauthenticated").await;

    let task = agent
        .http
        .get(format!("{}/api/v1/tasks/{id}", agent.server.url))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .expect("get");
    assert_eq!(ok_json(task).await["status"], "running", "bob's cancel changed nothing");
    let cancelled = ok_json(agent.cancel(&id, Some("alice-key")).await).await;
    assert_eq!(cancelled["status"], "cancelled");
    model.release.notify_one();
    agent.wait_worker("stopped", 1, Some("alice-key")).await;
    assert_eq!(model.calls(), 1);
}
