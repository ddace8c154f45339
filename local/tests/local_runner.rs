//! The README's first command, as a process: it prints where it listens and
//! what it serves, and answers the chat routes on one port.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    let response = http.get(url).send().await.expect("GET");
    response.json().await.expect("a JSON answer")
}

async fn post_json(http: &reqwest::Client, url: impl reqwest::IntoUrl, body: &'static str) -> Value {
    let response = http.post(url).body(body).send().await.expect("POST");
    response.json().await.expect("a JSON answer")
}

#[tokio::test]
async fn local_serves_every_function_on_one_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = agent_core::testing::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_clear()
        .env("PORT", port.to_string())
        // Start-up warnings (no model, no keys) would come first on stdout.
        .env("RUST_LOG", "error")
        // The default SQLITE_PATH is relative: run where it may create it.
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn local");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("a banner in time")
        .expect("read")
        .expect("a line");
    assert!(first.contains(&format!("http://127.0.0.1:{port}")), "{first}");
    assert!(first.contains("offline"), "{first}");
    let mut banner = vec![first];
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_millis(200), stdout.next_line()).await {
        banner.push(line);
    }
    let banner = banner.join("\n");
    for route in [
        "POST   /api/v1/chat",
        "GET    /api/v1/sessions/{id}",
        "POST   /api/v1/agent",
        "GET    /api/v1/tasks/{id}",
        "GET    /api/v1/tasks/{id}/events",
        "POST   /api/v1/tools/search",
        "POST   /api/v1/tools/calculate",
        "GET    /health",
    ] {
        assert!(banner.contains(route), "{banner}");
    }

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let health = get_json(&http, format!("{base}/health")).await;
    assert_eq!(health["function"], "local");

    let chat = post_json(&http, format!("{base}/api/v1/chat"), r#"{"message":"hello"}"#).await;
    assert!(chat["tokens_used"].as_u64().expect("tokens") > 0);
    let sid = chat["session_id"].as_str().expect("session id");
    let session = get_json(&http, format!("{base}/api/v1/sessions/{sid}")).await;
    assert_eq!(session["messages"].as_array().expect("messages").len(), 2);
    assert!(
        dir.path().join(".agent-data/agent.db").exists(),
        "the embedded store is under .agent-data/"
    );

    // The agent, with the tools in the same process.
    let run = post_json(
        &http,
        format!("{base}/api/v1/agent"),
        r#"{"task":"Calcula 15 * 23 y busca información sobre matemáticas"}"#,
    )
    .await;
    assert!(run["response"].as_str().expect("response").contains("345"), "{run}");
    let tools: Vec<&str> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["tool"].as_str().expect("tool"))
        .collect();
    assert_eq!(tools, ["calculate", "search_web"]);
    let task = get_json(
        &http,
        format!("{base}/api/v1/tasks/{}", run["task_id"].as_str().expect("task id")),
    )
    .await;
    assert_eq!(task["status"], "completed");
    let calc = post_json(
        &http,
        format!("{base}/api/v1/tools/calculate"),
        r#"{"expression":"2*(3+4)"}"#,
    )
    .await;
    assert_eq!(calc["result"], 14);

    // The same task asynchronously, through the local queue: 202 and
    // queued, then completed; its events show the steps.
    let accepted = http
        .post(format!("{base}/api/v1/agent"))
        .body(r#"{"task":"Calcula 15 * 23 y busca información sobre matemáticas","async":true}"#)
        .send()
        .await
        .expect("agent async");
    assert_eq!(accepted.status().as_u16(), 202);
    let accepted: Value = accepted.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    let status_url = format!("{base}{}", accepted["status_url"].as_str().expect("status_url"));
    let events = http
        .get(format!(
            "{base}{}",
            accepted["events_url"].as_str().expect("events_url")
        ))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("the stream ends after done");
    assert!(
        events.contains("event: step") && events.contains("\"tool\":\"calculate\""),
        "{events}"
    );
    assert!(
        events.contains("\"tool\":\"search_web\"") && events.contains("event: done"),
        "{events}"
    );
    let task = get_json(&http, &status_url).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(
        task["result"]["response"].as_str().expect("response").contains("345"),
        "{task}"
    );

    // The POST / aliases belong to the standalone functions.
    let root = http
        .post(format!("{base}/"))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .expect("post /");
    assert_eq!(root.status().as_u16(), 404);
}
