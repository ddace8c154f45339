//! Usage and cost on chat answers, against local servers speaking Gemini's
//! and OpenAI's wire formats: cached and thinking tokens are read from each
//! provider's own fields, and the cost matches the price table exactly.

use agent_core::testing::{Scripted, TestApp, TestServer};
use chat_function::{FUNCTION, router};
use serde_json::{Value, json};

const GEMINI_PATH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const OPENAI_PATH: &str = "/v1/chat/completions";

/// One chat turn against a function configured with `vars`; the answer.
async fn turn(vars: &[(&str, &str)]) -> Value {
    turn_and_metrics(vars).await.0
}

/// [`turn`], and the function's `/metrics` after it.
async fn turn_and_metrics(vars: &[(&str, &str)]) -> (Value, String) {
    let mut all = vec![("LLM_MAX_RETRIES", "0")];
    all.extend_from_slice(vars);
    let app = TestApp::start(FUNCTION, &all).await;
    let server = TestServer::start(router(&app)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/chat", server.url))
        .json(&json!({"message": "hola"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let answer = response.json().await.expect("json");
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    (answer, metrics)
}

fn openai_answer(model: &str, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "¡Hola!"}, "finish_reason": "stop"}],
        "usage": usage,
    })
}

async fn openai_turn(model: &str, usage: Value, vars: &[(&str, &str)]) -> Value {
    let double = Scripted::start(OPENAI_PATH, vec![(200, openai_answer(model, usage))]).await;
    let base = format!("{}/v1", double.server.url);
    let mut all = vec![("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base)];
    all.extend_from_slice(vars);
    turn(&all).await
}

/// `cost_usd` in micro-dollars, rounded: what "to the micro-dollar" checks.
fn micro_dollars(usage: &Value) -> i64 {
    let dollars = usage["cost_usd"].as_f64().expect("a cost");
    (dollars * 1e6).round() as i64
}

#[tokio::test]
async fn gemini_cached_and_thinking_tokens_are_priced_from_usage_metadata() {
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "¡Hola!"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 12000,
            "cachedContentTokenCount": 10000,
            "candidatesTokenCount": 500,
            "thoughtsTokenCount": 300,
            "totalTokenCount": 12800
        },
        "modelVersion": "gemini-2.5-flash"
    });
    let double = Scripted::start(GEMINI_PATH, vec![(200, answer)]).await;
    let (chat, metrics) = turn_and_metrics(&[
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "k"),
        ("GEMINI_BASE_URL", &double.server.url),
    ])
    .await;
    let usage = &chat["usage"];
    assert_eq!(usage["input_tokens"], 12000, "{usage}");
    assert_eq!(usage["cached_tokens"], 10000);
    assert_eq!(usage["output_tokens"], 800, "thinking is billed as output");
    assert_eq!(usage["thinking_tokens"], 300);
    assert_eq!(usage["model_calls"], 1);
    assert_eq!(chat["tokens_used"], 12800);
    // Flash: 2,000 fresh at $0.30, 10,000 cached at $0.03, 800 out at $2.50
    // per million: 600 + 300 + 2,000 micro-dollars.
    assert_eq!(micro_dollars(usage), 2_900);
    assert_eq!(usage["cost_usd"].as_f64(), Some(0.0029));

    // The same in /metrics: tokens by kind, OpenTelemetry's per-call
    // token usage, and the cost by function and model.
    let series = r#"provider="gemini",model="gemini-2.5-flash""#;
    for line in [
        format!(r#"model_tokens_total{{function="chat_function",{series},kind="input"}} 12000"#),
        format!(r#"model_tokens_total{{function="chat_function",{series},kind="cached"}} 10000"#),
        format!(r#"model_tokens_total{{function="chat_function",{series},kind="output"}} 800"#),
        format!(r#"model_tokens_total{{function="chat_function",{series},kind="thinking"}} 300"#),
        format!(r#"model_cost_usd_total{{function="chat_function",{series}}} 0.0029"#),
        r#"gen_ai_client_token_usage_sum{function="chat_function",gen_ai_provider_name="gemini",gen_ai_request_model="gemini-2.5-flash",gen_ai_token_type="input"} 12000"#.to_string(),
        r#"gen_ai_client_token_usage_count{function="chat_function",gen_ai_provider_name="gemini",gen_ai_request_model="gemini-2.5-flash",gen_ai_token_type="output"} 1"#.to_string(),
        "# TYPE gen_ai_client_token_usage summary".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line}\n{metrics}");
    }
}

#[tokio::test]
async fn openai_cached_and_reasoning_tokens_are_priced_from_their_details() {
    let usage = json!({
        "prompt_tokens": 12000,
        "completion_tokens": 800,
        "total_tokens": 12800,
        "prompt_tokens_details": {"cached_tokens": 10000},
        "completion_tokens_details": {"reasoning_tokens": 300}
    });
    // A dated model name is priced as its model.
    let chat = openai_turn("gpt-4o-mini-2024-07-18", usage, &[]).await;
    let usage = &chat["usage"];
    assert_eq!(
        (
            &usage["input_tokens"],
            &usage["cached_tokens"],
            &usage["output_tokens"],
            &usage["thinking_tokens"]
        ),
        (&json!(12000), &json!(10000), &json!(800), &json!(300)),
        "{usage}"
    );
    // gpt-4o-mini: 2,000 at $0.15, 10,000 cached at $0.075, 800 at $0.60
    // per million: 300 + 750 + 480 micro-dollars.
    assert_eq!(micro_dollars(usage), 1_530);
}

#[tokio::test]
async fn an_unpriced_model_costs_null_and_model_prices_set_one() {
    let usage = json!({"prompt_tokens": 1000, "completion_tokens": 1000});
    let chat = openai_turn("llama3:8b", usage.clone(), &[]).await;
    assert_eq!(chat["usage"]["cost_usd"], Value::Null, "unknown, not free: {chat}");
    assert_eq!(chat["usage"]["input_tokens"], 1000);

    let chat = openai_turn("llama3:8b", usage, &[("MODEL_PRICES", "llama3:8b=0.5/1.5")]).await;
    assert_eq!(micro_dollars(&chat["usage"]), 500 + 1_500);
}

#[tokio::test]
async fn the_offline_model_costs_nothing() {
    let chat = turn(&[]).await;
    let usage = &chat["usage"];
    assert_eq!(usage["cost_usd"].as_f64(), Some(0.0), "{usage}");
    assert_eq!(usage["model_calls"], 1);
    assert_eq!(
        chat["tokens_used"].as_u64(),
        Some(usage["input_tokens"].as_u64().unwrap_or(0) + usage["output_tokens"].as_u64().unwrap_or(0))
    );
}
