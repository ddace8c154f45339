//! Measures what the performance budget promises (see BENCHMARKS.md):
//!
//! - `bench startup BIN [RUNS] [NAME=VALUE...]`: cold start, exec to the
//!   first 200 on `/health`, and idle RSS after start, over RUNS fresh
//!   processes, with extra settings (e.g. a provider) from NAME=VALUE.
//! - `bench chat BIN [SECONDS] [CONNECTIONS] [NAME=VALUE...]`: starts BIN
//!   (a function or `local`) on the offline model and SQLite, or the store
//!   the NAME=VALUE settings name, then sends `POST /api/v1/chat` on
//!   CONNECTIONS keep-alive connections for SECONDS, and reports requests
//!   per second and latency percentiles.
//! - `bench tool BIN calculate|search [SECONDS] [CONNECTIONS]`: the same
//!   for a tool function's route.
//! - `bench loop [RUNS]`: the agent loop's own cost per step, in process,
//!   with a model that answers at once.
//! - `bench tasks BIN [TASKS] [CONCURRENCY] [NAME=VALUE...]`: submits TASKS
//!   asynchronous agent tasks to BIN (`local`, or `agent_function`) from
//!   CONCURRENCY clients and waits until all are completed: the 202 rate
//!   and latency, and tasks completed per second end to end. With
//!   `WORKER=path/to/agent_worker`, `QUEUE=pubsub` and the emulators'
//!   settings, it also starts the worker and a push subscription to it.
//!
//! Each run uses a fresh temporary SQLite file and a free loopback port, and
//! stops what it started.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("startup"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(3).filter_map(|a| a.split_once('=')).collect();
            startup(Path::new(bin), parse(arg(2), 20)?, &extra).await
        }
        (Some("chat"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(4).filter_map(|a| a.split_once('=')).collect();
            chat(Path::new(bin), parse(arg(2), 10)?, parse(arg(3), 64)?, &extra).await
        }
        (Some("tool"), Some(bin)) => {
            let which = arg(2).unwrap_or("calculate");
            tool(Path::new(bin), which, parse(arg(3), 10)?, parse(arg(4), 64)?).await
        }
        (Some("loop"), runs) => agent_loop(parse(runs, 1000)?).await,
        (Some("tasks"), Some(bin)) => {
            let extra: Vec<(&str, &str)> = args.iter().skip(4).filter_map(|a| a.split_once('=')).collect();
            tasks(Path::new(bin), parse(arg(2), 200)?, parse(arg(3), 16)?, &extra).await
        }
        _ => bail!(
            "usage: bench startup BIN [RUNS=20] [NAME=VALUE...] | bench chat BIN [SECONDS=10] [CONNECTIONS=64] [NAME=VALUE...]\n\
             | bench tool BIN calculate|search [SECONDS=10] [CONNECTIONS=64] | bench loop [RUNS=1000]\n\
             | bench tasks BIN [TASKS=200] [CONCURRENCY=16] [NAME=VALUE...]\n\
             BIN is a release binary, e.g. target/release/chat_function"
        ),
    }
}

fn parse(arg: Option<&str>, default: u64) -> anyhow::Result<u64> {
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

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
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

/// Starts `bin` `runs` times; returns the sorted start times and RSS (KiB).
async fn starts(
    bin: &Path,
    runs: u64,
    db: Option<&Path>,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Vec<Duration>, Vec<u64>)> {
    let mut starts = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let (mut server, started) = spawn(bin, db, extra)?;
        wait_healthy(server.port).await?;
        starts.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(pid) = server.child.id() {
            rss.push(rss_kib(pid)?);
        }
        server.child.kill().await?;
    }
    starts.sort();
    rss.sort();
    Ok((starts, rss))
}

fn report_starts(what: &str, starts: &[Duration]) {
    println!(
        "cold start (exec to first 200 on /health), {what}, {} runs: min {}, median {}, p90 {}, max {}",
        starts.len(),
        ms(starts[0]),
        ms(percentile(starts, 0.5)),
        ms(percentile(starts, 0.9)),
        ms(starts[starts.len() - 1]),
    );
}

