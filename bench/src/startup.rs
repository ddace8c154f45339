//! `bench startup`: cold start and idle memory; `bench first-answer`: exec
//! to the first chat answer.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::emulator::{Store, nonce};
use crate::procfs::rss_kib;
use crate::{ms, percentile, spawn, wait_healthy};

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
pub(crate) async fn startup(bin: &Path, runs: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let store = Store::prepare(extra, &nonce()).await?;
    let result = startups(bin, runs, &store.vars()).await;
    store.stop().await;
    result
}

async fn startups(bin: &Path, runs: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
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

/// Exec to the first answer of `POST /api/v1/chat` on a new session, over
/// `runs` fresh processes on one existing store (an SQLite file a first,
/// uncounted run created; or Firestore, on the emulator the settings name or
/// on a fresh one, which that first run wakes).
pub(crate) async fn first_answer(bin: &Path, runs: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let nonce = nonce();
    let store = Store::prepare(extra, &nonce).await?;
    let result = first_answers(bin, runs, &store.vars(), &nonce).await;
    let on = match &store.label[..] {
        "SQLite" => "SQLite, existing database".to_string(),
        other => other.to_string(),
    };
    store.stop().await;
    let mut times = result?;
    times.sort();
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    println!("binary: {} ({:.1} MB)", bin.display(), size as f64 / 1e6);
    println!(
        "first chat answer (exec to the first 200 on POST /api/v1/chat, a new session), offline model, {on}, {} runs: \
         min {}, median {}, p90 {}, max {}",
        times.len(),
        ms(times[0]),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.9)),
        ms(times[times.len() - 1]),
    );
    Ok(())
}

async fn first_answers(bin: &Path, runs: u64, extra: &[(&str, &str)], nonce: &str) -> anyhow::Result<Vec<Duration>> {
    anyhow::ensure!(runs > 0, "first-answer needs at least one run");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("existing.db");
    // Limits stay on (their store write is part of the answer's cost), set
    // high enough that the runs are never refused.
    let mut settings = vec![("RATE_LIMIT_CHAT", "10000/60s")];
    settings.extend_from_slice(extra);
    let mut times = Vec::new();
    for run in 0..=runs {
        let body = serde_json::json!({"message": "hello, how are you?", "session_id": format!("first-{nonce}-{run}")});
        let body = body.to_string();
        let request = format!(
            "POST /api/v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (mut server, started) = spawn(bin, Some(&db), &settings)?;
        first_200(server.port, request.as_bytes()).await?;
        let elapsed = started.elapsed();
        server.child.kill().await?;
        // Run 0 creates the database (or wakes the emulator): not counted.
        if run > 0 {
            times.push(elapsed);
        }
    }
    Ok(times)
}

/// Sends `request` on a fresh connection as soon as one is accepted, and
/// again every 0.2 ms until a whole answer with status 200 is read.
async fn first_200(port: u16, request: &[u8]) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut answer = Vec::new();
            if s.write_all(request).await.is_ok()
                && s.read_to_end(&mut answer).await.is_ok()
                && answer.get(9..12) == Some(b"200")
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    bail!("no 200 on POST /api/v1/chat within 30 s on port {port}")
}
