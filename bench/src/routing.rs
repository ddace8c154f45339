//! `bench routing`: what choosing a request's model tier costs, in process.

use std::hint::black_box;
use std::time::{Duration, Instant};

use agent_core::llm::routing::{Mode, Router, Rules};

use crate::percentile;

/// Requests as clients send them, in the seeds' four languages, both tiers:
/// a keyword early, a keyword late, none (every keyword tried), and a long
/// message with none (the length rule).
fn requests() -> Vec<String> {
    let mut requests: Vec<String> = [
        "Analyze the sales of last quarter",
        "What is the capital of France?",
        "Explícame cómo funciona la fotosíntesis",
        "¿Cuánto es 2 + 2? Dímelo rápido, por favor, que tengo prisa.",
        "Planeje uma viagem a Lisboa com três dias",
        "Qual é a capital do Brasil?",
        "请分析一下这个季度的销售数据",
        "今天天气怎么样?",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    requests.push("cuéntame algo sobre el mar. ".repeat(80));
    requests
}

/// Routes each request `runs` times with the default rules and
/// `MODEL_ROUTING=auto`; the time per request, by request.
pub(crate) fn routing(runs: u64) -> anyhow::Result<()> {
    let router = Router {
        mode: Mode::Auto,
        rules: Rules::default(),
        fast: "gemini-2.5-flash".into(),
        strong: "gemini-2.5-pro".into(),
        allowed: vec!["gemini-2.5-flash".into(), "gemini-2.5-pro".into()],
    };
    let requests = requests();
    let mut all = Vec::new();
    for text in &requests {
        let route = router.route(text, 4, None)?;
        // Timed in batches of 100: one decision is below the clock's grain.
        let batches = runs.div_ceil(100).max(1);
        let mut times: Vec<Duration> = (0..batches)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..100 {
                    black_box(router.route(black_box(text), 4, None).ok());
                }
                started.elapsed() / 100
            })
            .collect();
        times.sort();
        let shown: String = text.chars().take(32).collect();
        println!(
            "{:>5} chars, {:<6} {:<16} median {:>6.2} us, p90 {:>6.2} us  {shown:?}",
            text.chars().count(),
            route.tier.as_str(),
            route.reason.to_string(),
            us(percentile(&times, 0.5)),
            us(percentile(&times, 0.9)),
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "all {} requests, {} decisions each: median {:.2} us, p90 {:.2} us, max {:.2} us a decision",
        requests.len(),
        runs.div_ceil(100).max(1) * 100,
        us(percentile(&all, 0.5)),
        us(percentile(&all, 0.9)),
        us(all.last().copied().unwrap_or_default()),
    );
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