/// Cold start on an existing SQLite file (a restart, or a store that is
/// not a local file), and on a new one (SQLite creates and syncs the file
/// and its write-ahead log, once per machine).
async fn startup(bin: &Path, runs: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    println!("binary: {} ({:.1} MB)", bin.display(), size as f64 / 1e6);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("existing.db");
    if !extra.is_empty() {
        println!("settings: {extra:?}");
    }
    starts(bin, 1, Some(&db), extra).await?;
    let (existing, rss) = starts(bin, runs, Some(&db), extra).await?;
    report_starts("existing database", &existing);
    let (fresh, _) = starts(bin, runs, None, extra).await?;
    report_starts("new database", &fresh);
    println!(
        "idle RSS 0.5 s after start: median {:.1} MiB, max {:.1} MiB",
        rss[rss.len() / 2] as f64 / 1024.0,
        rss[rss.len() - 1] as f64 / 1024.0
    );
    Ok(())
}

/// What one load run sends: to `path`, connection `c` posts `body(c)`.
struct Load<'a> {
    bin: &'a Path,
    path: &'a str,
    body: &'a (dyn Fn(u64) -> serde_json::Value + Sync),
    seconds: u64,
    connections: u64,
    /// Settings for the server beyond the benchmark's own.
    extra: &'a [(&'a str, &'a str)],
}

async fn chat(bin: &Path, seconds: u64, connections: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let body = |c: u64| serde_json::json!({"message": "hello, how are you?", "session_id": format!("bench-{c}")});
    let load = Load {
        bin,
        path: "/api/v1/chat",
        body: &body,
        seconds,
        connections,
        extra,
    };
    let store = if extra.contains(&("STORE", "firestore")) {
        "Firestore"
    } else {
        "SQLite"
    };
    run_load(&load, &format!("offline model, {store}")).await
}

/// Loads one tool function: `calculate` or `search`.
async fn tool(bin: &Path, which: &str, seconds: u64, connections: u64) -> anyhow::Result<()> {
    let (path, body, what): (&str, serde_json::Value, &str) = match which {
        "calculate" => (
            "/api/v1/tools/calculate",
            serde_json::json!({"expression": "2 * (3 + 4) ^ 2 / sqrt(16)"}),
            "expression 2 * (3 + 4) ^ 2 / sqrt(16)",
        ),
        "search" => (
            "/api/v1/tools/search",
            serde_json::json!({"query": "cold start Cloud Run", "max_results": 5}),
            "query \"cold start Cloud Run\", built-in corpus",
        ),
        other => bail!("unknown tool {other:?}: calculate or search"),
    };
    let body = move |_: u64| body.clone();
    let load = Load {
        bin,
        path,
        body: &body,
        seconds,
        connections,
        extra: &[],
    };
    run_load(&load, what).await
}

