//! The calculator function over real HTTP: answers, and a 400 that says why
//! for everything it will not evaluate.

use agent_core::testing::{TestApp, TestServer};
use serde_json::{Value, json};

async fn start() -> (TestServer, TestApp) {
    let app = TestApp::start(calculator_function::FUNCTION, &[]).await;
    (TestServer::start(calculator_function::router(&app)).await, app)
}

async fn calculate(server: &TestServer, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/tools/calculate", server.url))
        .json(&body)
        .send()
        .await
        .expect("request");
    (response.status().as_u16(), response.json().await.expect("json"))
}

#[tokio::test]
async fn evaluates_and_explains_what_it_refuses() {
    let (server, _dir) = start().await;
    assert_eq!(
        calculate(&server, json!({"expression": "2*(3+4)"})).await,
        (200, json!({"expression": "2*(3+4)", "result": 14}))
    );
    let (status, body) = calculate(&server, json!({"expression": "sqrt(2)"})).await;
    assert_eq!(status, 200);
    assert!((body["result"].as_f64().expect("number") - std::f64::consts::SQRT_2).abs() < 1e-12);

    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let ten_kb = format!("{}1", "1+".repeat(5_000));
    for (expression, expected) in [
        ("1/0", "division by zero"),
        ("__import__('os')", "unexpected character '_' at position 1"),
        ("(1+2", "missing ')'"),
        ("1+2)", "unexpected ')'"),
        ("2^1000000", "too large"),
        (ten_kb.as_str(), "1000 allowed"),
        (deep.as_str(), "1000 allowed"),
    ] {
        let (status, body) = calculate(&server, json!({ "expression": expression })).await;
        assert_eq!(status, 400, "{expression:.40}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{expression:.40}: {message}");
    }
    // 64 levels deep is fine, 65 is refused, both within the length limit.
    let ok = format!("{}1{}", "(".repeat(63), ")".repeat(63));
    assert_eq!(calculate(&server, json!({ "expression": ok })).await.0, 200);
    let too_deep = format!("{}1{}", "(".repeat(400), ")".repeat(400));
    let (status, body) = calculate(&server, json!({ "expression": too_deep })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().expect("message").contains("nest"),
        "{body}"
    );

    let (status, body) = calculate(&server, json!({"expr": "1"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("unknown field `expr`"),
        "{body}"
    );
    let (status, _) = calculate(&server, json!(["1+1"])).await;
    assert_eq!(status, 400);

    // The Cloud Function style alias.
    let alias = reqwest::Client::new()
        .post(&server.url)
        .json(&json!({"expression": "1+1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(alias.json::<Value>().await.expect("json")["result"], 2);
}

/// Deployments set model settings for every service; a tool function has no
/// model and no key mounted, and must start anyway (as a real process).
#[tokio::test]
async fn the_function_starts_with_model_settings_it_does_not_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("calc.db");
    let process = agent_core::testing::Process::start(
        env!("CARGO_BIN_EXE_calculator_function"),
        &[
            ("LLM_PROVIDER", "gemini"),
            ("LLM_TIMEOUT_SECONDS", "not a number"),
            ("SQLITE_PATH", db.to_str().expect("utf-8 path")),
        ],
    )
    .await;
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v1/tools/calculate", process.url))
        .body(r#"{"expression":"6*7"}"#)
        .send()
        .await
        .expect("calculate")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["result"], 42);
    process.kill().await;
}

#[tokio::test]
async fn a_deployed_function_serves_the_console_only_when_told_and_keeps_its_post_root() {
    let client = reqwest::Client::new();
    let (server, _app) = start().await;
    let page = client.get(&server.url).send().await.expect("request");
    assert_eq!(
        page.status(),
        405,
        "GET / is no page by default: POST / is the function"
    );
    let asset = client
        .get(format!("{}/console/main.js", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(asset.status(), 404);

    let app = TestApp::start(calculator_function::FUNCTION, &[("CONSOLE", "on")]).await;
    let server = TestServer::start(calculator_function::router(&app)).await;
    let page = client.get(&server.url).send().await.expect("request");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("default-src 'none'")
    );
    assert!(page.text().await.expect("body").contains("/console/main.js"));
    let asset = client
        .get(format!("{}/console/main.js", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(asset.status(), 200);
    assert_eq!(asset.headers()["content-type"], "text/javascript; charset=utf-8");
    let root = client
        .post(&server.url)
        .json(&json!({"expression": "15 * 23"}))
        .send()
        .await
        .expect("request");
    assert_eq!(root.status(), 200, "POST / still calculates beside the console");
    assert_eq!(root.json::<Value>().await.expect("json")["result"], 345);
}
