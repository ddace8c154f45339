//! The fault matrix of the agent function, at the service level: the real
//! router on loopback, on SQLite on disk, in front of a local server that
//! speaks Gemini's `generateContent` wire format and counts its calls
//! (`agent_core::testing::Scripted`: replies in order, the last repeats).
//! Each test reads the tasks table itself, so "no task left half-done"
//! means what the database holds, whatever the API shows.
//!
//! Settings: `LLM_MAX_RETRIES=2` (3 model calls per failing run),
//! `LLM_TIMEOUT_SECONDS=1`, `TASK_MAX_ATTEMPTS=2`.
//!
//! | fault | expected outcome | test |
//! |---|---|---|
//! | sync run, model 503 forever | 503 `unavailable`, `Retry-After: 5`; 3 model calls; the task is `failed` (not left `running`), nothing runnable | `a_sync_run_on_a_failing_model_fails_its_task_and_the_next_run_succeeds` |
//! | sync run, model answers 200 with JSON that is not an answer | 502 `upstream_error`; 1 call; task `failed` | `a_sync_run_on_a_failing_model_fails_its_task_and_the_next_run_succeeds` |
//! | async run (local queue), model 429 forever (hint 0.1s) | 202, then the task is `failed` after `TASK_MAX_ATTEMPTS` deliveries: exactly 2 x 3 = 6 model calls, and no further delivery | `an_async_task_on_a_refusing_model_fails_after_bounded_attempts` |
//! | Pub/Sub unreachable at publish (`QUEUE=pubsub`, emulator host on a closed port) | 503 `unavailable` with `Retry-After: 5`, after at most the publish timeout (10 s: the client retries a refused connection until then); the task is recorded `failed`; nothing runnable; the model is never called; sync runs and `/health` still served | `pubsub_unreachable_at_publish_fails_the_task_and_the_service_keeps_serving` |
//!
//! The chat function's matrix (model faults, streams, the store, bodies,
//! slow clients) is `chat_function/tests/faults.rs`.

mod common;

use std::time::{Duration, Instant};

use agent_core::testing::{Scripted, error_envelope as envelope, free_port};
use common::Agent;
use serde_json::{Value, json};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

fn answer(text: &str) -> (u16, Value) {
    (
        200,
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
            "modelVersion": "gemini-2.5-flash"
        }),
    )
}

fn overloaded() -> (u16, Value) {
    (
        503,
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
    )
}

fn quota_exhausted() -> (u16, Value) {
    (
        429,
        json!({"error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.1s"}]
        }}),
    )
}

/// A task as the database holds it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    status: String,
    attempts: u32,
    error: Option<String>,
}

/// The agent function (the shared harness) in front of a scripted model.
struct Faults {
    agent: Agent,
    model: Scripted,
}

impl std::ops::Deref for Faults {
    type Target = Agent;

    fn deref(&self) -> &Agent {
        &self.agent
    }
}

impl Faults {
    async fn start(replies: Vec<(u16, Value)>, extra: &[(&str, &str)]) -> Faults {
        let model = Scripted::start(GENERATE, replies).await;
        let mut vars = vec![
            ("LLM_PROVIDER", "gemini"),
            ("GEMINI_API_KEY", "faults-test-key"),
            ("GEMINI_BASE_URL", model.server.url.as_str()),
            ("LLM_MAX_RETRIES", "2"),
            ("LLM_TIMEOUT_SECONDS", "1"),
            ("TASK_MAX_ATTEMPTS", "2"),
            ("RATE_LIMIT_AGENT", "off"),
        ];
        vars.extend_from_slice(extra);
        Faults {
            agent: Agent::start(&vars).await,
            model,
        }
    }

    fn model_calls(&self) -> usize {
        self.model.requests().len()
    }

    /// Every task in the database, oldest first.
    fn tasks(&self) -> Vec<Row> {
        let conn =
            rusqlite::Connection::open_with_flags(self.app.sqlite_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open the database");
        let mut statement = conn
            .prepare("SELECT id, status, attempts, error FROM tasks ORDER BY created_at, rowid")
            .expect("prepare");
        statement
            .query_map([], |row| {
                Ok(Row {
                    id: row.get(0)?,
                    status: row.get(1)?,
                    attempts: row.get(2)?,
                    error: row.get(3)?,
                })
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }
}

#[tokio::test]
async fn a_sync_run_on_a_failing_model_fails_its_task_and_the_next_run_succeeds() {
    let agent = Faults::start(
        vec![
            overloaded(),
            overloaded(),
            overloaded(),
            (200, json!({"unexpected": "shape"})),
            answer("The agent is back."),
        ],
        &[],
    )
    .await;

    let (message, retry_after) = envelope(
        agent.post(json!({"task": "Summarise the news"})).await,
        503,
        "unavailable",
    )
    .await;
    assert!(message.contains("The model is overloaded"), "{message}");
    assert_eq!(retry_after, Some(5));
    assert_eq!(agent.model_calls(), 3, "one call and two retries");
    let tasks = agent.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].status, "failed", "not left running: {tasks:?}");
    assert!(
        tasks[0].error.as_deref().unwrap_or_default().contains("overloaded"),
        "{tasks:?}"
    );

    let (message, retry_after) = envelope(
        agent.post(json!({"task": "Summarise the news"})).await,
        502,
        "upstream_error",
    )
    .await;
    assert!(message.contains("no candidates"), "{message}");
    assert_eq!(retry_after, None);
    assert_eq!(agent.model_calls(), 4, "a malformed answer is not retried");
    let tasks = agent.tasks();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1].status, "failed", "{tasks:?}");
    assert!(agent.runnable().await.is_empty(), "no failed run is left for a queue");

    // The same server runs the next task.
    let ok = agent.post(json!({"task": "Summarise the news"})).await;
    assert_eq!(ok.status(), 200);
    let ok: Value = ok.json().await.expect("json");
    assert_eq!(ok["response"], "The agent is back.");
    assert_eq!(agent.model_calls(), 5);
    let tasks = agent.tasks();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[2].status, "completed");
    assert_eq!(tasks[2].id, ok["task_id"].as_str().expect("task_id"));
}

