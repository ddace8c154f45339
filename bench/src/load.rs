//! `bench chat` and `bench tool`: requests per second and latency on
//! keep-alive connections, and what a request costs: the function's CPU
//! time, the emulator's when the run started it, and the store calls and
//! documents the function counts in `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::emulator::{Store, nonce};
use crate::procfs::{cpu_time, group_cpu_time, rss_kib};
use crate::{metrics, ms, percentile, spawn, wait_healthy};

/// What one load run sends: to `path`, connection `c` posts `body(c)`.
struct Load<'a> {
    bin: &'a Path,
    path: &'a str,
    body: &'a (dyn Fn(u64) -> serde_json::Value + Sync),
    seconds: u64,
    connections: u64,
    /// Settings for the server beyond the benchmark's own.
    extra: &'a [(&'a str, &'a str)],
    /// Requests each connection sends before the measured period, with its
    /// own body: a chat session grown to a size.
    grow: u64,
    /// Requests each connection sends before the measured period with its
    /// body's `session_id` replaced by one of their own: a warm-up that
    /// leaves the measured sessions as they were.
    warmup: u64,
    /// The process group of the emulator this run started, whose CPU time
    /// is reported.
    emulator: Option<u32>,
    /// Sent with every request (the credential, with `AUTH`).
    headers: reqwest::header::HeaderMap,
    /// Each measured request's `message` gets a suffix of its own, so that
    /// no two requests are the same model input (response cache misses).
    vary: bool,
}

/// The settings `bench chat` reads itself rather than passing them to the
/// function.
const CHAT_OPTIONS: [&str; 3] = ["SESSION_MESSAGES", "WARMUP", "AUTH"];

/// Chat turns on keep-alive connections, each connection on a session of
/// its own that this run creates (its first turn creates it): fresh
/// sessions, whatever the store already holds. `SESSION_MESSAGES=N` first
/// grows each one to N messages (N/2 turns through the API, outside the
/// measured period); `WARMUP=N` first sends N turns a connection on other
/// sessions, e.g. to warm a fresh emulator as much as a growth would.
/// `AUTH=key|token` sends a credential with every request (see
/// [`crate::auth`]).
pub(crate) async fn chat(bin: &Path, seconds: u64, connections: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let option = |name: &str| -> anyhow::Result<u64> {
        let value = extra.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        crate::parse(value, 0).with_context(|| format!("{name} must be a number"))
    };
    let messages = option("SESSION_MESSAGES")?;
    let warmup = option("WARMUP")?;
    let auth = extra.iter().find(|(k, _)| *k == "AUTH").map(|(_, v)| *v);
    let credential = crate::auth::Credential::new(auth).await?;
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .filter(|(k, _)| !CHAT_OPTIONS.contains(k))
        .copied()
        .collect();
    let nonce = nonce();
    let store = Store::prepare(&extra, &nonce).await?;
    let body =
        |c: u64| serde_json::json!({"message": "hello, how are you?", "session_id": format!("bench-{nonce}-{c}")});
    // A turn stores two messages: the user's and the model's.
    let grow = messages.div_ceil(2);
    let mut vars = store.vars();
    vars.extend(credential.vars.iter().map(|(k, v)| (*k, v.as_str())));
    let load = Load {
        bin,
        path: "/api/v1/chat",
        body: &body,
        seconds,
        connections,
        extra: &vars,
        grow,
        warmup,
        emulator: store.emulator.as_ref().and_then(crate::emulator::Emulator::group),
        headers: credential.headers.clone(),
        vary: false,
    };
    let mut what = format!("offline model, {}, ", store.label);
    if grow == 0 {
        what.push_str("fresh sessions");
    } else {
        what.push_str(&format!("sessions grown to {} messages", grow * 2));
    }
    if warmup > 0 {
        what.push_str(&format!(", after {warmup} warm-up turns a connection"));
    }
    if auth.is_some() {
        what.push_str(&format!(", {}", credential.label));
    }
    let result = run_load(&load, &what).await;
    if let Some(line) = credential.report()
        && result.is_ok()
    {
        println!("  {line}");
    }
    store.stop().await;
    result
}

