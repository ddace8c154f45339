//! `bench loop`: the agent loop's own cost per step, in process.

use std::time::Instant;

use crate::percentile;

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
pub(crate) async fn agent_loop(runs: u64) -> anyhow::Result<()> {
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
            ..Usage::default()
        },
        model: "instant".into(),
        cost: None,
        cache_hit: None,
    };
    let model = InstantModel { call };
    let tools =
        agent_core::tools::Registry::new().with(std::sync::Arc::new(agent_core::tools::calculator::Calculator::new()));
    let run = agent_core::agent::Run {
        task: "Calcula 15 * 23".into(),
        session_key: "bench".into(),
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
