//! The browser console, served by `local` at `/`, in a real browser:
//! headless Chromium (Debian's package, `CHROMIUM`) driven by Playwright's
//! core (from npm, pinned in `tests/console/package-lock.json`, installed
//! by `./scripts/test.sh` into `CONSOLE_NODE_MODULES`). The steps and
//! their checks are in `tests/console/console.test.mjs`; this test starts
//! what they drive and lets the gated model finish when the script asks.
//!
//! The screenshots are test artifacts, in `console-screenshots/` under
//! cargo's `CARGO_TARGET_TMPDIR` (`target/tmp/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agent_core::testing::{GatedModel, Process};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const KEY: &str = "console-test-key-0123456789";

fn setting(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{name} is not set: run ./scripts/test.sh, which installs Chromium and playwright-core"),
    }
}

#[tokio::test]
#[ignore = "needs Chromium and playwright-core (CHROMIUM, CONSOLE_NODE_MODULES): run ./scripts/test.sh"]
async fn the_console_chats_runs_the_agent_and_manages_tasks_and_sessions_in_a_browser() {
    let chromium = setting("CHROMIUM");
    let node_modules = setting("CONSOLE_NODE_MODULES");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let open_db = dir.path().join("open.db");
    let keyed_db = dir.path().join("keyed.db");
    let open = Process::start(
        env!("CARGO_BIN_EXE_local"),
        &[("SQLITE_PATH", open_db.to_str().expect("utf-8 path"))],
    )
    .await;
    let gated = GatedModel::start().await;
    let keyed = Process::start(
        env!("CARGO_BIN_EXE_local"),
        &[
            ("SQLITE_PATH", keyed_db.to_str().expect("utf-8 path")),
            ("API_KEYS", KEY),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &gated.base_url),
            ("OPENAI_MODEL", "gated"),
        ],
    )
    .await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console/console.test.mjs");

    let mut child = tokio::process::Command::new(&node)
        .arg(&script)
        .env("OPEN_URL", &open.url)
        .env("KEYED_URL", &keyed.url)
        .env("KEY", KEY)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("CONSOLE_NODE_MODULES", &node_modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {node}: {err}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut released = false;
    let mut passed = false;
    let run = async {
        while let Some(line) = lines.next_line().await.expect("the script's output") {
            println!("{line}");
            match line.as_str() {
                // The first delta is on screen: let the model finish.
                "RELEASE" => {
                    gated.release();
                    released = true;
                    stdin.write_all(b"go\n").await.expect("the script reads its stdin");
                }
                "all checks passed" => passed = true,
                _ => {}
            }
        }
        child.wait().await.expect("the script ends")
    };
    let status = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser test ends within 5 minutes");
    println!("screenshots: {}", shots.display());
    assert!(
        status.success() && passed,
        "the browser test failed (its output is above)"
    );
    assert!(released, "the streamed reply was seen before the model finished it");
    for name in [
        "chat",
        "agent",
        "multi-agent",
        "tasks",
        "overview",
        "key-prompt",
        "chat-streaming",
    ] {
        let shot = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{} was not saved", shot.display());
    }
    drop((open, keyed));
}
