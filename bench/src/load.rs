//! `bench chat` and `bench tool`: requests per second and latency on
//! keep-alive connections.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::procfs::rss_kib;
use crate::{ms, percentile, spawn, wait_healthy};

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

pub(crate) async fn chat(bin: &Path, seconds: u64, connections: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
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
pub(crate) async fn tool(bin: &Path, which: &str, seconds: u64, connections: u64) -> anyhow::Result<()> {
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
