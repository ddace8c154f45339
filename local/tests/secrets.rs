//! Secrets never reach a log line or an answer. The `local` binary runs
//! with an API key list, a Gemini key and a webhook secret set, every
//! function in one process, JSON logs at debug level; the test drives the
//! errors a deployment meets (no key, a wrong key, the model refusing and
//! failing, a callback that keeps failing, a refused callback URL) and looks
//! for the secrets in every line the process wrote and every answer it gave.

use std::process::Stdio;
use std::time::Duration;

use agent_core::testing::{Scripted, TestServer, free_port};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const GEMINI_KEY: &str = "AIzaSy-test-gemini-key-0123456789";
const CLIENT_KEY: &str = "client-key-abcdef-9876543210";
const WEBHOOK_SECRET: &str = "whsec-test-secret-5555-aaaa";

#[tokio::test]
async fn no_secret_reaches_a_log_line_or_an_answer() {
    let model_error = |code: u16, status: &str| json!({"error": {"code": code, "message": format!("scripted {status}"), "status": status}});
    // First call refused (400), every later one failing (500).
    let model = Scripted::start(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        vec![
            (400, model_error(400, "INVALID_ARGUMENT")),
            (500, model_error(500, "INTERNAL")),
        ],
    )
    .await;
    let hook = TestServer::start(axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
    ))
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        .env("SQLITE_PATH", dir.path().join("s.db"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .env("GEMINI_BASE_URL", &model.server.url)
        .env("LLM_MAX_RETRIES", "1")
        .env("API_KEYS", format!("{CLIENT_KEY},second-client-key-777777"))
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("ALLOW_LOOPBACK_CALLBACKS", "true")
        .env("WEBHOOK_ATTEMPTS", "2")
        .env("TASK_MAX_ATTEMPTS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn local");
    let (mut stdout, mut stderr) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let logs = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        out + &err
    });

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    let mut ready = false;
    for _ in 0..200 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "local did not start");

    let calls: Vec<(&str, &str, Option<&str>, serde_json::Value)> = vec![
        ("POST", "/api/v1/chat", None, json!({"message": "no key"})),
        (
            "POST",
            "/api/v1/chat",
            Some("wrong-key"),
            json!({"message": "wrong key"}),
        ),
        (
            "POST",
            "/api/v1/chat",
            Some(CLIENT_KEY),
            json!({"message": "refused by the model"}),
        ),
        (
            "POST",
            "/api/v1/chat",
            Some(CLIENT_KEY),
            json!({"message": "the model fails"}),
        ),
        (
            "POST",
            "/api/v1/chat",
            Some(CLIENT_KEY),
            json!({"message": "stream it", "stream": true}),
        ),
        ("POST", "/api/v1/chat", Some(CLIENT_KEY), json!({"mesage": "a typo"})),
        (
            "POST",
            "/api/v1/agent",
            Some(CLIENT_KEY),
            json!({"task": "x", "async": true, "callback_url": "http://169.254.169.254/"}),
        ),
        (
            "POST",
            "/api/v1/agent",
            Some(CLIENT_KEY),
            json!({"task": "fails, then calls back", "async": true, "callback_url": format!("{}/hook", hook.url)}),
        ),
        ("GET", "/metrics", Some(CLIENT_KEY), json!(null)),
        ("GET", "/api/v1/sessions/nope", Some(CLIENT_KEY), json!(null)),
    ];
    let mut task_id = None;
    for (method, path, key, body) in calls {
        let mut request = match method {
            "GET" => http.get(format!("{base}{path}")),
            _ => http.post(format!("{base}{path}")).json(&body),
        };
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.expect("request");
        let head = format!("{} {:?}", response.status(), response.headers());
        let text = response.text().await.expect("body");
        if text.contains("\"status\":\"queued\"") {
            task_id = serde_json::from_str::<serde_json::Value>(&text).expect("json")["task_id"]
                .as_str()
                .map(String::from);
        }
        answers.push(format!("{method} {path}: {head}\n{text}"));
    }

    // Let the queued task fail and its callback be tried and given up.
    let task_id = task_id.expect("the async task was accepted");
    let mut finished = false;
    for _ in 0..200 {
        let task = http
            .get(format!("{base}/api/v1/tasks/{task_id}"))
            .header("x-api-key", CLIENT_KEY)
            .send()
            .await
            .expect("task")
            .text()
            .await
            .expect("text");
        if task.contains("\"status\":\"failed\"") {
            answers.push(task);
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(finished, "the task did not fail as scripted");
    let metrics = || async {
        http.get(format!("{base}/metrics"))
            .header("x-api-key", CLIENT_KEY)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let mut given_up = false;
    for _ in 0..200 {
        if metrics()
            .await
            .contains("webhooks_total{function=\"local\",outcome=\"failed\"} 1")
        {
            given_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(given_up, "the callback was not tried and given up");

    child.kill().await.expect("kill");
    let logs = logs.await.expect("logs");
    assert!(logs.lines().count() > 10, "the process logged what it did:\n{logs}");
    assert!(logs.contains("callback not delivered"), "the failed callback is logged");
    assert!(model.requests().len() >= 3, "the model was called");
    let everything = format!("{logs}\n{}", answers.join("\n"));
    for secret in [GEMINI_KEY, CLIENT_KEY, "second-client-key-777777", WEBHOOK_SECRET] {
        // The whole value, and any 12-character piece of it.
        let chars: Vec<char> = secret.chars().collect();
        for piece in chars.windows(12.min(chars.len())) {
            let piece: String = piece.iter().collect();
            if let Some(at) = everything.find(&piece) {
                let start = everything[..at]
                    .char_indices()
                    .rev()
                    .nth(200)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                panic!(
                    "a piece of a secret ({piece:?}) was written:\n...{}",
                    &everything[start..(at + 100).min(everything.len())]
                );
            }
        }
    }
}
