//! The chat function as a real process: start-up validation, two processes
//! sharing one SQLite file, draining on SIGTERM and its logs (the same
//! binary under the Lambda runtime: `lambda.rs`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use agent_core::testing::{Process, free_port};
use serde_json::{Value, json};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_chat_function");

/// A running `chat_function`, killed when dropped.
async fn start(vars: &[(&str, &str)]) -> Process {
    Process::start(BIN, vars).await
}

#[tokio::test]
async fn bad_settings_stop_the_process_with_one_clear_line() {
    for (var, value, expected) in [
        ("PORT", "99999", "a port number"),
        ("RATE_LIMIT_CHAT", "abc", "100/60s"),
        ("LLM_PROVIDER", "nope", "gemini, vertex, openai or offline"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env("ENV_FILE", "off")
            .env(var, value)
            .output()
            .await
            .expect("run chat_function");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(var) && lines[0].contains(value) && lines[0].contains(expected),
            "{stderr}"
        );
    }
}

/// One API key behind two processes, rotating every header a client
/// chooses (`X-Client-ID`, `X-Forwarded-For`, `User-Agent`): the key's own
/// limit holds, exactly, and a per-client limit only narrows it.
#[tokio::test]
async fn two_processes_sharing_one_sqlite_file_admit_exactly_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shared.db");
    let db = db.to_str().expect("utf-8");
    let vars = [
        ("SQLITE_PATH", db),
        ("API_KEYS", "app:k1"),
        ("RATE_LIMIT_CHAT", "5/1h"),
        ("RATE_LIMIT_CHAT_PER_CLIENT", "2/1h"),
        ("TRUST_PROXY", "true"),
    ];
    let (a, b) = tokio::join!(start(&vars), start(&vars));
    let urls = [a.url.as_str(), b.url.as_str()];
    let rotating = |i: usize| {
        vec![
            ("x-api-key", "k1".to_string()),
            ("x-client-id", format!("client-{i}")),
            ("x-forwarded-for", format!("203.0.113.{i}")),
            ("user-agent", format!("agent/{i}")),
        ]
    };
    let statuses = common::burst(urls, 16, rotating).await;
    assert_eq!(
        common::admitted(&statuses),
        5,
        "the key's limit, whatever the headers: {statuses:?}"
    );
    let fresh = |_| {
        vec![
            ("x-api-key", "k1".to_string()),
            ("x-client-id", "client-new".to_string()),
        ]
    };
    assert_eq!(
        common::admitted(&common::burst(urls, 2, fresh).await),
        0,
        "the key is spent, for a new id too"
    );
}

/// With a per-client limit, each `X-Client-ID` is held to it within the
/// key's budget, and a request the per-client limit refuses spends none of
/// the key's.
#[tokio::test]
async fn a_per_client_limit_narrows_a_keys_budget_across_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("narrow.db");
    let db = db.to_str().expect("utf-8");
    let vars = [
        ("SQLITE_PATH", db),
        ("API_KEYS", "app:k1"),
        ("RATE_LIMIT_CHAT", "6/1h"),
        ("RATE_LIMIT_CHAT_PER_CLIENT", "2/1h"),
    ];
    let (a, b) = tokio::join!(start(&vars), start(&vars));
    let urls = [a.url.as_str(), b.url.as_str()];
    let client = |id: &'static str| move |_| vec![("x-api-key", "k1".to_string()), ("x-client-id", id.to_string())];
    assert_eq!(
        common::admitted(&common::burst(urls, 8, client("alice")).await),
        2,
        "alice's own limit"
    );
    assert_eq!(
        common::admitted(&common::burst(urls, 8, client("bob")).await),
        2,
        "bob's own limit"
    );
    // Alice's six refusals spent nothing of the key's: two places are left.
    let no_id = |_| vec![("x-api-key", "k1".to_string())];
    assert_eq!(
        common::admitted(&common::burst(urls, 8, no_id).await),
        2,
        "the key's limit, 6, with 4 spent"
    );
}

/// A burst straddling a clock-aligned window boundary: fixed windows would
/// admit the limit on each side of it; a sliding window admits the limit,
/// once, across both processes.
#[tokio::test]
async fn a_burst_straddling_a_window_boundary_admits_no_more_than_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("boundary.db");
    let db = db.to_str().expect("utf-8");
    let vars = [
        ("SQLITE_PATH", db),
        ("API_KEYS", "app:k1"),
        ("RATE_LIMIT_CHAT", "4/10s"),
    ];
    let (a, b) = tokio::join!(start(&vars), start(&vars));
    let urls = [a.url.as_str(), b.url.as_str()];
    let (before, after) = common::bursts_around_a_boundary(urls, "k1").await;
    assert_eq!(
        common::admitted(&before) + common::admitted(&after),
        4,
        "before the boundary {before:?}, after it {after:?}"
    );
}

