//! Model routing on chat turns, against a local server speaking OpenAI's
//! wire format (one path for every model; the model is named in the body,
//! so the requests show which tier was called): the strong tier's failure
//! falls back to the fast tier, a model off the allow-list is a 400, and
//! `GET /api/v1/models` says what answers and how it is chosen.

use agent_core::testing::{Scripted, TestApp, TestServer, error_envelope};
use chat_function::{FUNCTION, router};
use serde_json::{Value, json};

const OPENAI_PATH: &str = "/v1/chat/completions";

fn openai_answer(model: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Listo."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    })
}

fn unavailable() -> Value {
    json!({"error": {"message": "overloaded", "type": "server_error"}})
}

/// The chat function on `vars` (no retries), served.
async fn serve(vars: &[(&str, &str)]) -> (TestApp, TestServer) {
    let mut all = vec![("LLM_MAX_RETRIES", "0")];
    all.extend_from_slice(vars);
    let app = TestApp::start(FUNCTION, &all).await;
    let server = TestServer::start(router(&app)).await;
    (app, server)
}

async fn post_chat(server: &TestServer, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/api/v1/chat", server.url))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn get_text(server: &TestServer, path: &str) -> String {
    reqwest::get(format!("{}{path}", server.url))
        .await
        .expect("request")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_strong_model_that_answers_503_falls_back_to_the_fast_model() {
    let double = Scripted::start(
        OPENAI_PATH,
        vec![(503, unavailable()), (200, openai_answer("gpt-4o-mini"))],
    )
    .await;
    let base = format!("{}/v1", double.server.url);
    let (_app, server) = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &base),
        ("MODEL_ROUTING", "auto"),
    ])
    .await;

    let response = post_chat(&server, json!({"message": "Analiza las ventas del trimestre"})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["response"], "Listo.");
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert_eq!(answer["route"], json!({"tier": "strong", "reason": "keyword:analiz*"}));
    assert_eq!(answer["fallback_from"], "gpt-4o");

    let called: Vec<Value> = double.requests().iter().map(|r| r["model"].clone()).collect();
    assert_eq!(called, [json!("gpt-4o"), json!("gpt-4o-mini")]);

    let metrics = get_text(&server, "/metrics").await;
    assert!(
        metrics.contains(r#"model_routes_total{function="chat_function",tier="strong",reason_kind="keyword"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"model_fallbacks_total{function="chat_function",from="gpt-4o",to="gpt-4o-mini"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_fallback_the_strong_tiers_failure_is_the_answer() {
    let double = Scripted::start(OPENAI_PATH, vec![(503, unavailable())]).await;
    let base = format!("{}/v1", double.server.url);
    let (_app, server) = serve(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &base),
        ("MODEL_FALLBACK", "off"),
    ])
    .await;
    let response = post_chat(&server, json!({"message": "hola", "model": "strong"})).await;
    error_envelope(response, 503, "unavailable").await;
    assert_eq!(double.requests().len(), 1);
}