/// Loads one tool function: `calculate` or `search` on its JSON route, or
/// `mcp-calculate`, the same expression as an MCP `tools/call` on `/mcp`.
pub(crate) async fn tool(bin: &Path, which: &str, seconds: u64, connections: u64) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
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
        "mcp-calculate" => {
            headers.insert(
                reqwest::header::ACCEPT,
                reqwest::header::HeaderValue::from_static("application/json, text/event-stream"),
            );
            headers.insert(
                "mcp-protocol-version",
                reqwest::header::HeaderValue::from_static("2025-06-18"),
            );
            (
                "/mcp",
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                    "name": "calculate", "arguments": {"expression": "2 * (3 + 4) ^ 2 / sqrt(16)"}}}),
                "MCP tools/call calculate, expression 2 * (3 + 4) ^ 2 / sqrt(16)",
            )
        }
        other => bail!("unknown tool {other:?}: calculate, search or mcp-calculate"),
    };
    let body = move |_: u64| body.clone();
    let load = Load {
        bin,
        path,
        body: &body,
        seconds,
        connections,
        extra: &[],
        grow: 0,
        warmup: 0,
        emulator: None,
        headers,
        vary: false,
    };
    run_load(&load, what).await
}

/// `bench cache`: chat turns on new sessions (no `session_id`, so no
/// history) with the response cache in memory, three ways: the same
/// message every time with `CACHE=off` (every turn calls the model), a
/// different message every time with `CACHE=memory` (every turn a miss:
/// the key, the lookup, the call, the entry kept), and the same message
/// every time with `CACHE=memory` after one warm-up turn (every turn a
/// hit). What a hit saves and what a miss adds, on the offline model.
pub(crate) async fn cache(bin: &Path, seconds: u64, connections: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let body = |_: u64| serde_json::json!({"message": "What does a cold start cost on Cloud Run?"});
    let runs: [(&str, bool, &str); 3] = [
        ("off", false, "CACHE=off, the same message (every turn calls the model)"),
        (
            "memory",
            true,
            "CACHE=memory, a new message every turn (every turn a miss)",
        ),
        ("memory", false, "CACHE=memory, the same message (every turn a hit)"),
    ];
    for (mode, vary, what) in runs {
        // Each run on a fresh SQLite file of its own (`spawn`).
        let mut vars = vec![("CACHE", mode)];
        vars.extend_from_slice(extra);
        let load = Load {
            bin,
            path: "/api/v1/chat",
            body: &body,
            seconds,
            connections,
            extra: &vars,
            grow: 0,
            // One turn each before the measured period: the hit run's
            // answer is then kept.
            warmup: 1,
            emulator: None,
            headers: reqwest::header::HeaderMap::new(),
            vary,
        };
        run_load(&load, &format!("offline model, SQLite, new sessions, {what}")).await?;
    }
    Ok(())
}

