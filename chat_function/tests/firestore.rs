//! The chat function on Firestore (`STORE=firestore`), as real processes
//! against Google's emulator: state outlives a process, two processes share
//! one store exactly, and Firestore going away is a 503 that ends when it
//! comes back. Each test uses a project of its own, so tests share one
//! emulator without seeing each other's data.

mod common;

use std::time::Duration;

use agent_core::testing::{FirestoreEmulator, Process, firestore_emulator_host, free_port};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_chat_function");
/// A project of the test's own: the emulator keeps projects apart.
fn project() -> String {
    format!("chat-{}", uuid::Uuid::new_v4().simple())
}

async fn start(host: &str, project: &str, extra: &[(&str, &str)]) -> Process {
    let mut vars = vec![
        ("STORE", "firestore"),
        ("FIRESTORE_PROJECT", project),
        ("FIRESTORE_EMULATOR_HOST", host),
    ];
    vars.extend_from_slice(extra);
    Process::start(BIN, &vars).await
}

async fn chat(http: &reqwest::Client, url: &str, body: Value) -> reqwest::Response {
    http.post(format!("{url}/api/v1/chat"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn session(http: &reqwest::Client, url: &str, id: &str) -> reqwest::Response {
    http.get(format!("{url}/api/v1/sessions/{id}?limit=1000"))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn a_session_survives_a_restart_and_identical_messages_are_kept() {
    let (host, project) = (firestore_emulator_host(), project());
    let http = reqwest::Client::new();
    let first = start(&host, &project, &[]).await;
    for _ in 0..2 {
        let r = chat(
            &http,
            &first.url,
            json!({"message": "same words", "session_id": "kept"}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    first.kill().await;

    let second = start(&host, &project, &[]).await;
    let r = chat(
        &http,
        &second.url,
        json!({"message": "after the restart", "session_id": "kept"}),
    )
    .await;
    let answer: Value = r.json().await.expect("json");
    assert!(
        answer["response"]
            .as_str()
            .expect("response")
            .contains("you said: \"same words\", \"same words\""),
        "{answer}"
    );
    let stored: Value = session(&http, &second.url, "kept").await.json().await.expect("json");
    let contents: Vec<&str> = stored["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("c"))
        .collect();
    assert_eq!(contents.len(), 6);
    assert_eq!(
        contents.iter().filter(|c| **c == "same words").count(),
        2,
        "an identical message is stored twice"
    );
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn two_processes_store_every_message_of_one_session() {
    let (host, project) = (firestore_emulator_host(), project());
    let vars = [("RATE_LIMIT_CHAT", "off")];
    let (a, b) = tokio::join!(start(&host, &project, &vars), start(&host, &project, &vars));
    let http = reqwest::Client::new();
    let sends = (0..100).map(|i| {
        let url = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
        let http = http.clone();
        tokio::spawn(async move {
            chat(
                &http,
                &url,
                json!({"message": format!("msg-{i}"), "session_id": "busy"}),
            )
            .await
            .status()
        })
    });
    for status in futures_util::future::join_all(sends).await {
        assert_eq!(status.expect("task"), 200);
    }
    let stored: Value = session(&http, &a.url, "busy").await.json().await.expect("json");
    let messages = stored["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 200);
    for pair in messages.chunks(2) {
        let asked = pair[0]["content"].as_str().expect("content");
        assert_eq!(pair[0]["role"], "user");
        assert!(
            pair[1]["content"]
                .as_str()
                .expect("content")
                .contains(&format!("You said: \"{asked}\""))
        );
    }
}

/// One API key behind two instances, rotating every header a client
/// chooses: exactly the key's limit is admitted, and a burst straddling a
/// clock-aligned window boundary gets no more than the limit either.
#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn two_processes_admit_exactly_the_rate_limit() {
    let (host, project) = (firestore_emulator_host(), project());
    let vars = [
        ("API_KEYS", "app:k1,edge:k2"),
        ("RATE_LIMIT_CHAT", "5/1h"),
        ("RATE_LIMIT_CHAT_PER_CLIENT", "2/1h"),
        ("TRUST_PROXY", "true"),
    ];
    let (a, b) = tokio::join!(start(&host, &project, &vars), start(&host, &project, &vars));
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
    // The other key's end user: its per-client limit first.
    let one_client = |_| vec![("x-api-key", "k2".to_string()), ("x-client-id", "alice".to_string())];
    assert_eq!(
        common::admitted(&common::burst(urls, 6, one_client).await),
        2,
        "alice's own limit"
    );
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn a_burst_straddling_a_window_boundary_admits_no_more_than_the_limit() {
    let (host, project) = (firestore_emulator_host(), project());
    let vars = [("API_KEYS", "app:k1"), ("RATE_LIMIT_CHAT", "4/10s")];
    let (a, b) = tokio::join!(start(&host, &project, &vars), start(&host, &project, &vars));
    let urls = [a.url.as_str(), b.url.as_str()];
    let (before, after) = common::bursts_around_a_boundary(urls, "k1").await;
    assert_eq!(
        common::admitted(&before) + common::admitted(&after),
        4,
        "before the boundary {before:?}, after it {after:?}"
    );
}

#[tokio::test]
#[ignore = "starts and stops a Firestore emulator of its own (gcloud, Java); ./scripts/test.sh runs it"]
async fn firestore_going_away_is_a_503_until_it_is_back() {
    let mut emulator = FirestoreEmulator::start().await;
    let project = project();
    let function = start(&emulator.host, &project, &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    assert_eq!(
        chat(&http, &function.url, json!({"message": "before", "session_id": "s"}))
            .await
            .status(),
        200
    );

    emulator.stop().await;
    let down = chat(
        &http,
        &function.url,
        json!({"message": "while down", "session_id": "s"}),
    )
    .await;
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    let body: Value = down.json().await.expect("json envelope");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(session(&http, &function.url, "s").await.status(), 503);

    // The emulator keeps nothing across a restart; the function needs no
    // restart to use it again.
    emulator.restart().await;
    let mut status = 0;
    for _ in 0..40 {
        status = chat(&http, &function.url, json!({"message": "after", "session_id": "s"}))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200, "serves again once Firestore is back");
    let stored: Value = session(&http, &function.url, "s").await.json().await.expect("json");
    let contents: Vec<&str> = stored["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("c"))
        .collect();
    // The restarted emulator started empty: it holds exactly the turn that
    // succeeded, so neither the request made during the outage nor the
    // attempts answered 503 above wrote anything, then or later.
    assert_eq!(contents.len(), 2, "{contents:?}");
    assert_eq!(contents[0], "after");
}

#[tokio::test]
async fn unreachable_firestore_stops_start_up_quickly_and_clearly() {
    let closed = format!("127.0.0.1:{}", free_port());
    let run = tokio::process::Command::new(BIN)
        .env_clear()
        .env("ENV_FILE", "off")
        .env("STORE", "firestore")
        .env("FIRESTORE_PROJECT", "nowhere")
        .env("FIRESTORE_EMULATOR_HOST", &closed)
        .kill_on_drop(true)
        .output();
    // The guard fails a hang instead of waiting forever; it is not a speed test.
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("start-up gives up")
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach Firestore"), "{stderr}");
}

/// The start-up check runs beside the first requests: a Firestore that
/// takes the connection but never answers leaves `/health` at 503
/// `starting` while the process serves, then stops the process with the
/// check's error.
#[tokio::test]
async fn health_waits_for_the_store_check_and_a_failed_check_stops_the_process() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = silent.local_addr().expect("address").to_string();
    // Takes connections and reads them, answering nothing.
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = silent.accept().await {
            tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut socket, &mut sink).await;
            });
        }
    });
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        .env("STORE", "firestore")
        .env("FIRESTORE_PROJECT", "silent")
        .env("FIRESTORE_EMULATOR_HOST", &host)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let mut starting = None;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/health")).send().await {
            starting = Some((r.status(), r.json::<Value>().await.expect("a JSON body")));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, body) = starting.expect("the process serves before its store check ends");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "starting", "{body}");
    // The guard fails a hang instead of waiting forever; it is not a speed test.
    let code = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the failed check stops the process")
        .expect("wait");
    assert_eq!(code.code(), Some(1));
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        pipe.read_to_string(&mut stderr).await.expect("stderr");
    }
    assert!(stderr.contains("cannot reach Firestore (project silent"), "{stderr}");
}
