//! Asynchronous runs on the embedded defaults: the local queue, durable in
//! SQLite on disk, delivered through the same worker as Pub/Sub pushes.
//! Real HTTP over loopback, including the webhook receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use agent_core::store::TaskRecord;
use agent_core::testing::{TestApp, TestServer, free_port};
use agent_function::FUNCTION;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{Agent, DEADLINE};
use serde_json::{Value, json};

const SECRET: &str = "local-webhook-secret";

/// Checks the status and the envelope's code; returns its message.
async fn error(response: reqwest::Response, status: u16, code: &str) -> String {
    agent_core::testing::error_envelope(response, status, code).await.0
}

#[tokio::test]
async fn an_async_task_is_queued_then_completed_with_its_steps_streamed() {
    let agent = Agent::start(&[]).await;
    let response = agent
        .post(json!({"task": "Calcula 15 * 23 y busca información sobre matemáticas", "async": true}))
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["task_id"].as_str().expect("id").to_string();
    assert_eq!(accepted["events_url"], format!("/api/v1/tasks/{id}/events"));

    let events = agent.events(&id, None).await;
    let (task, _) = agent.wait_finished(&id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["attempts"], 1);
    assert!(
        task["result"]["response"].as_str().expect("response").contains("345"),
        "{task}"
    );
    assert!(
        task["started_at"].is_string() && task["finished_at"].is_string(),
        "{task}"
    );

    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    let steps: Vec<&Value> = events.iter().filter(|(n, _)| n == "step").map(|(_, d)| d).collect();
    let tools: Vec<&str> = steps.iter().filter_map(|s| s["tool"].as_str()).collect();
    assert!(
        tools.contains(&"calculate") && tools.contains(&"search_web"),
        "{tools:?}"
    );
    assert_eq!(steps[0]["attempt"], 1);
    assert_eq!(steps[0]["index"], 0);
    let calc = steps.iter().find(|s| s["tool"] == "calculate").expect("calculate");
    assert_eq!(calc["result"]["result"], 345.0);
    assert_eq!(events.last().expect("done").1["result"], task["result"]);

    // Reconnecting after the first step replays only what follows it.
    let resumed = agent.events(&id, Some("1-0")).await;
    let resumed_steps = resumed.iter().filter(|(n, _)| n == "step").count();
    assert_eq!(resumed_steps, steps.len() - 1);
}

#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<(String, Bytes)>>>);

async fn receive(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    hooks.0.lock().expect("lock").push((signature, body));
    StatusCode::OK
}