#[tokio::test]
async fn a_request_picks_a_tier_and_routing_off_keeps_the_configured_model() {
    let double = Scripted::start(OPENAI_PATH, vec![(200, openai_answer("gpt-4o-mini"))]).await;
    let base = format!("{}/v1", double.server.url);
    let (_app, server) = serve(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base)]).await;

    // Off by default: a keyword changes nothing.
    let answer: Value = post_chat(&server, json!({"message": "Explain everything"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["route"], json!({"tier": "fast", "reason": "default"}));
    assert!(answer.get("fallback_from").is_none(), "{answer}");

    let answer: Value = post_chat(&server, json!({"message": "hi", "model": "strong"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["route"], json!({"tier": "strong", "reason": "requested"}));
    let called: Vec<Value> = double.requests().iter().map(|r| r["model"].clone()).collect();
    assert_eq!(called, [json!("gpt-4o-mini"), json!("gpt-4o")]);
}

#[tokio::test]
async fn an_unlisted_model_is_a_400_that_lists_the_allowed_names() {
    let (_app, server) = serve(&[
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "k"),
        ("GEMINI_BASE_URL", "http://127.0.0.1:9"),
        ("MODEL_ALLOWED", "gemini-2.5-flash,gemini-2.5-pro,gemini-2.0-flash"),
    ])
    .await;
    let response = post_chat(&server, json!({"message": "hola", "model": "gemini-ultra"})).await;
    let (message, _) = error_envelope(response, 400, "invalid_argument").await;
    assert!(
        message.contains("fast, strong, gemini-2.5-flash, gemini-2.5-pro, gemini-2.0-flash"),
        "{message}"
    );
    assert!(message.contains("gemini-ultra"), "{message}");
}

#[tokio::test]
async fn get_models_says_what_answers_at_what_price_and_how_it_is_chosen() {
    let (_app, server) = serve(&[
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "k"),
        ("MODEL_ROUTING", "auto"),
        ("ROUTING_MIN_CHARS", "500"),
    ])
    .await;
    let models: Value = serde_json::from_str(&get_text(&server, "/api/v1/models").await).expect("json");
    assert_eq!(models["provider"], "gemini");
    assert_eq!(models["routing"], "auto");
    assert_eq!(
        (models["fast"].as_str(), models["strong"].as_str()),
        (Some("gemini-2.5-flash"), Some("gemini-2.5-pro"))
    );
    assert_eq!(
        models["allowed"],
        json!(["fast", "strong", "gemini-2.5-flash", "gemini-2.5-pro"])
    );
    assert_eq!(models["fallback"], true);
    let tiers: Vec<(&str, &str)> = models["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| (m["tier"].as_str().unwrap_or(""), m["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(tiers, [("fast", "gemini-2.5-flash"), ("strong", "gemini-2.5-pro")]);
    assert!(
        models["models"][1]["price"]["input_per_million"].as_f64().is_some(),
        "{models}"
    );
    assert_eq!(models["rules"]["applies"], true);
    assert_eq!(models["rules"]["min_chars"], 500);
    let keywords = models["rules"]["keywords"].as_array().expect("keywords");
    for keyword in ["analy*", "analiz*", "analis*", "分析"] {
        assert!(keywords.contains(&json!(keyword)), "{keyword}");
    }
}

#[tokio::test]
async fn when_both_tiers_fail_the_answer_is_the_routed_models_error() {
    let double = Scripted::start(OPENAI_PATH, vec![(503, unavailable())]).await;
    let base = format!("{}/v1", double.server.url);
    let (_app, server) = serve(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base)]).await;
    let response = post_chat(&server, json!({"message": "hola"})).await;
    error_envelope(response, 503, "unavailable").await;
    let called: Vec<Value> = double.requests().iter().map(|r| r["model"].clone()).collect();
    assert_eq!(called, [json!("gpt-4o-mini"), json!("gpt-4o")]);
}

#[tokio::test]
async fn a_second_provider_answers_when_the_first_is_down() {
    let gemini = Scripted::start(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        vec![(
            503,
            json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
        )],
    )
    .await;
    let openai = Scripted::start(OPENAI_PATH, vec![(200, openai_answer("gpt-4o-mini"))]).await;
    let openai_base = format!("{}/v1", openai.server.url);
    let (_app, server) = serve(&[
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "k"),
        ("GEMINI_BASE_URL", &gemini.server.url),
        // One Gemini tier, so the chain is Gemini, then OpenAI.
        ("MODEL_STRONG", "gemini-2.5-flash"),
        ("FALLBACK_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &openai_base),
    ])
    .await;
    let response = post_chat(&server, json!({"message": "hola"})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert_eq!(answer["fallback_from"], "gemini-2.5-flash");
    assert_eq!((gemini.requests().len(), openai.requests().len()), (1, 1));

    let models: Value = serde_json::from_str(&get_text(&server, "/api/v1/models").await).expect("json");
    assert_eq!(
        (models["fallback_provider"].as_str(), models["fallback_model"].as_str()),
        (Some("openai"), Some("gpt-4o-mini"))
    );
}
