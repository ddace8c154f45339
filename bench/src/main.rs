//! Measures what the performance budget promises (see BENCHMARKS.md):
//!
//! - `bench startup BIN [RUNS] [NAME=VALUE...]`: cold start, exec to the
//!   first 200 on `/health`, and idle RSS after start, over RUNS fresh
//!   processes, with extra settings (e.g. a provider) from NAME=VALUE.
//! - `bench chat BIN [SECONDS] [CONNECTIONS]`: starts BIN (a function or
//!   `local`) on the offline model and SQLite, then sends `POST
//!   /api/v1/chat` on CONNECTIONS keep-alive connections for SECONDS, and
//!   reports requests per second and latency percentiles.
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
        (Some("chat"), Some(bin)) => chat(Path::new(bin), parse(arg(2), 10)?, parse(arg(3), 64)?).await,
        _ => bail!(
            "usage: bench startup BIN [RUNS=20] [NAME=VALUE...] | bench chat BIN [SECONDS=10] [CONNECTIONS=64]\n\
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

async fn chat(bin: &Path, seconds: u64, connections: u64) -> anyhow::Result<()> {
    // The limit stays on (its store write is part of a request's cost), set
    // high enough that the benchmark measures serving, not refusing.
    let (server, _) = spawn(bin, None, &[("RATE_LIMIT_CHAT", "100000000/60s")])?;
    wait_healthy(server.port).await?;
    let url = format!("http://127.0.0.1:{}/api/v1/chat", server.port);
    let rss_before = server.child.id().map(rss_kib).transpose()?.unwrap_or(0);

    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|c| {
            let url = url.clone();
            tokio::spawn(async move {
                // One client per worker: one keep-alive connection each.
                let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
                let body = serde_json::json!({"message": "hello, how are you?", "session_id": format!("bench-{c}")});
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
        "POST /api/v1/chat on {}, offline model, SQLite, {connections} connections, {seconds} s:",
        bin.display()
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
