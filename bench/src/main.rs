//! Measures what the performance budget promises (see BENCHMARKS.md):
//!
//! - `bench startup BIN [RUNS] [NAME=VALUE...]`: cold start, exec to the
//!   first 200 on `/health`, and idle RSS after start, over RUNS fresh
//!   processes, with extra settings (e.g. a provider) from NAME=VALUE.
//! - `bench first-answer BIN [RUNS] [NAME=VALUE...]`: exec to the first 200
//!   on `POST /api/v1/chat` (a new session), over RUNS fresh processes on
//!   one existing store.
//! - `bench chat BIN [SECONDS] [CONNECTIONS] [NAME=VALUE...]`: starts BIN
//!   (a function or `local`) on the offline model and SQLite, or the store
//!   the NAME=VALUE settings name, then sends `POST /api/v1/chat` on
//!   CONNECTIONS keep-alive connections for SECONDS, each on a new session
//!   of its own, and reports requests per second, latency percentiles, and
//!   per ok request the function's CPU time (and the emulator's, on one it
//!   started) and the store calls and documents its `/metrics` counted.
//!   `SESSION_MESSAGES=N` first grows each session to N messages, `WARMUP=N`
//!   first sends N turns a connection on sessions of their own; neither is
//!   measured. `AUTH=key` or `AUTH=token` sends an API key or a verified
//!   Firebase ID token with every request (from a local issuer).
//! - `bench issuer [SECONDS]`: that local issuer on its own, its settings
//!   and a token printed (`AUTH_FIREBASE_*`, `BENCH_TOKEN`), for `wrk -s
//!   bench/chat-auth.lua` or a run under callgrind.
//! - `bench tool BIN calculate|search|mcp-calculate [SECONDS] [CONNECTIONS]`:
//!   the same for a tool function's route (`mcp-calculate`: the calculator
//!   as an MCP `tools/call` on `/mcp`).
//! - `bench cache BIN [SECONDS] [CONNECTIONS] [NAME=VALUE...]`: the same
//!   for chat turns with no history, three runs: the response cache off,
//!   every turn a cache miss, every turn a hit.
//! - `bench loop [RUNS]`: the agent loop's own cost per step, in process,
//!   with a model that answers at once.
//! - `bench routing [RUNS]`: what choosing a request's model tier costs
//!   (the rules of `MODEL_ROUTING=auto`), per request, in process.
//! - `bench multi [RUNS]`: a multi-agent run's orchestration cost per
//!   subtask (offline model, against one agent loop making the same
//!   calls), and its wall time with subtasks run one, four and eight at a
//!   time against a model double with a fixed delay, in process.
//! - `bench tasks BIN [TASKS] [CONCURRENCY] [NAME=VALUE...]`: submits TASKS
//!   asynchronous agent tasks to BIN (`local`, or `agent_function`) from
//!   CONCURRENCY clients and waits until all are completed: the 202 rate
//!   and latency, and tasks completed per second end to end. With
//!   `WORKER=path/to/agent_worker`, `QUEUE=pubsub` and the emulators'
//!   settings, it also starts the worker and a push subscription to it.
//!   `KIND=multi` submits multi-agent runs of two subtasks instead, and
//!   `KIND=agent2` the same two-part task as one agent run.
//! - `bench costs BIN_DIR [N] [FIRESTORE_EMULATOR_HOST=host:port]`: what each
//!   kind of operation asks of Firestore (store calls, documents, history
//!   fallbacks, by `/metrics`), averaged over N operations of each, with
//!   `chat_function` and `agent_function` from BIN_DIR on a fresh emulator
//!   (or the one FIRESTORE_EMULATOR_HOST names, as a setting or in the
//!   environment): chat turns on new and existing sessions with the rate
//!   limit on and off, synchronous agent runs, asynchronous tasks through
//!   the local queue, task reads, the local queue's sweep, and the claim.
//!   Counts, not times: exact whatever the machine.
//!
//! With `STORE=firestore` and no `FIRESTORE_EMULATOR_HOST`, `startup`,
//! `first-answer` and `chat` start a fresh Firestore emulator for the
//! command and stop it after; without `FIRESTORE_PROJECT` they name a
//! project of their own.
//!
//! Each run uses a fresh temporary SQLite file and a free loopback port, and
//! stops what it started, on Ctrl-C and SIGTERM too. The output is ready to paste into
//! BENCHMARKS.md: the command line in a `sh` block, then the figures in a
//! plain one; progress goes to stderr.

mod agent_loop;
mod auth;
mod costs;
mod emulator;
mod load;
mod metrics;
mod multi;
mod procfs;
mod routing;
mod startup;
mod tasks;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

