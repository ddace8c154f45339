//! `GET /api/v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`: what the caller
//! spent on the model, per UTC day and model, with the sum.
//!
//! Here rather than in a function crate because both `chat_function` and
//! `agent_function` serve it (a client of either can ask what it spent),
//! and a function crate holds only what is its own. The records are the
//! caller's only: the store reads them under the caller's principal, and no
//! parameter names another.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::routing::get;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, macros::format_description};

use super::{Api, ApiError, Operation, Routes};
use crate::App;
use crate::auth::Principal;
use crate::store::usage::{Totals, UsageView, day};
use crate::store::{DayUsage, UsageStore};

/// The longest range one request may ask for, in days (both ends counted):
/// a year, leap or not, so a read stays bounded.
pub const MAX_RANGE_DAYS: i64 = 366;

/// One record: a model's usage on a UTC day.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UsageRecord {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub model: String,
    #[serde(flatten)]
    pub usage: UsageView,
}

/// The answer of `GET /api/v1/usage`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UsageReport {
    /// The range, as asked for (or today's date for both).
    pub from: String,
    pub to: String,
    /// By date, then model; days and models with nothing spent are left out.
    pub records: Vec<UsageRecord>,
    /// The records summed (exactly, in pico-dollars, before the cost is shown).
    pub total: UsageView,
}

#[derive(Deserialize)]
struct Params {
    from: Option<String>,
    to: Option<String>,
}

/// The range of a usage request: checked dates, `from <= to`, at most
/// [`MAX_RANGE_DAYS`] days; today (UTC) for a missing end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub from: String,
    pub to: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Range {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<Params>::try_from_uri(&parts.uri).map_err(|rejection| {
            ApiError::invalid_argument(format!("the query string could not be read: {}", rejection.body_text()))
        })?;
        Range::parse(params.from.as_deref(), params.to.as_deref(), SystemTime::now())
    }
}

/// `YYYY-MM-DD`.
const DATE: &[time::format_description::BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

fn date(name: &str, text: &str) -> Result<Date, ApiError> {
    Date::parse(text, DATE).map_err(|_| {
        ApiError::invalid_argument(format!(
            "{name} must be a date as YYYY-MM-DD, UTC (it was {text:?}); omit it for today"
        ))
    })
}

impl Range {
    /// The range `from`..=`to` (each today at `now` when missing).
    pub fn parse(from: Option<&str>, to: Option<&str>, now: SystemTime) -> Result<Range, ApiError> {
        let today = day(now);
        let from_text = from.unwrap_or(&today).to_string();
        let to_text = to.unwrap_or(&today).to_string();
        let (start, end) = (date("from", &from_text)?, date("to", &to_text)?);
        if start > end {
            return Err(ApiError::invalid_argument(format!(
                "from ({from_text}) is after to ({to_text}); give from <= to"
            )));
        }
        if end - start >= Duration::days(MAX_RANGE_DAYS) {
            return Err(ApiError::invalid_argument(format!(
                "the range {from_text} to {to_text} is longer than {MAX_RANGE_DAYS} days; ask for it in parts"
            )));
        }
        // Dates as the stores compare them: zero-padded text, which sorts as
        // the dates do (years 0 to 9999; `time` reads no other).
        let text = |d: Date| {
            d.format(DATE)
                .map_err(|e| ApiError::invalid_argument(format!("a date out of range: {e}")))
        };
        Ok(Range {
            from: text(start)?,
            to: text(end)?,
        })
    }
}

/// The report of `records` over `range`.
pub fn report(range: Range, records: Vec<DayUsage>) -> UsageReport {
    let total = records.iter().fold(Totals::default(), |sum, r| sum.plus(r.totals));
    UsageReport {
        from: range.from,
        to: range.to,
        records: records
            .into_iter()
            .map(|r| UsageRecord {
                date: r.date,
                model: r.model,
                usage: r.totals.view(),
            })
            .collect(),
        total: total.view(),
    }
}

pub async fn get_usage(
    State(store): State<Arc<dyn UsageStore>>,
    principal: Principal,
    range: Range,
) -> Result<axum::Json<UsageReport>, ApiError> {
    let records = store.usage(principal.as_str(), &range.from, &range.to).await?;
    Ok(axum::Json(report(range, records)))
}

/// The schema of a `from` or `to` parameter.
pub(super) fn date_schema() -> serde_json::Value {
    serde_json::json!({"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})
}

fn operation() -> Operation {
    let date_schema = date_schema();
    Operation::get(
        "get_usage",
        "what the caller spent on the model, per UTC day and model, with the sum",
    )
    .tag("usage")
    .query_param(
        "from",
        "the first day, YYYY-MM-DD (UTC); today when omitted",
        date_schema.clone(),
    )
    .query_param("to", "the last day, YYYY-MM-DD (UTC); today when omitted", date_schema)
    .json::<UsageReport>(200, "the caller's records in the range, and their sum")
    .error(
        400,
        "from or to is not a date (YYYY-MM-DD), from is after to, or the range is over 366 days",
    )
    .error(503, "the store is unavailable for now; retry after Retry-After")
}

/// The routes, this one and `GET /api/v1/stats` ([`super::stats`]), which
/// reads the same records, behind the `tasks` rate limit (reads, as the
/// task reads are). `chat_function` merges them into its routes (so
/// `local` serves them once) and `agent_function` into its standalone
/// router.
pub fn api(app: &App) -> Api {
    let routes = Routes::new()
        .route("/api/v1/usage", get(get_usage), [operation()])
        .route(
            "/api/v1/stats",
            get(super::stats::get_stats),
            [super::stats::operation()],
        )
        .with_state(app.stores.usage.clone());
    app.rate_limited(
        routes,
        "tasks",
        app.settings.rate_limit_tasks,
        app.settings.rate_limit_tasks_per_client,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: &str) -> SystemTime {
        let date = Date::parse(day, DATE).expect("date");
        let seconds = (date - Date::from_ordinal_date(1970, 1).expect("epoch")).whole_seconds();
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds as u64 + 3600)
    }

    #[test]
    fn a_range_is_today_by_default_and_bad_dates_are_refused() {
        let now = at("2026-12-02");
        let today = Range {
            from: "2026-12-02".into(),
            to: "2026-12-02".into(),
        };
        assert_eq!(Range::parse(None, None, now).expect("today"), today);
        assert_eq!(
            Range::parse(Some("2025-12-02"), Some("2026-12-02"), now)
                .expect("366 days")
                .from,
            "2025-12-02"
        );
        for (from, to) in [
            (Some("2026-13-01"), None),
            (Some("2026-2-1"), None),
            (Some("yesterday"), None),
            (None, Some("2026-02-30")),
            (Some("2026-12-03"), Some("2026-12-02")),
            (Some("2024-12-01"), Some("2026-12-02")),
            (Some("2025-12-01"), Some("2026-12-02")),
        ] {
            let err = Range::parse(from, to, now).expect_err(&format!("{from:?} {to:?}"));
            assert_eq!(err.code, "invalid_argument");
        }
    }
}