/// Each connection posts its body `grow` times, or with a `session_id` of
/// its own `warmup` times, all connections at once; any answer but a
/// success is an error.
async fn prepare(load: &Load<'_>, url: &str, requests: u64, warmup: bool) -> anyhow::Result<()> {
    let clients: Vec<_> = (0..load.connections)
        .map(|c| {
            let url = url.to_string();
            let mut body = (load.body)(c);
            if warmup && let Some(id) = body.get_mut("session_id") {
                *id = serde_json::Value::String(format!("warmup-{}", id.as_str().unwrap_or_default()));
            }
            let headers = load.headers.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .default_headers(headers)
                    .build()?;
                for i in 0..requests {
                    let answer = http.post(&url).json(&body).send().await?;
                    let status = answer.status();
                    anyhow::ensure!(status.is_success(), "request {i} of connection {c} answered {status}");
                    answer.bytes().await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(())
}

/// How many messages the session of connection 0 holds
/// (`GET /api/v1/sessions/{id}`, a page of 1000 at a time), to show a
/// growth happened.
async fn session_size(load: &Load<'_>, base: &str) -> anyhow::Result<usize> {
    let body = (load.body)(0);
    let id = body["session_id"].as_str().context("the body names no session")?;
    let http = reqwest::Client::builder()
        .default_headers(load.headers.clone())
        .build()?;
    let (mut size, mut cursor) = (0, None::<String>);
    loop {
        // Cursors are base64url: nothing in them needs escaping.
        let after = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page: serde_json::Value = http
            .get(format!("{base}/api/v1/sessions/{id}?limit=1000{after}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        size += page["messages"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(size),
        }
    }
}

/// CPU time so far: the function's, the emulator's group's (if any), this
/// load generator's.
fn cpu_now(server: Option<u32>, emulator: Option<u32>) -> anyhow::Result<[Duration; 3]> {
    Ok([
        server.map(cpu_time).transpose()?.unwrap_or_default(),
        emulator.map(group_cpu_time).transpose()?.unwrap_or_default(),
        cpu_time(std::process::id())?,
    ])
}

async fn run_load(load: &Load<'_>, what: &str) -> anyhow::Result<()> {
    // Limits stay on (their store write is part of a request's cost), set
    // high enough that the benchmark measures serving, not refusing: the
    // most a limit may be, 10000, over the shortest window. The sliding log
    // then holds a second's requests, 8 bytes each.
    let high = "10000/1s";
    let mut settings = vec![
        ("RATE_LIMIT_CHAT", high),
        ("RATE_LIMIT_AGENT", high),
        ("RATE_LIMIT_TOOLS", high),
    ];
    settings.extend_from_slice(load.extra);
    let (server, _) = spawn(load.bin, None, &settings)?;
    wait_healthy(server.port).await?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let url = format!("{base}{}", load.path);
    if load.warmup > 0 {
        let t = Instant::now();
        eprintln!(
            "warm-up: {} requests a connection on sessions of their own...",
            load.warmup
        );
        prepare(load, &url, load.warmup, true).await?;
        eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
    }
    let mut grown = None;
    if load.grow > 0 {
        let t = Instant::now();
        eprintln!(
            "growing each connection's session: {} requests a connection...",
            load.grow
        );
        prepare(load, &url, load.grow, false).await?;
        eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
        grown = Some(session_size(load, &base).await?);
    }

    // Start-up, warm-up and growth are done: from here on is measured.
    let http = reqwest::Client::builder()
        .default_headers(load.headers.clone())
        .build()?;
    let metrics_before = metrics::scrape(&http, &base).await?;
    let pid = server.child.id();
    let rss_before = pid.map(rss_kib).transpose()?.unwrap_or(0);
    let cpu_before = cpu_now(pid, load.emulator)?;

    let end = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..load.connections)
        .map(|c| {
            let url = url.clone();
            let mut body = (load.body)(c);
            let headers = load.headers.clone();
            let vary = load.vary;
            tokio::spawn(async move {
                let message = body["message"].as_str().unwrap_or_default().to_string();
                let mut sent = 0u64;
                // One client per worker: one keep-alive connection each.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .default_headers(headers)
                    .build()?;
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < end {
                    if vary {
                        sent += 1;
                        body["message"] = serde_json::Value::String(format!("{message} ({c}-{sent})"));
                    }
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
    let cpu_after = cpu_now(pid, load.emulator)?;
    let metrics_after = metrics::scrape(&http, &base).await?;
    all.sort();
    let rss_after = pid.map(rss_kib).transpose()?.unwrap_or(0);
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
    if let Some(size) = grown {
        println!("  the session of connection 0 held {size} messages before the measured period");
    }
    let ok = all.len();
    let [function, emulator, generator] = [0, 1, 2].map(|i| cpu_after[i].saturating_sub(cpu_before[i]));
    let per_request = |cpu: Duration| match ok {
        0 => "n/a".to_string(),
        n => format!("{:.3} ms", cpu.as_secs_f64() * 1000.0 / n as f64),
    };
    let cores = |cpu: Duration| cpu.as_secs_f64() / elapsed.as_secs_f64();
    let mut cpu = format!(
        "  CPU per ok request (utime+stime over the measured period): function {} ({:.2} s, {:.2} cores)",
        per_request(function),
        function.as_secs_f64(),
        cores(function)
    );
    if load.emulator.is_some() {
        cpu.push_str(&format!(
            "; emulator {} ({:.2} s, {:.2} cores)",
            per_request(emulator),
            emulator.as_secs_f64(),
            cores(emulator)
        ));
    }
    cpu.push_str(&format!("; load generator {:.2} cores", cores(generator)));
    println!("{cpu}");
    for line in metrics::per_request(&metrics_before, &metrics_after, ok) {
        println!("  {line}");
    }
    if let Some(line) = metrics::cache_per_request(&metrics_before, &metrics_after, ok) {
        println!("  {line}");
    }
    if errors > 0 {
        println!("  (counts divided by the ok requests; the {errors} errors made calls too)");
    }
    Ok(())
}
