//! What the MCP and A2A tests share: the Python peers written with the
//! official SDKs (`tests/peers/`, run with the virtualenv's `PYTHON`), an
//! agent run and its steps, and `local` started as on Google Cloud. Each
//! test binary uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agent_core::testing::{Process, TestServer, free_port};
use serde_json::{Value, json};

/// The virtualenv's python, which has the SDKs.
pub fn python() -> String {
    match std::env::var("PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!("PYTHON is not set: run ./scripts/test.sh, which makes the virtualenv with the MCP and A2A SDKs"),
    }
}

pub fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// A peer script on a port of its own (its first argument), killed when
/// dropped; ready once it answers `GET /calls` (what it was sent).
pub struct Peer {
    _child: tokio::process::Child,
    pub base: String,
}

impl Peer {
    pub async fn start(script: &str, args: &[&str], env: &[(&str, &str)]) -> Peer {
        let port = free_port();
        let child = tokio::process::Command::new(python())
            .arg(peers().join(script))
            .arg(port.to_string())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if reqwest::get(format!("{base}/calls")).await.is_ok() {
                return Peer { _child: child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{script} did not start on {port}");
    }

    pub async fn calls(&self) -> Value {
        reqwest::get(format!("{}/calls", self.base))
            .await
            .expect("calls")
            .json()
            .await
            .expect("json")
    }

    /// Asserts that every request it saw carried `expected` as its
    /// `Authorization`.
    pub async fn assert_authorized(&self, expected: &str) {
        let seen = self.calls().await;
        let authorizations = seen["authorizations"].as_array().expect("an array");
        assert!(!authorizations.is_empty(), "{seen}");
        assert!(authorizations.iter().all(|a| a == expected), "{seen}");
    }
}

/// Runs `task` on the agent at `url` (with `key`, if any); a 200 expected.
pub async fn run_agent(url: &str, key: Option<&str>, task: &str) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/api/v1/agent"))
        .json(&json!({"task": task}));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.expect("run");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

/// The run's step with `tool`.
pub fn step<'a>(run: &'a Value, tool: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["tool"] == tool)
        .unwrap_or_else(|| panic!("no {tool} step in {run}"))
}

/// `local` as a process, as it runs on Google Cloud: ID tokens on, from a
/// stand-in metadata server, with `vars`; kept with what it needs.
pub struct OnGoogleCloud {
    pub local: Process,
    _metadata: TestServer,
    _dir: tempfile::TempDir,
}

impl OnGoogleCloud {
    pub async fn start(vars: &[(&str, &str)]) -> OnGoogleCloud {
        let metadata = agent_core::testing::metadata_server().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("agent.db").to_string_lossy().into_owned();
        let metadata_host = metadata.url.trim_start_matches("http://").to_string();
        let mut all = vec![
            ("SQLITE_PATH", db.as_str()),
            ("LLM_PROVIDER", "offline"),
            ("TOOL_ID_TOKENS", "true"),
            ("GCE_METADATA_HOST", metadata_host.as_str()),
        ];
        all.extend_from_slice(vars);
        let local = Process::start(env!("CARGO_BIN_EXE_local"), &all).await;
        OnGoogleCloud {
            local,
            _metadata: metadata,
            _dir: dir,
        }
    }
}
