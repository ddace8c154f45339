//! Model routing on agent runs: a run is routed once by its task, reports
//! its route, falls back when the strong tier is down (a local server
//! speaking OpenAI's wire format, where each request names its model), and
//! refuses a model off the allow-list before it stores anything.

mod common;

use agent_core::testing::{Scripted, error_envelope};
use common::Agent;
use serde_json::{Value, json};

fn openai_answer(model: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hecho."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    })
}

#[tokio::test]
async fn a_run_routed_to_a_failing_strong_tier_is_answered_by_the_fast_one() {
    let double = Scripted::start(
        "/v1/chat/completions",
        vec![
            (503, json!({"error": {"message": "overloaded"}})),
            (200, openai_answer("gpt-4o-mini")),
        ],
    )
    .await;
    let base = format!("{}/v1", double.server.url);
    let agent = Agent::start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &base),
        ("LLM_MAX_RETRIES", "0"),
        ("MODEL_ROUTING", "auto"),
    ])
    .await;
    let response = agent.post(json!({"task": "Compara los precios de dos planes"})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert_eq!(answer["route"], json!({"tier": "strong", "reason": "keyword:compar*"}));
    assert_eq!(answer["fallback_from"], "gpt-4o");
    // The stored task's result says the same.
    let task = agent
        .get(&format!("/api/v1/tasks/{}", answer["task_id"].as_str().expect("id")))
        .await;
    assert_eq!(task["result"]["fallback_from"], "gpt-4o", "{task}");
}

#[tokio::test]
async fn an_unlisted_model_is_a_400_queued_or_not() {
    let agent = Agent::start(&[]).await;
    let response = agent.post(json!({"task": "hola", "model": "gpt-5"})).await;
    let (message, _) = error_envelope(response, 400, "invalid_argument").await;
    assert!(message.contains("use one of: fast, strong, offline"), "{message}");
    // The same 400 for a queued task, before anything is stored or queued.
    let response = agent
        .post(json!({"task": "hola", "model": "gpt-5", "async": true}))
        .await;
    let (queued_message, _) = error_envelope(response, 400, "invalid_argument").await;
    assert_eq!(queued_message, message);
    assert!(
        agent.get("/api/v1/tasks").await["tasks"]
            .as_array()
            .expect("tasks")
            .is_empty()
    );

    let answer: Value = agent
        .post(json!({"task": "hola", "model": "strong"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["route"], json!({"tier": "strong", "reason": "requested"}));
    assert!(answer.get("fallback_from").is_none(), "{answer}");
    let models = agent.get("/api/v1/models").await;
    assert_eq!(models["provider"], "offline");
}

/// A queued task keeps the model it asked for and the worker runs it on
/// that one: routed by the rules, this task would go to the fast tier.
#[tokio::test]
async fn a_queued_task_runs_on_the_model_it_asked_for() {
    let agent = Agent::start(&[("MODEL_ROUTING", "auto")]).await;
    let response = agent
        .post(json!({"task": "hola", "model": "strong", "async": true}))
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.expect("json");
    let id = accepted["task_id"].as_str().expect("task_id").to_string();
    let (task, _) = agent.wait_finished(&id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        (&task["kind"], &task["model"]),
        (&json!("agent"), &json!("strong")),
        "{task}"
    );
    assert_eq!(
        task["result"]["route"],
        json!({"tier": "strong", "reason": "requested"}),
        "{task}"
    );

    // Without a model, the same task is routed by the rules: fast.
    let accepted: Value = agent
        .post(json!({"task": "hola", "async": true}))
        .await
        .json()
        .await
        .expect("json");
    let (task, _) = agent
        .wait_finished(accepted["task_id"].as_str().expect("task_id"))
        .await;
    assert_eq!(task["result"]["route"]["tier"], "fast", "{task}");
    assert!(task.get("model").is_none(), "{task}");
}

#[tokio::test]
async fn a_queued_task_is_routed_by_the_rules() {
    let agent = Agent::start(&[("MODEL_ROUTING", "auto")]).await;
    let accepted: Value = agent
        .post(json!({"task": "Analiza 15 * 23", "async": true}))
        .await
        .json()
        .await
        .expect("json");
    let id = accepted["task_id"].as_str().expect("task_id").to_string();
    let (task, _) = agent.wait_finished(&id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["result"]["route"],
        json!({"tier": "strong", "reason": "keyword:analiz*"}),
        "{task}"
    );
}
