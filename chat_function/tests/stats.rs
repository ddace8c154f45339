//! `GET /api/v1/stats`: after chat turns on the offline model, the caller's
//! figures today and over the range count them exactly (read from the
//! store, so a second function on the same file answers the same), and
//! another principal sees only zeros.

use agent_core::testing::{TestApp, TestServer};
use chat_function::{FUNCTION, router};
use serde_json::{Value, json};

const KEYS: &str = "alice:alice-key-0123456789,bob:bob-key-0123456789";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";
const TURNS: u64 = 3;

async fn get(url: &str, key: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What every day and range of a principal with nothing counted shows.
fn nothing(stats: &Value) {
    for field in [
        "requests",
        "model_calls",
        "cache_hits",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "thinking_tokens",
    ] {
        assert_eq!(stats[field], 0, "{field} in {stats}");
    }
    assert_eq!(stats["cache_hit_rate"], Value::Null, "no call, no rate: {stats}");
    assert_eq!((&stats["cost_usd"], &stats["saved_usd"]), (&json!(0.0), &json!(0.0)));
}

#[tokio::test]
async fn stats_count_the_callers_turns_and_no_one_elses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stats.db");
    let path = path.to_string_lossy();
    let vars = [
        ("API_KEYS", KEYS),
        ("SQLITE_PATH", &*path),
        ("MODEL_PRICES", "offline=1.25/2.5"),
    ];
    let app = TestApp::start(FUNCTION, &vars).await;
    let server = TestServer::start(router(&app)).await;
    let http = reqwest::Client::new();

    let (status, before) = get(&server.url, BOB, "/api/v1/stats").await;
    assert_eq!(status, 200, "{before}");
    nothing(&before["today"]);
    nothing(&before["range"]);
    assert_eq!(before["by_model"], json!([]));

    let (mut input, mut output, mut cost) = (0, 0, 0.0);
    for i in 0..TURNS {
        let answer: Value = http
            .post(format!("{}/api/v1/chat", server.url))
            .header("X-API-Key", ALICE)
            .json(&json!({"message": format!("what is {i} plus {i}?"), "session_id": "stats"}))
            .send()
            .await
            .expect("chat")
            .json()
            .await
            .expect("json");
        let usage = &answer["usage"];
        assert_eq!(usage["model_calls"], 1, "{answer}");
        input += usage["input_tokens"].as_u64().expect("input tokens");
        output += usage["output_tokens"].as_u64().expect("output tokens");
        cost += usage["cost_usd"].as_f64().expect("a cost");
    }

    // A second function on the same file: the figures are the store's,
    // not a process's.
    let other = TestApp::start(FUNCTION, &vars).await;
    let other = TestServer::start(router(&other)).await;
    for url in [&server.url, &other.url] {
        let (status, stats) = get(url, ALICE, "/api/v1/stats").await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(stats["from"], stats["to"], "today by default: {stats}");
        assert_eq!(stats["today"]["date"], stats["from"], "{stats}");
        for figures in [&stats["today"], &stats["range"], &stats["by_model"][0]] {
            assert_eq!(
                (
                    &figures["requests"],
                    &figures["model_calls"],
                    &figures["cache_hits"],
                    &figures["cache_hit_rate"]
                ),
                (&json!(TURNS), &json!(TURNS), &json!(0), &json!(0.0)),
                "{stats}"
            );
            assert_eq!(
                (&figures["input_tokens"], &figures["output_tokens"]),
                (&json!(input), &json!(output)),
                "{stats}"
            );
            let shown = figures["cost_usd"].as_f64().expect("a cost");
            assert!(shown > 0.0 && (shown - cost).abs() < 1e-9, "{shown} against {cost}");
            assert_eq!(figures["saved_usd"], json!(0.0), "{stats}");
        }
        assert_eq!(stats["by_model"][0]["model"], "offline", "{stats}");
        assert_eq!(stats["by_model"].as_array().map(Vec::len), Some(1), "{stats}");
    }

    // A range that ends before today: today's figures still, none in it.
    let (status, past) = get(&server.url, ALICE, "/api/v1/stats?from=2020-01-01&to=2020-12-31").await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["today"]["requests"], TURNS, "{past}");
    nothing(&past["range"]);
    assert_eq!(past["by_model"], json!([]));

    // Bob spent nothing, whatever alice did.
    let (status, after) = get(&server.url, BOB, "/api/v1/stats").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before, "alice's figures are not bob's");

    for bad in [
        "/api/v1/stats?from=yesterday",
        "/api/v1/stats?to=2026-02-30",
        "/api/v1/stats?from=2026-12-02&to=2026-12-01",
        "/api/v1/stats?from=2020-01-01&to=2026-12-01",
    ] {
        let (status, body) = get(&server.url, ALICE, bad).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_argument")),
            "{bad}: {body}"
        );
    }

    // Documented with the other routes.
    let (status, openapi) = get(&server.url, ALICE, "/openapi.json").await;
    assert_eq!(status, 200);
    let operation = &openapi["paths"]["/api/v1/stats"]["get"];
    assert_eq!(operation["operationId"], "get_stats", "{operation}");
}
