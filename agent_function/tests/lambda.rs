//! The agent function's binary under the AWS Lambda runtime, driven by a
//! local Lambda Runtime API: a task's event stream on a `RESPONSE_STREAM`
//! Function URL arrives as the task goes, not when it ends.

use agent_core::testing::lambda::{LambdaRuntime, function_url_event};
use agent_core::testing::{GatedModel, sse_events};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_agent_function");

/// The model double holds its answer until the test has seen the task's
/// first event reach the Runtime API: a function that held the stream back
/// until the task ended would never be released.
#[tokio::test]
async fn response_stream_mode_sends_a_tasks_events_as_they_happen() {
    let mut model = GatedModel::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("lambda.db");
    let mut lambda = LambdaRuntime::start(
        BIN,
        &[
            ("SQLITE_PATH", db.to_str().expect("utf-8")),
            ("LAMBDA_INVOKE_MODE", "RESPONSE_STREAM"),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "test-key"),
            ("OPENAI_BASE_URL", &model.base_url),
            ("OPENAI_MODEL", "gpt-4o-mini"),
            ("LLM_MAX_RETRIES", "0"),
        ],
    )
    .await;

    lambda.invoke(
        "inv-1",
        function_url_event(
            "POST",
            "/api/v1/agent",
            Some(json!({"task": "answer when you may", "async": true})),
        ),
    );
    let prelude = lambda.prelude("inv-1").await;
    assert_eq!(prelude["statusCode"], 202, "{prelude}");
    let accepted: Value = serde_json::from_str(&lambda.rest("inv-1").await).expect("json");
    let id = accepted["task_id"].as_str().expect("a task id");
    // The task runs, in this instance, and waits on the model.
    model.called().await;

    lambda.invoke(
        "inv-2",
        function_url_event("GET", &format!("/api/v1/tasks/{id}/events"), None),
    );
    let prelude = lambda.prelude("inv-2").await;
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream", "{prelude}");
    let mut before = String::new();
    while sse_events(&before).is_empty() {
        let piece = lambda.chunk("inv-2").await.expect("an event, not the stream's end");
        before.push_str(&String::from_utf8_lossy(&piece));
    }
    let first = sse_events(&before);
    assert!(
        first.iter().all(|(name, _)| name != "done"),
        "the task cannot be done before the model answers: {first:?}"
    );
    model.release();

    let after = lambda.rest("inv-2").await;
    let events = sse_events(&format!("{before}{after}"));
    let (name, done) = events.last().expect("events");
    assert_eq!(name, "done", "{events:?}");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["response"], GatedModel::ANSWER, "{done}");
}