#[tokio::test]
async fn an_async_task_on_a_refusing_model_fails_after_bounded_attempts() {
    // Six refusals: 2 deliveries (TASK_MAX_ATTEMPTS) of 3 calls each.
    let mut replies = vec![quota_exhausted(); 6];
    replies.push(answer("Done at last."));
    let agent = Faults::start(replies, &[]).await;

    let accepted = agent.post(json!({"task": "Summarise the news", "async": true})).await;
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.expect("json");
    let id = accepted["task_id"].as_str().expect("task_id").to_string();
    let (task, _) = agent.wait_finished(&id).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["attempts"], 2, "{task}");
    let error = task["error"].as_str().expect("error");
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    assert!(error.contains("Resource has been exhausted"), "{error}");
    assert_eq!(agent.model_calls(), 6, "2 deliveries x (1 call + 2 retries)");

    // Nothing delivers it again: longer than the local queue's 1 s backoff.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(agent.model_calls(), 6, "a failed task is not run again");
    assert!(agent.runnable().await.is_empty());
    let tasks = agent.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0].status.as_str(), tasks[0].attempts), ("failed", 2));

    // The queue goes on running new tasks.
    let accepted: Value = agent
        .post(json!({"task": "Summarise the news", "async": true}))
        .await
        .json()
        .await
        .expect("json");
    let (next, _) = agent
        .wait_finished(accepted["task_id"].as_str().expect("task_id"))
        .await;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(next["result"]["response"], "Done at last.");
    assert_eq!(agent.model_calls(), 7);
}

#[tokio::test]
async fn pubsub_unreachable_at_publish_fails_the_task_and_the_service_keeps_serving() {
    // Pub/Sub at a port where nothing listens.
    let host = format!("127.0.0.1:{}", free_port());
    let agent = Faults::start(
        vec![answer("Sync runs need no queue.")],
        &[
            ("QUEUE", "pubsub"),
            ("PUBSUB_PROJECT", "p"),
            ("PUBSUB_EMULATOR_HOST", &host),
            ("WEBHOOK_SECRET", "faults-secret"),
            ("ALLOW_LOOPBACK_CALLBACKS", "true"),
        ],
    )
    .await;

    let started = Instant::now();
    let callback_url = format!("http://127.0.0.1:{}/hook", free_port());
    let (message, retry_after) = envelope(
        agent
            .post(json!({"task": "Summarise the news", "async": true, "callback_url": callback_url}))
            .await,
        503,
        "unavailable",
    )
    .await;
    // Bounded by the 10 s publish timeout; a generous margin for a busy
    // machine, since this checks for a hang, not a speed.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the publish timeout"
    );
    assert!(
        message.contains("could not be queued") && message.contains("marked failed"),
        "{message}"
    );
    assert_eq!(retry_after, Some(5));
    let tasks = agent.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].status, "failed", "recorded failed, not left queued: {tasks:?}");
    assert!(message.contains(&tasks[0].id), "the answer names the task: {message}");
    assert!(
        tasks[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("could not be queued"),
        "{tasks:?}"
    );
    assert!(agent.runnable().await.is_empty(), "nothing runnable is left");
    assert_eq!(agent.model_calls(), 0, "an unqueued task never runs");
    // The 503 was the client's news: the task owes no callback.
    let task = agent.get(&format!("/api/v1/tasks/{}", tasks[0].id)).await;
    assert_eq!(task["callback"]["status"], "failed", "{task}");
    assert_eq!(task["callback"]["attempts"], 0, "{task}");

    // The service keeps serving: health, and a synchronous run.
    let health = agent
        .http
        .get(format!("{}/health", agent.server.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let ok = agent.post(json!({"task": "Summarise the news"})).await;
    assert_eq!(ok.status(), 200);
    let ok: Value = ok.json().await.expect("json");
    assert_eq!(ok["response"], "Sync runs need no queue.");
    assert_eq!(agent.model_calls(), 1);
    let statuses: Vec<String> = agent.tasks().into_iter().map(|t| t.status).collect();
    assert_eq!(statuses, ["failed", "completed"]);
}
