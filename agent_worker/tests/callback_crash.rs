//! A worker killed between storing a task's outcome and sending its
//! callback: `agent_function` (in process) on the Firestore emulator
//! publishes to the Pub/Sub emulator, whose push subscription delivers to
//! an `agent_worker` process started with the test-only fault point
//! `AGENT_CORE_TEST_ABORT_AT=finished-before-callback`, so it aborts right
//! after the commit that stored `completed` and `callback: pending`. A new
//! worker (without the fault point) takes its place on the same port;
//! Pub/Sub redelivers the unacknowledged message, and the redelivery, which
//! finds the task finished, sends the callback that was owed. Exactly one
//! signed callback arrives, and the task shows it `delivered`.

mod common;

use std::time::{Duration, Instant};

use agent_core::testing::{self, CallbackReceiver, Process, TestServer};
use agent_core::webhook;
use agent_core::worker::{ABORT_AT_VARIABLE, FINISHED_BEFORE_CALLBACK};
use axum::Router;
use serde_json::{Value, json};

const WORKER: &str = env!("CARGO_BIN_EXE_agent_worker");
const SECRET: &str = "whsec-crash-secret";
/// A bound for failure messages, not a measurement.
const DEADLINE: Duration = Duration::from_secs(120);

/// A Gemini `generateContent` double that answers at once.
async fn generate() -> axum::Json<Value> {
    axum::Json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": "4"}]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6},
        "modelVersion": "gemini-double"
    }))
}

async fn wait_for<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !ready().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn a_worker_killed_between_finishing_and_calling_back_sends_exactly_one_signed_callback() {
    let common::Names {
        suffix,
        project,
        topic,
        admin,
    } = common::names("crash").await;

    let model = TestServer::start(Router::new().route("/v1beta/models/{*method}", axum::routing::post(generate))).await;
    let hooks = CallbackReceiver::start().await;
    let firestore = testing::firestore_emulator_host();
    let vars = [
        ("STORE", "firestore"),
        ("FIRESTORE_PROJECT", project.as_str()),
        ("FIRESTORE_EMULATOR_HOST", firestore.as_str()),
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "test-key"),
        ("GEMINI_BASE_URL", model.url.as_str()),
        ("LLM_MAX_RETRIES", "0"),
        ("WEBHOOK_SECRET", SECRET),
        ("ALLOW_LOOPBACK_CALLBACKS", "true"),
        ("LOG_FORMAT", "json"),
    ];
    let port = testing::free_port();
    let mut doomed_vars = vars.to_vec();
    doomed_vars.push((ABORT_AT_VARIABLE, FINISHED_BEFORE_CALLBACK));
    let mut doomed = Process::start_on(WORKER, port, &doomed_vars).await;
    admin
        .create_push_subscription(&format!("push-crash-{suffix}"), &topic, &format!("{}/", doomed.url))
        .await;

    let (_app, agent) = common::agent(&project, &topic, SECRET).await;
    let http = reqwest::Client::new();
    let task = |id: String| {
        let (http, url) = (http.clone(), agent.url.clone());
        async move {
            let response = http
                .get(format!("{url}/api/v1/tasks/{id}"))
                .send()
                .await
                .expect("get task");
            response.json::<Value>().await.expect("json")
        }
    };

    let response = http
        .post(format!("{}/api/v1/agent", agent.url))
        .json(&json!({"task": "2+2?", "async": true, "callback_url": hooks.url}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("task_id")
        .to_string();

    // The worker runs the task, stores its outcome and aborts.
    let exit = tokio::time::timeout(DEADLINE, doomed.child.wait())
        .await
        .expect("the worker aborts at the fault point")
        .expect("its exit status");
    assert!(!exit.success(), "{exit:?}");
    let stored = task(id.clone()).await;
    assert_eq!(stored["status"], "completed", "{stored}");
    assert_eq!(
        stored["callback"],
        json!({"status": "pending", "attempts": 0}),
        "the outcome and the owed callback were stored together: {stored}"
    );
    assert!(hooks.all().is_empty(), "no callback went out before the crash");

    // A new worker where the first one was; Pub/Sub redelivers to it.
    let worker = Process::start_on(WORKER, port, &vars).await;
    wait_for("the callback to be recorded delivered", || {
        let task = task(id.clone());
        async move { task.await["callback"]["status"] == "delivered" }
    })
    .await;
    // And the redelivery was acknowledged, so nothing more will come.
    wait_for("the redelivery to be acknowledged", || {
        let (http, url) = (http.clone(), worker.url.clone());
        async move {
            let text = match http.get(format!("{url}/metrics")).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => return false,
            };
            text.lines()
                .any(|l| l.starts_with("worker_deliveries_total{") && l.contains(r#"outcome="done""#))
        }
    })
    .await;

    let finished = task(id.clone()).await;
    assert_eq!(
        finished["callback"],
        json!({"status": "delivered", "attempts": 1}),
        "{finished}"
    );
    let hooks = hooks.all();
    assert_eq!(hooks.len(), 1, "exactly one callback: {hooks:?}");
    let hook = &hooks[0];
    assert_eq!((hook.task_id.as_str(), hook.attempt.as_str()), (id.as_str(), "1"));
    assert!(
        webhook::verify(SECRET.as_bytes(), &hook.body, &hook.signature),
        "the callback is signed"
    );
    let body: Value = serde_json::from_slice(&hook.body).expect("the callback is JSON");
    let mut expected = finished.clone();
    if let Some(fields) = expected.as_object_mut() {
        fields.remove("callback");
    }
    assert_eq!(body, expected, "the callback is the finished task");
    worker.kill().await;
}
