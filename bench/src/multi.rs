//! `bench multi`: what a multi-agent run costs beyond its model calls, and
//! what running its subtasks together saves, in process.
//!
//! 1. Orchestration overhead: with the offline model (answers in
//!    microseconds) and the in-process calculator, a task of N clauses is
//!    planned into N subtasks; the run's time is nearly all orchestration
//!    (plan parse and checks, waves, N agent loops, the synthesis), set
//!    against one agent run making the same N calls in one loop.
//! 2. Serial against parallel: a model double that answers every call
//!    after a fixed delay (a plan of N independent subtasks, then text),
//!    the run's wall time with the subtasks one at a time, four at a time,
//!    and all at once.

use std::time::{Duration, Instant};

use agent_core::llm::{Content, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Usage};
use agent_core::multi::{MultiRun, Role, Roles, Spent};
use agent_core::tools::Registry;

use crate::percentile;

/// Plays every role after `delay`: the plan of `subtasks` independent
/// subtasks, then text.
struct Delayed {
    delay: Duration,
    subtasks: usize,
}

struct Playing {
    delay: Duration,
    subtasks: usize,
    role: Role,
}

impl Roles for Delayed {
    fn model(&self, role: Role) -> Box<dyn Model> {
        Box::new(Playing {
            delay: self.delay,
            subtasks: self.subtasks,
            role,
        })
    }
}

#[async_trait::async_trait]
impl Model for Playing {
    fn name(&self) -> &str {
        "delayed"
    }

    fn provider(&self) -> &'static str {
        "bench"
    }

    async fn generate(&self, _: &ModelRequest) -> Result<ModelResponse, ModelError> {
        tokio::time::sleep(self.delay).await;
        let text = match self.role {
            Role::Planner => {
                let subtasks: Vec<_> = (1..=self.subtasks)
                    .map(|i| serde_json::json!({"id": format!("s{i}"), "description": format!("part {i}"), "tools": [], "depends_on": []}))
                    .collect();
                serde_json::json!({ "subtasks": subtasks }).to_string()
            }
            _ => "done".to_string(),
        };
        Ok(ModelResponse {
            content: Content::model_text(text),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
                ..Usage::default()
            },
            model: "delayed".into(),
            cost: None,
            cache_hit: None,
        })
    }

    async fn stream(&self, _: ModelRequest) -> Result<ModelStream, ModelError> {
        Err(ModelError::Upstream {
            status: None,
            message: "not used by the benchmark".into(),
        })
    }
}

/// The offline model in every role.
struct Offline;

impl Roles for Offline {
    fn model(&self, _: Role) -> Box<dyn Model> {
        Box::new(agent_core::llm::offline::OfflineModel::new())
    }
}

fn run_of(task: String, subtasks: usize, concurrency: usize) -> MultiRun {
    MultiRun {
        task,
        session_key: "bench".into(),
        max_subtasks: subtasks.max(1),
        max_steps: agent_core::agent::DEFAULT_MAX_STEPS,
        concurrency,
        kept_plan: None,
    }
}

pub(crate) async fn multi(runs: u64) -> anyhow::Result<()> {
    let tools = Registry::new().with(std::sync::Arc::new(agent_core::tools::calculator::Calculator::new()));
    println!("orchestration, offline model, in-process calculator, {runs} runs each:");
    for n in [1usize, 2, 4, 8] {
        let task = (1..=n)
            .map(|i| format!("calculate {i} + {i}"))
            .collect::<Vec<_>>()
            .join(" and ");
        let run = run_of(task.clone(), n, agent_core::multi::CONCURRENCY);
        let outcome = agent_core::multi::run(&Offline, &tools, &run, &Spent::default(), None, &|_| {}).await?;
        anyhow::ensure!(
            outcome.subtasks.len() == n,
            "planned {} subtasks, not {n}",
            outcome.subtasks.len()
        );
        let mut multi = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            agent_core::multi::run(&Offline, &tools, &run, &Spent::default(), None, &|_| {}).await?;
            multi.push(started.elapsed());
        }
        let one_loop = agent_core::agent::Run {
            task,
            session_key: "bench".into(),
            max_steps: agent_core::agent::MAX_STEPS_CAP,
            system_instruction: None,
        };
        let offline = agent_core::llm::offline::OfflineModel::new();
        let mut single = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let outcome = agent_core::agent::run(&offline, &tools, &one_loop, &|_| {}).await?;
            anyhow::ensure!(outcome.total_steps == n, "one loop made {} calls", outcome.total_steps);
            single.push(started.elapsed());
        }
        multi.sort();
        single.sort();
        let (m, s) = (percentile(&multi, 0.5), percentile(&single, 0.5));
        println!(
            "  {n} subtasks: multi-agent run median {:.1} us (p90 {:.1} us), one agent loop making the same {n} calls {:.1} us; \
             {:.1} us more a subtask",
            m.as_secs_f64() * 1e6,
            percentile(&multi, 0.9).as_secs_f64() * 1e6,
            s.as_secs_f64() * 1e6,
            (m.as_secs_f64() - s.as_secs_f64()) * 1e6 / n as f64,
        );
    }

    let delay = Duration::from_millis(50);
    let n = 8;
    println!("wall time of a run of {n} independent subtasks, every model call answered after {delay:?}:");
    for concurrency in [1, 4, n] {
        let roles = Delayed { delay, subtasks: n };
        let run = run_of("independent parts".into(), n, concurrency);
        let mut walls = Vec::new();
        for _ in 0..runs.clamp(1, 5) {
            let started = Instant::now();
            let outcome =
                agent_core::multi::run(&roles, &Registry::new(), &run, &Spent::default(), None, &|_| {}).await?;
            anyhow::ensure!(outcome.usage.model_calls as usize == n + 2, "{:?}", outcome.usage);
            walls.push(started.elapsed());
        }
        walls.sort();
        println!(
            "  {concurrency} at a time: median {:.0} ms ({} model calls, {} waves of calls in sequence)",
            percentile(&walls, 0.5).as_secs_f64() * 1e3,
            n + 2,
            2 + n.div_ceil(concurrency),
        );
    }
    Ok(())
}