async fn run_load(load: &Load<'_>, what: &str) -> anyhow::Result<()> {
    // Limits stay on (their store write is part of a request's cost), set
    // high enough that the benchmark measures serving, not refusing.
    let high = "100000000/60s";
    let mut settings = vec![
        ("RATE_LIMIT_CHAT", high),
        ("RATE_LIMIT_AGENT", high),
        ("RATE_LIMIT_TOOLS", high),
    ];
    settings.extend_from_slice(load.extra);
    let (server, _) = spawn(load.bin, None, &settings)?;
    wait_healthy(server.port).await?;
    let url = format!("http://127.0.0.1:{}{}", server.port, load.path);
    let rss_before = server.child.id().map(rss_kib).transpose()?.unwrap_or(0);

    let end = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..load.connections)
        .map(|c| {
            let url = url.clone();
            let body = (load.body)(c);
            tokio::spawn(async move {
                // One client per worker: one keep-alive connection each.
                let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < end {
                    let t = Instant::now();
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(t.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                Ok::<_, anyhow::Error>((latencies, errors))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await??;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let rss_after = server.child.id().map(rss_kib).transpose()?.unwrap_or(0);
    println!(
        "POST {} on {}, {what}, {} connections, {} s:",
        load.path,
        load.bin.display(),
        load.connections,
        load.seconds
    );
    println!(
        "  {} ok, {errors} errors, {:.0} req/s; latency p50 {}, p90 {}, p99 {}, max {}",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.9)),
        ms(percentile(&all, 0.99)),
        ms(all.last().copied().unwrap_or_default()),
    );
    println!(
        "  server RSS: {:.1} MiB before, {:.1} MiB after",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    Ok(())
}

/// A model that answers at once: `calculate` on every turn, so a run takes
/// exactly `max_steps` steps and all the time measured is the loop's.
struct InstantModel {
    call: agent_core::llm::ModelResponse,
}

#[async_trait::async_trait]
impl agent_core::llm::Model for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }

    fn provider(&self) -> &'static str {
        "bench"
    }

    async fn generate(
        &self,
        _: &agent_core::llm::ModelRequest,
    ) -> Result<agent_core::llm::ModelResponse, agent_core::llm::ModelError> {
        Ok(self.call.clone())
    }

    async fn stream(
        &self,
        _: agent_core::llm::ModelRequest,
    ) -> Result<agent_core::llm::ModelStream, agent_core::llm::ModelError> {
        bail_model()
    }
}

fn bail_model<T>() -> Result<T, agent_core::llm::ModelError> {
    Err(agent_core::llm::ModelError::Upstream {
        status: None,
        message: "not used by the benchmark".into(),
    })
}

/// The agent loop's own cost per step: request building, the tool call
/// (the calculator, microseconds), the step record, the turn bookkeeping.
async fn agent_loop(runs: u64) -> anyhow::Result<()> {
    use agent_core::llm::{Content, FunctionCall, ModelResponse, Part, Role, Usage};
    let call = ModelResponse {
        content: Content {
            role: Some(Role::Model),
            parts: vec![Part::FunctionCall(FunctionCall {
                id: Some("call_1".into()),
                name: "calculate".into(),
                args: serde_json::json!({"expression": "15 * 23"}),
            })],
            raw: None,
        },
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
        },
        model: "instant".into(),
    };
    let model = InstantModel { call };
    let tools =
        agent_core::tools::Registry::new().with(std::sync::Arc::new(agent_core::tools::calculator::Calculator::new()));
    let run = agent_core::agent::Run {
        task: "Calcula 15 * 23".into(),
        session_id: "bench".into(),
        max_steps: agent_core::agent::MAX_STEPS_CAP,
        system_instruction: None,
    };
    // Warm up, then measure.
    agent_core::agent::run(&model, &tools, &run, &|_| {}).await?;
    let mut per_step = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let outcome = agent_core::agent::run(&model, &tools, &run, &|_| {}).await?;
        per_step.push(started.elapsed() / outcome.total_steps as u32);
    }
    per_step.sort();
    println!(
        "agent loop, {} steps a run, {runs} runs, instant model, in-process calculator: per step median {:.1} us, p90 {:.1} us, max {:.1} us",
        agent_core::agent::MAX_STEPS_CAP,
        percentile(&per_step, 0.5).as_secs_f64() * 1e6,
        percentile(&per_step, 0.9).as_secs_f64() * 1e6,
        per_step.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
    );

    // The README's task with the offline model: two model turns (plan the
    // calls, answer from the results) and two steps (calculate, search).
    let offline = agent_core::llm::offline::OfflineModel::new();
    let mut builds = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let index = agent_core::tools::search::SearchIndex::builtin();
        builds.push(started.elapsed());
        std::hint::black_box(index);
    }
    builds.sort();
    let index = std::sync::Arc::new(agent_core::tools::search::SearchIndex::builtin());
    let (units, terms) = index.index_stats();
    println!(
        "indexing the built-in corpus ({units} sections, {terms} terms), 50 builds: median {:.2} ms, max {:.2} ms",
        percentile(&builds, 0.5).as_secs_f64() * 1e3,
        builds.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let tools = tools.with(std::sync::Arc::new(agent_core::tools::search::Search::new(index)));
    let run = agent_core::agent::Run {
        task: "Calcula 15 * 23 y busca información sobre matemáticas".into(),
        max_steps: agent_core::agent::DEFAULT_MAX_STEPS,
        ..run
    };
    agent_core::agent::run(&offline, &tools, &run, &|_| {}).await?;
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let outcome = agent_core::agent::run(&offline, &tools, &run, &|_| {}).await?;
        anyhow::ensure!(
            outcome.total_steps == 2 && outcome.response.contains("345"),
            "unexpected run: {outcome:?}"
        );
        per_run.push(started.elapsed());
    }
    per_run.sort();
    println!(
        "agent run of the README task, offline model, in-process calculator and search, {runs} runs: \
         median {:.1} us a run ({:.1} us a step, model included), p90 {:.1} us",
        percentile(&per_run, 0.5).as_secs_f64() * 1e6,
        percentile(&per_run, 0.5).as_secs_f64() * 1e6 / 2.0,
        percentile(&per_run, 0.9).as_secs_f64() * 1e6,
    );
    Ok(())
}

