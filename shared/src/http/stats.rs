//! `GET /api/v1/stats?from=YYYY-MM-DD&to=YYYY-MM-DD`: the caller's
//! requests, model calls, tokens, cost and response-cache hit rate today
//! and over a range, for dashboards that do not scrape Prometheus.
//!
//! Read from the store's day records (the ones `GET /api/v1/usage` lists),
//! never from a process's memory: every instance answers the same, and a
//! restart loses nothing. The range follows the usage route's rules
//! ([`Range`]); the figures are the caller's only, as there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use schemars::JsonSchema;
use serde::Serialize;

use super::usage::{Range, date_schema};
use super::{ApiError, Operation};
use crate::auth::Principal;
use crate::store::usage::{Totals, day};
use crate::store::{DayUsage, UsageStore};

/// Figures summed over some days (and models).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct Stats {
    /// Requests answered: chat turns, agent runs, batch items (0 for what
    /// was stored before requests were counted).
    pub requests: u64,
    /// Calls the model answered.
    pub model_calls: u64,
    /// Calls the response cache answered instead, free.
    pub cache_hits: u64,
    /// `cache_hits / (cache_hits + model_calls)`, from 0 to 1; null when
    /// both are 0.
    pub cache_hit_rate: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Output tokens the model spent thinking.
    pub thinking_tokens: u64,
    /// US dollars at the configured prices; null when a counted call's
    /// model had no price: unknown, not free.
    pub cost_usd: Option<f64>,
    /// What the cache hits would have cost, in US dollars; null when one
    /// of them had no price.
    pub saved_usd: Option<f64>,
}

impl Stats {
    pub fn of(totals: &Totals) -> Stats {
        let answered = totals.cache_hits.saturating_add(totals.model_calls);
        Stats {
            requests: totals.requests,
            model_calls: totals.model_calls,
            cache_hits: totals.cache_hits,
            cache_hit_rate: (answered > 0).then(|| totals.cache_hits as f64 / answered as f64),
            input_tokens: totals.input_tokens,
            output_tokens: totals.output_tokens,
            cached_tokens: totals.cached_tokens,
            thinking_tokens: totals.thinking_tokens,
            cost_usd: totals.cost_usd(),
            saved_usd: totals.saved_usd(),
        }
    }
}

/// Today's figures, with the date they are of.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DayStats {
    /// Today, `YYYY-MM-DD`, UTC.
    pub date: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// One model's figures over the range.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelStats {
    pub model: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// The answer of `GET /api/v1/stats`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StatsReport {
    /// The range, as asked for (today's date for a missing end).
    pub from: String,
    pub to: String,
    /// Today (UTC), whatever the range.
    pub today: DayStats,
    /// From `from` to `to`, both included.
    pub range: Stats,
    /// The range per model that has a record in it, by model name.
    pub by_model: Vec<ModelStats>,
}

fn sum<'a>(records: impl IntoIterator<Item = &'a DayUsage>) -> Totals {
    records
        .into_iter()
        .fold(Totals::default(), |total, r| total.plus(r.totals))
}

/// The report of `records` (the range's) and `today` (today's records).
pub fn report(range: Range, records: &[DayUsage], today: String, today_records: &[DayUsage]) -> StatsReport {
    let mut by_model: BTreeMap<&str, Totals> = BTreeMap::new();
    for record in records {
        let total = by_model.entry(record.model.as_str()).or_default();
        *total = total.plus(record.totals);
    }
    StatsReport {
        today: DayStats {
            date: today,
            stats: Stats::of(&sum(today_records)),
        },
        range: Stats::of(&sum(records)),
        by_model: by_model
            .into_iter()
            .map(|(model, totals)| ModelStats {
                model: model.to_string(),
                stats: Stats::of(&totals),
            })
            .collect(),
        from: range.from,
        to: range.to,
    }
}

pub async fn get_stats(
    State(store): State<Arc<dyn UsageStore>>,
    principal: Principal,
    range: Range,
) -> Result<axum::Json<StatsReport>, ApiError> {
    let owner = principal.as_str();
    let today = day(SystemTime::now());
    let records = store.usage(owner, &range.from, &range.to).await?;
    // Dates compare as their text (zero-padded `YYYY-MM-DD`), as the
    // stores compare them: today's records are in the range's when it
    // holds today, and need a read of their own only when it does not.
    let today_records = if range.from <= today && today <= range.to {
        records.iter().filter(|r| r.date == today).cloned().collect()
    } else {
        store.usage(owner, &today, &today).await?
    };
    Ok(axum::Json(report(range, &records, today, &today_records)))
}

pub(super) fn operation() -> Operation {
    Operation::get(
        "get_stats",
        "the caller's requests, model calls, tokens, cost and cache hit rate today and over a range",
    )
    .tag("usage")
    .query_param(
        "from",
        "the first day of the range, YYYY-MM-DD (UTC); today when omitted",
        date_schema(),
    )
    .query_param(
        "to",
        "the last day of the range, YYYY-MM-DD (UTC); today when omitted",
        date_schema(),
    )
    .json::<StatsReport>(200, "the caller's figures today, over the range, and per model")
    .error(
        400,
        "from or to is not a date (YYYY-MM-DD), from is after to, or the range is over 366 days",
    )
    .error(503, "the store is unavailable for now; retry after Retry-After")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(date: &str, model: &str, model_calls: u64, cache_hits: u64) -> DayUsage {
        DayUsage {
            date: date.into(),
            model: model.into(),
            totals: Totals {
                requests: model_calls.max(cache_hits),
                model_calls,
                cache_hits,
                input_tokens: 10 * model_calls,
                cost_pico: 5 * model_calls,
                saved_pico: 5 * cache_hits,
                ..Totals::default()
            },
        }
    }

    #[test]
    fn the_hit_rate_is_hits_over_answers_and_null_without_any() {
        let none = Stats::of(&Totals::default());
        assert_eq!(
            (none.cache_hit_rate, none.requests, none.cost_usd),
            (None, 0, Some(0.0))
        );
        let records = [
            record("2026-12-01", "b", 3, 1),
            record("2026-12-02", "a", 0, 0),
            record("2026-12-02", "b", 3, 1),
        ];
        let range = Range {
            from: "2026-12-01".into(),
            to: "2026-12-02".into(),
        };
        let report = report(range, &records, "2026-12-02".into(), &records[1..]);
        assert_eq!(report.range.cache_hit_rate, Some(0.25));
        assert_eq!(
            (
                report.range.model_calls,
                report.range.cache_hits,
                report.range.input_tokens
            ),
            (6, 2, 60)
        );
        assert_eq!(report.range.saved_usd, Some(10e-12));
        assert_eq!(
            (report.today.date.as_str(), report.today.stats.model_calls),
            ("2026-12-02", 3)
        );
        let models: Vec<(&str, Option<f64>)> = report
            .by_model
            .iter()
            .map(|m| (m.model.as_str(), m.stats.cache_hit_rate))
            .collect();
        assert_eq!(models, [("a", None), ("b", Some(0.25))]);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["today"]["date"], "2026-12-02");
        assert_eq!(json["by_model"][0]["cache_hit_rate"], serde_json::Value::Null);
    }
}