#[tokio::test]
async fn a_finished_task_is_posted_once_to_its_callback_signed() {
    let agent = Agent::start(&[("WEBHOOK_SECRET", SECRET), ("ALLOW_LOOPBACK_CALLBACKS", "true")]).await;
    let hooks = Hooks::default();
    let receiver = TestServer::start(
        axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hooks.clone()),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let response = agent
            .post(json!({"task": format!("Calcula {i} + 1"), "async": true, "callback_url": format!("{}/hook", receiver.url)}))
            .await;
        assert_eq!(response.status(), 202);
        ids.push(
            response.json::<Value>().await.expect("json")["task_id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    for id in &ids {
        agent.wait_finished(id).await;
    }
    let started = std::time::Instant::now();
    while hooks.0.lock().expect("lock").len() < ids.len() {
        assert!(started.elapsed() < DEADLINE, "callbacks did not all arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = hooks.0.lock().expect("lock").clone();
    assert_eq!(seen.len(), 5, "one POST per task");
    for (i, id) in ids.iter().enumerate() {
        let (signature, body) = seen
            .iter()
            .find(|(_, body)| serde_json::from_slice::<Value>(body).expect("json")["task_id"] == id.as_str())
            .expect("a callback for each task");
        assert!(agent_core::webhook::verify(SECRET.as_bytes(), body, signature));
        assert!(!agent_core::webhook::verify(b"another secret", body, signature));
        let task: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(task["status"], "completed");
        assert!(
            task["result"]["response"]
                .as_str()
                .expect("text")
                .contains(&format!("{}", i + 1)),
            "{task}"
        );
    }
}

#[tokio::test]
async fn callbacks_into_private_networks_are_refused() {
    let agent = Agent::start(&[("WEBHOOK_SECRET", SECRET), ("ALLOW_LOOPBACK_CALLBACKS", "true")]).await;
    for url in [
        "http://169.254.169.254/",
        "https://169.254.169.254/computeMetadata/v1/",
        "https://metadata.google.internal/",
        "https://10.1.2.3/hook",
        "http://example.com/hook",
        "not a url",
    ] {
        let response = agent
            .post(json!({"task": "x", "async": true, "callback_url": url}))
            .await;
        let message = error(response, 400, "invalid_argument").await;
        assert!(message.contains("callback_url"), "{url}: {message}");
    }
    // Refused before anything was stored or queued.
    let runnable = agent.runnable().await;
    assert!(runnable.is_empty(), "{runnable:?}");
}

#[tokio::test]
async fn a_task_that_cannot_be_published_is_failed_and_answered_503() {
    // Pub/Sub at a port where nothing listens.
    let host = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start(&[
        ("QUEUE", "pubsub"),
        ("PUBSUB_PROJECT", "p"),
        ("PUBSUB_EMULATOR_HOST", &host),
    ])
    .await;
    let response = agent.post(json!({"task": "Calcula 1 + 1", "async": true})).await;
    assert!(response.headers().contains_key("retry-after"));
    let message = error(response, 503, "unavailable").await;
    assert!(message.contains("marked failed"), "{message}");
    let runnable = agent.runnable().await;
    assert!(runnable.is_empty(), "no task is left queued: {runnable:?}");
}

#[tokio::test]
async fn tasks_queued_before_a_restart_are_run_after_it() {
    // A process accepted this task and stopped before running it.
    let app = TestApp::start(FUNCTION, &[]).await;
    let queued = TaskRecord::queued("left-behind-1", "anonymous", "Calcula 6 * 7", "s-restart", 10);
    app.stores.tasks.create(&queued).await.expect("create");
    // The next process on the same store sweeps it up.
    let agent = Agent::on(app).await;
    let (task, _) = agent.wait_finished("left-behind-1").await;
    assert_eq!(task["status"], "completed");
    assert!(
        task["result"]["response"].as_str().expect("text").contains("42"),
        "{task}"
    );
}

#[tokio::test]
async fn events_of_an_unknown_task_are_a_404() {
    let agent = Agent::start(&[]).await;
    let response = agent
        .http
        .get(format!("{}/api/v1/tasks/nope/events", agent.server.url))
        .send()
        .await
        .expect("request");
    let message = error(response, 404, "not_found").await;
    assert!(message.contains("nope"), "{message}");
}

#[tokio::test]
async fn polling_a_task_does_not_use_up_the_agent_rate_limit() {
    let agent = Agent::start(&[("RATE_LIMIT_AGENT", "1/60s"), ("RATE_LIMIT_TASKS", "5/60s")]).await;
    let response = agent.post(json!({"task": "Calcula 1 + 1", "async": true})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("id")
        .to_string();
    let url = format!("{}/api/v1/tasks/{id}", agent.server.url);
    for _ in 0..5 {
        assert_eq!(agent.http.get(&url).send().await.expect("get").status(), 200);
    }
    assert_eq!(
        agent.http.get(&url).send().await.expect("get").status(),
        429,
        "reads have their own limit"
    );
    let second = agent.post(json!({"task": "Calcula 2 + 2", "async": true})).await;
    assert_eq!(second.status(), 429, "runs have theirs");
}

/// A queued run uses the response cache in its owner's scope, unless its
/// request said `"cache": false`, which the task keeps for the worker.
#[tokio::test]
async fn a_queued_run_hits_the_cache_unless_it_said_not_to() {
    let agent = Agent::start(&[("CACHE", "memory")]).await;
    let mut usages = Vec::new();
    for (session, cache) in [("a", None), ("b", None), ("c", Some(false))] {
        let mut body = json!({"task": "Calcula 15 * 23", "session_id": session, "async": true});
        if let Some(cache) = cache {
            body["cache"] = json!(cache);
        }
        let response = agent.post(body).await;
        assert_eq!(response.status(), 202);
        let accepted: Value = response.json().await.expect("json");
        let (task, _) = agent.wait_finished(accepted["task_id"].as_str().expect("id")).await;
        assert_eq!(task["status"], "completed", "{task}");
        usages.push(task["result"]["usage"].clone());
    }
    let calls = |usage: &Value| (usage["model_calls"].as_u64(), usage["cache_hits"].as_u64());
    let first = calls(&usages[0]);
    assert!(first.0 >= Some(2) && first.1 == Some(0), "{}", usages[0]);
    assert_eq!(
        calls(&usages[1]),
        (Some(0), first.0),
        "the repeat was answered by the cache"
    );
    assert_eq!(calls(&usages[2]), (first.0, Some(0)), "cache: false went to the model");
}
