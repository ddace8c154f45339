//! `bench startup`: cold start and idle memory.

use std::path::Path;
use std::time::Duration;

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