/// Asynchronous tasks end to end: submitted (202) by `concurrency` clients,
/// then polled until every one is completed.
async fn tasks(bin: &Path, count: u64, concurrency: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let worker_bin = extra
        .iter()
        .find(|(k, _)| *k == "WORKER")
        .map(|(_, v)| PathBuf::from(v));
    let mut settings: Vec<(&str, &str)> = vec![("RATE_LIMIT_AGENT", "off"), ("RATE_LIMIT_TASKS", "off")];
    settings.extend(extra.iter().filter(|(k, _)| *k != "WORKER"));
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("tasks.db");

    // The worker and its push subscription, for QUEUE=pubsub.
    let mut _worker = None;
    if let Some(worker_bin) = &worker_bin {
        let (worker, _) = spawn(worker_bin, Some(&db), &settings)?;
        wait_healthy(worker.port).await?;
        let get = |k: &str| extra.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
        let host = get("PUBSUB_EMULATOR_HOST").context("WORKER needs PUBSUB_EMULATOR_HOST")?;
        let project = get("PUBSUB_PROJECT").context("WORKER needs PUBSUB_PROJECT")?;
        let topic = get("PUBSUB_TOPIC").unwrap_or("agent-tasks");
        let admin = agent_core::testing::PubSubAdmin::new(host, project);
        admin.create_topic(topic).await;
        let subscription = format!("bench-{}", worker.port);
        admin
            .create_push_subscription(&subscription, topic, &format!("http://127.0.0.1:{}/", worker.port))
            .await;
        _worker = Some(worker);
    }
    let (server, _) = spawn(bin, Some(&db), &settings)?;
    wait_healthy(server.port).await?;
    let base = format!("http://127.0.0.1:{}", server.port);

    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (base, next) = (base.clone(), next.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut submitted = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(submitted);
                    }
                    let t = Instant::now();
                    let body = serde_json::json!({"task": format!("Calcula {i} * 2"), "async": true});
                    let answer = http.post(format!("{base}/api/v1/agent")).json(&body).send().await?;
                    anyhow::ensure!(answer.status() == 202, "submission answered {}", answer.status());
                    let answer: serde_json::Value = answer.json().await?;
                    let id = answer["task_id"].as_str().context("no task_id")?.to_string();
                    submitted.push((id, t.elapsed()));
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    for client in clients {
        for (id, latency) in client.await?? {
            ids.push(id);
            latencies.push(latency);
        }
    }
    let submitted_in = started.elapsed();
    latencies.sort();

    let http = reqwest::Client::new();
    let mut pending = ids;
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pending.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} tasks not completed after 600 s",
            pending.len()
        );
        let mut still = Vec::new();
        for id in pending {
            let task: serde_json::Value = http
                .get(format!("{base}/api/v1/tasks/{id}"))
                .send()
                .await?
                .json()
                .await?;
            match task["status"].as_str() {
                Some("completed") => {}
                Some("failed") => bail!("task {id} failed: {task}"),
                _ => still.push(id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = started.elapsed();
    let queue = if worker_bin.is_some() {
        "Pub/Sub emulator push to agent_worker"
    } else {
        "local queue"
    };
    println!(
        "async tasks on {} ({queue}), {count} tasks from {concurrency} clients:",
        bin.display()
    );
    println!(
        "  submitted in {:.2} s ({:.0} per second), 202 latency p50 {}, p99 {}",
        submitted_in.as_secs_f64(),
        count as f64 / submitted_in.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
    println!(
        "  all completed in {:.2} s: {:.0} tasks per second end to end",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
