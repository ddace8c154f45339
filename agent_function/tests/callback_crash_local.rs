//! The local variant of `agent_worker/tests/callback_crash.rs`: an
//! `agent_function` process on SQLite with the local queue, started with
//! the test-only fault point `AGENT_CORE_TEST_ABORT_AT=finished-before-callback`,
//! aborts right after storing a task's outcome with its callback owed. The
//! next process on the same file sweeps the store, finds the callback
//! still pending, and sends it: exactly one signed callback arrives.

use std::time::{Duration, Instant};

use agent_core::testing::{CallbackReceiver, Process, free_port};
use agent_core::webhook;
use agent_core::worker::{ABORT_AT_VARIABLE, FINISHED_BEFORE_CALLBACK};
use serde_json::{Value, json};

const AGENT: &str = env!("CARGO_BIN_EXE_agent_function");
const SECRET: &str = "local-crash-secret";
/// A bound for failure messages, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

async fn task(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let response = http
        .get(format!("{url}/api/v1/tasks/{id}"))
        .send()
        .await
        .expect("get task");
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_process_killed_between_finishing_and_calling_back_leaves_the_callback_to_the_next_sweep() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("agent.db").to_string_lossy().into_owned();
    let hooks = CallbackReceiver::start().await;
    let vars = [
        ("STORE", "sqlite"),
        ("SQLITE_PATH", db.as_str()),
        ("QUEUE", "local"),
        ("LLM_PROVIDER", "offline"),
        ("WEBHOOK_SECRET", SECRET),
        ("ALLOW_LOOPBACK_CALLBACKS", "true"),
    ];
    let mut doomed_vars = vars.to_vec();
    doomed_vars.push((ABORT_AT_VARIABLE, FINISHED_BEFORE_CALLBACK));
    let port = free_port();
    let mut doomed = Process::start_on(AGENT, port, &doomed_vars).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/v1/agent", doomed.url))
        .json(&json!({"task": "Calcula 2+2", "async": true, "callback_url": hooks.url}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("task_id")
        .to_string();
    let exit = tokio::time::timeout(DEADLINE, doomed.child.wait())
        .await
        .expect("the process aborts at the fault point")
        .expect("its exit status");
    assert!(!exit.success(), "{exit:?}");
    assert!(hooks.all().is_empty(), "no callback went out before the crash");

    let next = Process::start_on(AGENT, port, &vars).await;
    let started = Instant::now();
    let finished = loop {
        let finished = task(&http, &next.url, &id).await;
        if finished["callback"]["status"] == "delivered" {
            break finished;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the callback was never delivered: {finished}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["callback"], json!({"status": "delivered", "attempts": 1}));
    let hooks = hooks.all();
    assert_eq!(hooks.len(), 1, "exactly one callback");
    assert!(
        webhook::verify(SECRET.as_bytes(), &hooks[0].body, &hooks[0].signature),
        "signed"
    );
    let body: Value = serde_json::from_slice(&hooks[0].body).expect("json");
    assert_eq!((&body["task_id"], &body["status"]), (&json!(id), &json!("completed")));
    assert!(body.get("callback").is_none(), "{body}");
    next.kill().await;
}