const COMMANDS: [&str; 10] = [
    "startup",
    "first-answer",
    "chat",
    "cache",
    "tool",
    "loop",
    "routing",
    "multi",
    "tasks",
    "costs",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.get(1).is_some_and(|c| COMMANDS.contains(&c.as_str())) {
        return run(args.get(1..).unwrap_or_default()).await;
    }
    // Ready to paste into BENCHMARKS.md: the command line, then the figures
    // (progress goes to stderr).
    println!("```sh\n{}\n```\n\n```", command_line(&args));
    // On Ctrl-C or SIGTERM (e.g. from `timeout`) the run is dropped, and
    // with it the processes it started (the function, the emulator's
    // process group).
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = run(&args[1..]) => result?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; what the run started is stopped"),
        _ = terminate.recv() => bail!("terminated; what the run started is stopped"),
    }
    println!("```");
    Ok(())
}

/// The arguments as a shell would take them back.
fn command_line(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,@%+".contains(&b))
    };
    args.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("startup"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(3).filter_map(|a| a.split_once('=')).collect();
            startup::startup(Path::new(bin), parse(arg(2), 20)?, &extra).await
        }
        (Some("first-answer"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(3).filter_map(|a| a.split_once('=')).collect();
            startup::first_answer(Path::new(bin), parse(arg(2), 20)?, &extra).await
        }
        (Some("chat"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(4).filter_map(|a| a.split_once('=')).collect();
            load::chat(Path::new(bin), parse(arg(2), 10)?, parse(arg(3), 64)?, &extra).await
        }
        (Some("cache"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(4).filter_map(|a| a.split_once('=')).collect();
            load::cache(Path::new(bin), parse(arg(2), 10)?, parse(arg(3), 64)?, &extra).await
        }
        (Some("tool"), Some(bin)) => {
            let which = arg(2).unwrap_or("calculate");
            load::tool(Path::new(bin), which, parse(arg(3), 10)?, parse(arg(4), 64)?).await
        }
        (Some("loop"), runs) => agent_loop::agent_loop(parse(runs, 1000)?).await,
        (Some("routing"), runs) => routing::routing(parse(runs, 100_000)?),
        (Some("multi"), runs) => multi::multi(parse(runs, 200)?).await,
        // Not a measurement: printed as is, not ready to paste.
        (Some("issuer"), seconds) => auth::issuer(parse(seconds, 3540)?).await,
        (Some("tasks"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(4).filter_map(|a| a.split_once('=')).collect();
            tasks::tasks(Path::new(bin), parse(arg(2), 200)?, parse(arg(3), 16)?, &extra).await
        }
        (Some("costs"), Some(dir)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(3).filter_map(|a| a.split_once('=')).collect();
            costs::costs(Path::new(dir), parse(arg(2), 20)?, &extra).await
        }
        _ => bail!(
            "usage: bench startup BIN [RUNS=20] [NAME=VALUE...] | bench first-answer BIN [RUNS=20] [NAME=VALUE...]\n\
             | bench chat BIN [SECONDS=10] [CONNECTIONS=64] [SESSION_MESSAGES=N] [WARMUP=N] [AUTH=key|token] [NAME=VALUE...]\n\
             | bench cache BIN [SECONDS=10] [CONNECTIONS=64] [NAME=VALUE...]\n\
             | bench tool BIN calculate|search [SECONDS=10] [CONNECTIONS=64] | bench loop [RUNS=1000] | bench routing [RUNS=100000]\n\
             | bench multi [RUNS=200]\n\
             | bench issuer [SECONDS=3540]\n\
             | bench tasks BIN [TASKS=200] [CONCURRENCY=16] [NAME=VALUE...]\n\
             | bench costs BIN_DIR [N=20] [FIRESTORE_EMULATOR_HOST=host:port]\n\
             BIN is a release binary, e.g. target/release/chat_function; BIN_DIR holds them, e.g. target/release"
        ),
    }
}

pub(crate) fn parse(arg: Option<&str>, default: u64) -> anyhow::Result<u64> {
    match arg {
        None => Ok(default),
        Some(v) => v.parse().with_context(|| format!("{v:?} is not a whole number")),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Starts `bin` on a free port; on a new SQLite file unless `db` names one.
fn spawn(bin: &Path, db: Option<&Path>, extra: &[(&str, &str)]) -> anyhow::Result<(Server, Instant)> {
    let dir = tempfile::tempdir()?;
    let db: PathBuf = db.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("bench.db"));
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new(bin)
        // What is measured is what the command line says, not a .env
        // file's settings (ENV_FILE=... among the extra settings reads one).
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        .env("SQLITE_PATH", &db)
        .env("LLM_PROVIDER", "offline")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok((Server { child, port, _dir: dir }, started))
}

/// Polls `/health` as fast as a connection can be made; returns when it
/// answers 200.
async fn wait_healthy(port: u16) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s
                .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await;
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).await.is_ok() && &buf[9..12] == b"200" {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    bail!("no 200 on /health within 10 s on port {port}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
