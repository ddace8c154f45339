//! `bench tasks`: asynchronous tasks end to end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{ms, percentile, spawn, wait_healthy};

/// Asynchronous tasks end to end: submitted (202) by `concurrency` clients,
/// then polled until every one is completed.
pub(crate) async fn tasks(bin: &Path, count: u64, concurrency: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let worker_bin = extra
        .iter()
        .find(|(k, _)| *k == "WORKER")
        .map(|(_, v)| PathBuf::from(v));
    // KIND=multi submits multi-agent runs of two subtasks instead of agent
    // runs; KIND=agent2 the same two-part task as one agent run.
    let kind = extra.iter().find(|(k, _)| *k == "KIND").map_or("agent", |(_, v)| *v);
    let (route, two_parts) = match kind {
        "agent" => ("/api/v1/agent", false),
        "agent2" => ("/api/v1/agent", true),
        "multi" => ("/api/v1/multi-agent", true),
        other => bail!("KIND is agent, agent2 or multi, not {other:?}"),
    };
    let mut settings: Vec<(&str, &str)> = vec![("RATE_LIMIT_AGENT", "off"), ("RATE_LIMIT_TASKS", "off")];
    settings.extend(extra.iter().filter(|(k, _)| *k != "WORKER" && *k != "KIND"));
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
                    let task = if two_parts {
                        format!("calculate {i} + 1 and calculate {i} + 2")
                    } else {
                        format!("Calcula {i} * 2")
                    };
                    let body = serde_json::json!({"task": task, "async": true});
                    let answer = http.post(format!("{base}{route}")).json(&body).send().await?;
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
        "async tasks (KIND={kind}) on {} ({queue}), {count} tasks from {concurrency} clients:",
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