/// Processes that start at the same moment on a new SQLite file take
/// turns to create it. Found by a CI run, where one of two processes started
/// together exited with "database is locked": switching the file to WAL
/// answers BUSY without waiting for the other process. Four processes at
/// once, in several rounds, made it happen in about one round in fifteen.
#[tokio::test]
async fn processes_started_together_on_a_new_file_all_start() {
    for round in 0..6 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(format!("new-{round}.db"));
        let vars = [("SQLITE_PATH", db.to_str().expect("utf-8"))];
        let (a, b, c, d) = tokio::join!(start(&vars), start(&vars), start(&vars), start(&vars));
        for p in [a, b, c, d] {
            p.kill().await;
        }
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("term.db");
    let mut process = start(&[("SQLITE_PATH", db.to_str().expect("utf-8"))]).await;
    process.terminate();
    let status = tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_store_that_cannot_open_stops_start_up_with_a_clear_message() {
    let out = Command::new(BIN)
        .env_clear()
        .env("ENV_FILE", "off")
        .env("SQLITE_PATH", "/proc/no-such-place/agent.db")
        .output()
        .await
        .expect("run chat_function");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SQLITE_PATH") && stderr.contains("/proc/no-such-place"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_logs_carry_severity_request_id_and_trace() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("logs.db");
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        .env("SQLITE_PATH", db.to_str().expect("utf-8"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("GOOGLE_CLOUD_PROJECT", "demo-project")
        .env("GEMINI_API_KEY", "")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = format!("http://127.0.0.1:{port}/api/v1/chat");
    let sender = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let r = http
                .post(&url)
                .header("x-cloud-trace-context", "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1")
                .header("x-request-id", "log-test-1")
                .json(&json!({"message": "log me"}))
                .send()
                .await;
            if r.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the function never answered");
    });
    let found = async {
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["severity"].is_string() && v["time"].is_string(), "{line}");
            if v["request_id"] == "log-test-1" {
                return (v, seen);
            }
            seen.push(line);
        }
        panic!("no log line of the request: {seen:?}");
    };
    let (line, startup) = tokio::time::timeout(Duration::from_secs(10), found)
        .await
        .expect("a request log line");
    sender.await.expect("the request was sent");
    assert_eq!(line["severity"], "DEBUG");
    assert_eq!(
        line["logging.googleapis.com/trace"],
        "projects/demo-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(line["logging.googleapis.com/spanId"], "0000000000000001");
    assert_eq!(line["message"], "request finished");
    assert_eq!(line["status"], 200);
    // The start-up warnings (offline model, no API keys) are JSON too.
    assert!(
        startup
            .iter()
            .any(|l| l.contains("\"severity\":\"WARNING\"") && l.contains("offline")),
        "{startup:?}"
    );
}

/// Settings from a `.env` file in a parent of the working directory: its
/// values apply (`RUST_LOG` too, which the logger would read only from the
/// environment), the real environment wins over it, and the start-up line
/// names the file and the settings it supplied, never a value.
#[tokio::test]
async fn a_dotenv_file_supplies_settings_under_the_real_environment() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("from-dotenv.db");
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        format!(
            "# the test's settings\n\
             export SQLITE_PATH=\"{}\"\n\
             API_KEYS='app:key-from-dotenv'\n\
             WEBHOOK_SECRET=secret-from-dotenv # never logged\n\
             RUST_LOG=info\n\
             RATE_LIMIT_CHAT=1/1h\n",
            db.display()
        ),
    )
    .expect("write .env");
    let cwd = dir.path().join("nested");
    std::fs::create_dir(&cwd).expect("mkdir");
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .current_dir(&cwd)
        .env("PORT", port.to_string())
        // The environment wins: two chats pass a limit of one.
        .env("RATE_LIMIT_CHAT", "off")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chat_function");
    let mut stdout = child.stdout.take().expect("stdout");
    let output = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stdout.read_to_string(&mut all).await;
        all
    });

    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..400 {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status().is_success()
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "chat_function did not become healthy");
    let chat = |key: Option<&'static str>| {
        let mut request = http
            .post(format!("{url}/api/v1/chat"))
            .json(&json!({"message": "hello"}));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        async move { request.send().await.expect("chat").status().as_u16() }
    };
    assert_eq!(chat(None).await, 401, "API_KEYS from .env applies");
    assert_eq!(chat(Some("key-from-dotenv")).await, 200);
    assert_eq!(
        chat(Some("key-from-dotenv")).await,
        200,
        "RATE_LIMIT_CHAT from the environment wins"
    );
    assert!(db.exists(), "SQLITE_PATH from .env applies");

    let _ = child.kill().await;
    let output = output.await.expect("stdout read");
    let line = output
        .lines()
        .find(|l| l.contains("settings: read"))
        .unwrap_or_else(|| panic!("no start-up line naming the .env file (RUST_LOG=info from it): {output}"));
    assert!(line.contains(&dotenv.display().to_string()), "{line}");
    assert!(
        line.contains("4 setting(s) from it: API_KEYS, RUST_LOG, SQLITE_PATH, WEBHOOK_SECRET"),
        "{line}"
    );
    assert!(
        !output.contains("secret-from-dotenv") && !output.contains("key-from-dotenv"),
        "a value was logged: {output}"
    );
}

/// A bad value in `.env` stops the process as a bad setting does, with one
/// line naming the variable and the file; so does a line that is not a
/// setting, or a file `ENV_FILE` names that cannot be read.
#[tokio::test]
async fn a_bad_dotenv_file_stops_the_process_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dotenv = dir.path().join(".env");
    let path = dotenv.display().to_string();
    let missing = dir.path().join("missing.env").display().to_string();
    for (text, env_file, says) in [
        (
            "RATE_LIMIT_CHAT=abc\n",
            None,
            vec![
                "RATE_LIMIT_CHAT=\"abc\"".to_string(),
                format!("(from {path})"),
                "100/60s".to_string(),
            ],
        ),
        (
            "PORT=8080\nnot a setting\n",
            None,
            vec![format!("{path} line 2"), "expected KEY=VALUE".to_string()],
        ),
        (
            "",
            Some(missing.as_str()),
            vec![missing.clone(), "cannot read".to_string()],
        ),
    ] {
        std::fs::write(&dotenv, text).expect("write .env");
        let mut command = Command::new(BIN);
        command.env_clear().current_dir(dir.path());
        if let Some(file) = env_file {
            command.env("ENV_FILE", file);
        }
        let out = command.output().await.expect("run chat_function");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        for part in &says {
            assert!(lines[0].contains(part.as_str()), "want {part:?} in {stderr}");
        }
    }
}
