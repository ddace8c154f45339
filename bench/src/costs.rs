//! `bench costs`: what each kind of operation asks of Firestore, read off
//! the functions' `/metrics` (`store_operations_total`,
//! `store_documents_total`, `store_history_fallbacks_total`) before and
//! after each operation, on the offline model.
//!
//! Counts do not depend on timing: every operation is measured on its own
//! (one at a time, nothing else running), and the report says whether all
//! of a kind cost the same. What could run beside an operation is kept out:
//!
//! - The local queue's sweep of the store (`shared/src/queue/local.rs`: a
//!   `runnable` query `FIRST_SWEEP_AFTER` = 0.5 s after start-up, then every
//!   `SWEEP_EVERY` = 5 s; constants, not settings). `agent_function`'s
//!   operations start only within [`START_BEFORE`] of a sweep seen in
//!   `/metrics` (its query counted), and count only if they ended within
//!   [`SAFE_END`] of it, before the next one; the idle gap up to the next
//!   sweep is measured too, which is one sweep's cost, reported on a line
//!   of its own.
//! - Polling for an asynchronous task's end: the measurement waits for the
//!   worker's own count of the task (`worker_tasks_total{outcome=
//!   "completed"}`, counted once its outcome is stored), which asks nothing
//!   of the store; the task is then read once with `GET
//!   /api/v1/tasks/{id}` outside its measurement, to check it completed, and
//!   that read is measured as "a task read".
//!
//! Reads are measured too: a page of a session and a page of the sessions
//! (chat), a task and a page of the tasks (agent); each is one get or one
//! query, and writes nothing.
//!
//! The functions run with a cleared environment and only the settings the
//! report names, each on a Firestore project of its own.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::emulator::{Store, nonce};
use crate::metrics::{self, Cost};

/// An operation of `agent_function` starts only this soon after a sweep was
/// seen (the next one comes 5 s after it)…
const START_BEFORE: Duration = Duration::from_millis(4000);
/// …and counts only if it ended this soon after it (the next sweep is 5 s
/// after the last, give or take the scheduling of its task).
const SAFE_END: Duration = Duration::from_millis(4900);
/// How often `/metrics` is read while waiting.
const POLL: Duration = Duration::from_millis(10);
/// How long a sweep's query is given to return (its documents are counted
/// then) before the counts after it are read.
const SETTLE: Duration = Duration::from_millis(200);
/// The default chat rate limit (`shared/src/config.rs`) admits this many
/// turns a minute from one client.
const DEFAULT_CHAT_LIMIT: u64 = 100;

/// `bench costs BIN_DIR [N] [FIRESTORE_EMULATOR_HOST=host:port]`.
pub(crate) async fn costs(dir: &Path, n: u64, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "costs needs at least one operation of each kind");
    if let Some((name, _)) = extra.iter().find(|(k, _)| *k != "FIRESTORE_EMULATOR_HOST") {
        bail!("costs takes no setting but FIRESTORE_EMULATOR_HOST (the measured settings are its own): {name}");
    }
    let chat_bin = dir.join("chat_function");
    let agent_bin = dir.join("agent_function");
    for bin in [&chat_bin, &agent_bin] {
        anyhow::ensure!(
            bin.is_file(),
            "no {} (build chat_function and agent_function)",
            bin.display()
        );
    }
    let host = extra
        .iter()
        .find(|(k, _)| *k == "FIRESTORE_EMULATOR_HOST")
        .map(|(_, v)| v.to_string())
        .or_else(|| std::env::var("FIRESTORE_EMULATOR_HOST").ok().filter(|h| !h.is_empty()));
    let nonce = nonce();
    let mut settings = vec![("STORE", "firestore")];
    if let Some(host) = &host {
        settings.push(("FIRESTORE_EMULATOR_HOST", host));
    }
    let store = Store::prepare(&settings, &nonce).await?;
    let result = measure_all(&chat_bin, &agent_bin, n, &store, &nonce).await;
    store.stop().await;
    result
}

async fn measure_all(chat: &Path, agent: &Path, n: u64, store: &Store, nonce: &str) -> anyhow::Result<()> {
    // The emulator's host, without the project Store::prepare named: each
    // function gets a project of its own.
    let emulator: Vec<(&str, &str)> = store
        .vars()
        .into_iter()
        .filter(|(k, _)| *k != "FIRESTORE_PROJECT")
        .collect();
    println!(
        "Firestore calls per operation, from the functions' /metrics (store_operations_total, store_documents_total, \
         store_history_fallbacks_total);\n\
         offline model, {}, chat_function and agent_function from {};\n\
         the average of {n} operations of each kind, each measured on its own (\"all {n} alike\": each cost the same):",
        store.label,
        chat.parent().unwrap_or(Path::new(".")).display(),
    );

    // Chat: the default limit, then none.
    let mut on_settings = emulator.clone();
    let on_project = format!("costs-{nonce}-chat");
    on_settings.push(("FIRESTORE_PROJECT", &on_project));
    // 2n turns from one client: past the default limit, one high enough
    // (a hit costs the same whatever the limit).
    let high_limit = 2 * n > DEFAULT_CHAT_LIMIT;
    let limit_label = if high_limit {
        on_settings.push(("RATE_LIMIT_CHAT", "10000/60s"));
        "RATE_LIMIT_CHAT=10000/60s (the default, 100/60s, would refuse some of these turns)"
    } else {
        "RATE_LIMIT_CHAT unset (the default limit)"
    };
    println!("chat_function, POST /api/v1/chat, {limit_label}, so each turn includes its rate-limit hit:");
    let (new_on, existing_on) = chat_turns(chat, &on_settings, n, &format!("costs-{nonce}-on")).await?;
    let mut off_settings = emulator.clone();
    let off_project = format!("costs-{nonce}-chat-off");
    off_settings.extend([("FIRESTORE_PROJECT", off_project.as_str()), ("RATE_LIMIT_CHAT", "off")]);
    println!("chat_function, POST /api/v1/chat, RATE_LIMIT_CHAT=off: the turn alone:");
    let (new_off, existing_off) = chat_turns(chat, &off_settings, n, &format!("costs-{nonce}-off")).await?;
    println!("a rate-limit hit alone (RATE_LIMIT_CHAT on minus off):");
    println!(
        "  on a new session's turn: {}",
        new_on.scaled(1.0 / n as f64).plus(-1.0 / n as f64, &new_off).describe()
    );
    println!(
        "  on an existing session's turn: {}",
        existing_on
            .scaled(1.0 / n as f64)
            .plus(-1.0 / n as f64, &existing_off)
            .describe()
    );

    let mut agent_settings = emulator;
    let agent_project = format!("costs-{nonce}-agent");
    agent_settings.extend([
        ("FIRESTORE_PROJECT", agent_project.as_str()),
        ("RATE_LIMIT_AGENT", "off"),
        ("RATE_LIMIT_TASKS", "off"),
    ]);
    println!("agent_function, RATE_LIMIT_AGENT=off, RATE_LIMIT_TASKS=off, QUEUE unset (the local queue):");
    agent_runs(agent, &agent_settings, n, nonce).await
}

/// A function this measurement started: on a free port, with a cleared
/// environment and only `settings` (and the offline model), its log kept
/// to explain a failed start.
struct Function {
    child: Child,
    base: String,
    http: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Function {
    async fn start(bin: &Path, settings: &[(&str, &str)]) -> anyhow::Result<Function> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("function.log");
        let port = crate::free_port()?;
        let child = Command::new(bin)
            .env_clear()
            // What is counted is what the command line says, not a .env file's settings.
            .env("ENV_FILE", "off")
            .env("PORT", port.to_string())
            .env("LLM_PROVIDER", "offline")
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let function = Function {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            log,
            _dir: dir,
        };
        if let Err(err) = crate::wait_healthy(port).await {
            bail!("{err}; {} logged:\n{}", bin.display(), function.log_tail());
        }
        Ok(function)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        metrics::scrape_text(&self.http, &self.base).await
    }

    /// POSTs `body` to `path`; the answer's JSON, if its status is `status`.
    async fn post(&self, path: &str, body: &serde_json::Value, status: u16) -> anyhow::Result<serde_json::Value> {
        let answer = self.http.post(format!("{}{path}", self.base)).json(body).send().await?;
        let got = answer.status();
        let text = answer.text().await?;
        anyhow::ensure!(
            got.as_u16() == status,
            "POST {path} answered {got}, not {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }

    /// GETs `path`; the answer's JSON, if it is a 200.
    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self.http.get(format!("{}{path}", self.base)).send().await?;
        let got = answer.status();
        let text = answer.text().await?;
        anyhow::ensure!(got.as_u16() == 200, "GET {path} answered {got}, not 200: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Measures operations one at a time, each between two reads of
/// `/metrics`. With `sweeps`, only between the local queue's sweeps (see
/// the module's documentation), measuring the idle gaps too.
struct Meter<'a> {
    function: &'a Function,
    sweeps: Option<Sweeps>,
}

struct Sweeps {
    /// When each sweep was seen.
    seen: Vec<Instant>,
    /// The idle gaps up to a sweep: each holds one sweep and nothing else.
    gaps: Vec<Cost>,
}

impl<'a> Meter<'a> {
    fn plain(function: &'a Function) -> Meter<'a> {
        Meter { function, sweeps: None }
    }

    /// Waits for a sweep, to measure from there.
    async fn between_sweeps(function: &'a Function) -> anyhow::Result<Meter<'a>> {
        let seen = vec![wait_sweep(function).await?];
        Ok(Meter {
            function,
            sweeps: Some(Sweeps { seen, gaps: Vec::new() }),
        })
    }

    /// The cost of `op` and its value; `None` when it ran too close to a
    /// sweep to count (run it again).
    async fn measure<T>(&mut self, op: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<Option<(Cost, T)>> {
        if self
            .sweeps
            .as_ref()
            .is_some_and(|s| s.seen.last().is_some_and(|t| t.elapsed() > START_BEFORE))
        {
            self.idle_gap().await?;
        }
        let before = metrics::parse(&self.function.metrics().await?);
        let value = op.await?;
        let after = metrics::parse(&self.function.metrics().await?);
        if let Some(sweeps) = &self.sweeps
            && sweeps.seen.last().is_some_and(|t| t.elapsed() > SAFE_END)
        {
            eprintln!("  an operation ended too close to the next sweep: not counted, run again");
            return Ok(None);
        }
        Ok(Some((Cost::between(&before, &after), value)))
    }

    /// Measures the time up to the next sweep, doing nothing: one sweep's
    /// cost.
    async fn idle_gap(&mut self) -> anyhow::Result<()> {
        let Some(sweeps) = &mut self.sweeps else {
            return Ok(());
        };
        let before = metrics::parse(&self.function.metrics().await?);
        sweeps.seen.push(wait_sweep(self.function).await?);
        let after = metrics::parse(&self.function.metrics().await?);
        sweeps.gaps.push(Cost::between(&before, &after));
        Ok(())
    }

    /// `op` until it counted.
    async fn measure_counted<T, F, Fut>(&mut self, mut op: F) -> anyhow::Result<(Cost, T)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        loop {
            if let Some(measured) = self.measure(op()).await? {
                return Ok(measured);
            }
        }
    }
}

/// The count of store queries: the sweep is the only query an idle
/// `agent_function` makes.
fn queries(text: &str) -> f64 {
    metrics::counter(text, "store_operations_total", &[("op", "query")])
}

/// Waits until the local queue's next sweep is counted (its query), then
/// lets it return. Returns a time the sweep's query was counted after: when
/// the last read of `/metrics` that did not show it was sent, so that the
/// next sweep is at least 5 s after it however slow the reads were.
async fn wait_sweep(function: &Function) -> anyhow::Result<Instant> {
    let mut asked = Instant::now();
    let was = queries(&function.metrics().await?);
    let deadline = asked + Duration::from_secs(12);
    loop {
        tokio::time::sleep(POLL).await;
        let before = asked;
        asked = Instant::now();
        if queries(&function.metrics().await?) > was {
            tokio::time::sleep(SETTLE).await;
            return Ok(before);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no sweep of the local queue (a store query) within 12 s: is the queue local?"
        );
    }
}

/// The average of `costs`, and whether they were all alike (or how they
/// differed).
fn summary(costs: &[Cost]) -> (Cost, String) {
    let n = costs.len();
    let total = costs.iter().fold(Cost::default(), |sum, c| sum.plus(1.0, c));
    let mut distinct: Vec<(&Cost, usize)> = Vec::new();
    for cost in costs {
        match distinct.iter_mut().find(|(c, _)| *c == cost) {
            Some((_, count)) => *count += 1,
            None => distinct.push((cost, 1)),
        }
    }
    let alike = if distinct.len() == 1 {
        format!("(all {n} alike)")
    } else {
        let kinds: Vec<String> = distinct
            .iter()
            .map(|(c, count)| format!("{count} x [{}]", c.describe()))
            .collect();
        format!("(NOT all alike: {})", kinds.join(", "))
    };
    (total.scaled(1.0 / n as f64), alike)
}

/// Prints `what` and the average of `costs` on the next line; returns the
/// total.
fn report(what: &str, costs: &[Cost]) -> Cost {
    let (average, alike) = summary(costs);
    println!("  {what}:\n    {} {alike}", average.describe());
    average.scaled(costs.len() as f64)
}

/// `n` turns on new sessions, then one on each of them again; the total cost
/// of each group.
async fn chat_turns(bin: &Path, settings: &[(&str, &str)], n: u64, prefix: &str) -> anyhow::Result<(Cost, Cost)> {
    let function = Function::start(bin, settings).await?;
    let result = async {
        let mut meter = Meter::plain(&function);
        let sessions: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        let mut groups = Vec::new();
        for _ in ["new", "existing"] {
            let mut costs = Vec::new();
            for session in &sessions {
                let body = serde_json::json!({"message": "hello, how are you?", "session_id": session});
                let (cost, _) = meter
                    .measure_counted(|| function.post("/api/v1/chat", &body, 200))
                    .await?;
                costs.push(cost);
            }
            groups.push(costs);
        }
        let new = report(&format!("a turn on a new session ({n} fresh session ids)"), &groups[0]);
        let existing = report(
            "a turn on an existing session (each of those, now 2 messages long)",
            &groups[1],
        );
        // Reads, which write nothing: a page of one message of each session
        // (4 messages long now), and the first 10 sessions of the list.
        let mut pages = Vec::new();
        let mut lists = Vec::new();
        for session in &sessions {
            let path = format!("/api/v1/sessions/{session}?limit=1");
            let (cost, _) = meter.measure_counted(|| function.get(&path)).await?;
            pages.push(cost);
            let (cost, _) = meter
                .measure_counted(|| function.get("/api/v1/sessions?limit=10"))
                .await?;
            lists.push(cost);
        }
        report(
            "a page of a session (GET /api/v1/sessions/{id}?limit=1: 1 message, and 1 more read to tell a next page)",
            &pages,
        );
        report(
            &format!("a page of the sessions (GET /api/v1/sessions?limit=10, of {n})"),
            &lists,
        );
        Ok((new, existing))
    }
    .await;
    function.stop().await;
    result
}

/// The count of tasks the worker finished as `outcome`.
fn finished(text: &str, outcome: &str) -> f64 {
    metrics::counter(text, "worker_tasks_total", &[("outcome", outcome)])
}

/// Synchronous runs, asynchronous tasks, task reads, the sweep, and the
/// claim.
async fn agent_runs(bin: &Path, settings: &[(&str, &str)], n: u64, nonce: &str) -> anyhow::Result<()> {
    let function = Function::start(bin, settings).await?;
    let result = async {
        let mut meter = Meter::between_sweeps(&function).await?;

        // Synchronous runs, each on a session of its own.
        let mut sync_costs = Vec::new();
        let mut sync_steps = Vec::new();
        for i in 0..n {
            let body = serde_json::json!({"task": "Calcula 2 + 2", "session_id": format!("costs-{nonce}-agent-{i}")});
            let (cost, answer) = meter
                .measure_counted(|| function.post("/api/v1/agent", &body, 200))
                .await?;
            sync_costs.push(cost);
            sync_steps.push(answer["total_steps"].as_u64().context("no total_steps in the answer")?);
        }

        // Asynchronous tasks: submitted, and run by the local queue up to
        // the worker's count of it; then read once, apart.
        let mut async_costs = Vec::new();
        let mut async_steps = Vec::new();
        let mut read_costs = Vec::new();
        let body = serde_json::json!({"task": "Calcula 3 + 3", "async": true});
        for _ in 0..n {
            let (cost, task_id) = meter
                .measure_counted(|| run_queued(&function, "/api/v1/agent", &body, 1.0))
                .await?;
            async_costs.push(cost);
            let path = format!("/api/v1/tasks/{task_id}");
            let (cost, task) = meter.measure_counted(|| function.get(&path)).await?;
            anyhow::ensure!(task["status"] == "completed", "the task the worker counted is {task}");
            read_costs.push(cost);
            async_steps.push(
                task["result"]["total_steps"]
                    .as_u64()
                    .context("no total_steps in the task's result")?,
            );
        }
        // Queued multi-agent runs of two subtasks, fanned out: the run and
        // its two children completed (three counted by the worker), then
        // the run read once with its tree, apart.
        let mut multi_costs = Vec::new();
        let mut tree_costs = Vec::new();
        let body = serde_json::json!({"task": "calculate 1 + 1 and calculate 1 + 2", "async": true});
        for _ in 0..n {
            let (cost, task_id) = meter
                .measure_counted(|| run_queued(&function, "/api/v1/multi-agent", &body, 3.0))
                .await?;
            multi_costs.push(cost);
            let path = format!("/api/v1/tasks/{task_id}");
            let (cost, task) = meter.measure_counted(|| function.get(&path)).await?;
            anyhow::ensure!(task["status"] == "completed", "the run the worker counted is {task}");
            let children = task["children"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(children == 2, "the run made {children} children, not 2: {task}");
            tree_costs.push(cost);
        }
        // The first 10 of the tasks (2n, all anonymous's) listed, newest first.
        let mut list_costs = Vec::new();
        for _ in 0..n {
            let (cost, _) = meter
                .measure_counted(|| function.get("/api/v1/tasks?limit=10"))
                .await?;
            list_costs.push(cost);
        }
        // At least two sweeps seen after the operations: one sweep's cost
        // with nothing else in flight, and how far apart two come.
        for _ in 0..2 {
            meter.idle_gap().await?;
        }
        let sweeps = meter.sweeps.take().context("measured between sweeps")?;

        let sync = report(
            &format!(
                "a synchronous agent run (POST /api/v1/agent {{\"task\":\"Calcula 2 + 2\",\"session_id\":...}}, \
                 200, {n} fresh session ids; total_steps {})",
                steps(&sync_steps)
            ),
            &sync_costs,
        );
        let tasks = report(
            &format!(
                "an asynchronous task (POST /api/v1/agent {{\"task\":\"Calcula 3 + 3\",\"async\":true}}, 202, then \
                 run by the local queue to completed; total_steps {}; no polling counted)",
                steps(&async_steps)
            ),
            &async_costs,
        );
        report(
            "a task read (GET /api/v1/tasks/{id}, of each of those tasks once completed)",
            &read_costs,
        );
        report(
            "a queued multi-agent run of two subtasks (POST /api/v1/multi-agent {\"task\":\"calculate 1 + 1 and \
             calculate 1 + 2\",\"async\":true}, 202, then fanned out on the local queue: planned, two child tasks, \
             resumed, completed; no polling counted)",
            &multi_costs,
        );
        report(
            "its read with its tree (GET /api/v1/tasks/{id}: the run, then each of its two children)",
            &tree_costs,
        );
        report(
            &format!(
                "a page of the tasks (GET /api/v1/tasks?limit=10, of {}: runs and children)",
                5 * n
            ),
            &list_costs,
        );
        let interval = sweeps
            .seen
            .windows(2)
            .map(|w| w[1] - w[0])
            .min()
            .map_or("n/a".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        report(
            &format!(
                "the local queue's sweep, idle (a `runnable` query every SWEEP_EVERY = 5 s, a constant in \
                 shared/src/queue/local.rs, no setting; the operations above ran between sweeps; {} sweeps, \
                 seen {interval} apart at the closest)",
                sweeps.gaps.len()
            ),
            &sweeps.gaps,
        );

        // The claim, from the code: an asynchronous task is a synchronous
        // run (the task created, its outcome committed) plus the claim and
        // one event write per step.
        if sync_steps.iter().chain(&async_steps).all(|s| *s == sync_steps[0]) {
            let steps = sync_steps[0] as f64;
            let difference = tasks.plus(-1.0, &sync).scaled(1.0 / n as f64);
            println!(
                "  an asynchronous task minus a synchronous run (total_steps {steps} in both):\n    {}",
                difference.describe()
            );
            // One event: counts.write() and counts.written(1) in add_event.
            let event = Cost::one("store_operations_total", "firestore", "write").plus(
                1.0,
                &Cost::one("store_documents_total", "firestore", "written"),
            );
            println!(
                "  the claim (TaskStore::claim in shared/src/store/firestore/tasks.rs: change_task's get of the task and \
                 its conditional commit) and the run's checks that its task is still its own (a get before each \
                 model call but the first and before each turn's tool calls: 2 for one step, worker::StillHeld), \
                 that difference less one event write per step:\n    {}",
                difference.plus(-steps, &event).describe()
            );
        } else {
            println!("  (the runs' step counts differ, so the claim is not derived from them)");
        }
        Ok(())
    }
    .await;
    function.stop().await;
    result
}

/// Submits a queued task to `route` and waits until the worker has
/// counted `completions` more tasks completed (a fanned-out run counts its
/// children too), which asks nothing of the store; its id.
async fn run_queued(
    function: &Function,
    route: &str,
    body: &serde_json::Value,
    completions: f64,
) -> anyhow::Result<String> {
    let done = finished(&function.metrics().await?, "completed");
    let accepted = function.post(route, body, 202).await?;
    let task_id = accepted["task_id"]
        .as_str()
        .context("no task_id in the 202")?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = function.metrics().await?;
        if finished(&text, "completed") >= done + completions {
            return Ok(task_id);
        }
        anyhow::ensure!(finished(&text, "failed") == 0.0, "a task failed (task {task_id})");
        anyhow::ensure!(Instant::now() < deadline, "task {task_id} not completed within 30 s");
        tokio::time::sleep(POLL).await;
    }
}

/// `1`, or `1 to 2` when the runs differed.
fn steps(steps: &[u64]) -> String {
    let min = steps.iter().min().copied().unwrap_or(0);
    let max = steps.iter().max().copied().unwrap_or(0);
    if min == max {
        format!("{min}")
    } else {
        format!("{min} to {max}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(text: &str) -> Cost {
        Cost::between(&[], &metrics::parse(text))
    }

    #[test]
    fn a_summary_averages_and_says_whether_all_were_alike() {
        let one = cost("store_operations_total{store=\"firestore\",op=\"get\"} 1\n");
        let two = cost("store_operations_total{store=\"firestore\",op=\"get\"} 2\n");
        let (average, alike) = summary(&[one.clone(), one.clone()]);
        assert_eq!(
            (average.describe().as_str(), alike.as_str()),
            ("get 1.00", "(all 2 alike)")
        );
        let (average, alike) = summary(&[one.clone(), two, one]);
        assert_eq!(average.describe(), "get 1.33");
        assert_eq!(alike, "(NOT all alike: 2 x [get 1.00], 1 x [get 2.00])");
    }

    #[test]
    fn step_counts_read_as_one_number_or_a_range() {
        assert_eq!(steps(&[1, 1]), "1");
        assert_eq!(steps(&[2, 1, 3]), "1 to 3");
    }
}
