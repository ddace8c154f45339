//! What was spent on the model, summed where it is kept: per session (with
//! the session's turns), and per principal, UTC day and model (with each
//! turn and each finished task), for `GET /api/v1/usage`.
//!
//! The sums are written in the same atomic step as what they count (a
//! turn's messages, a task's outcome), never after it: a sum written
//! separately could be lost or doubled by a crash or a retry in between,
//! and these must be exact across instances. Every figure is an integer
//! (tokens, calls, pico-dollars), so that sums never drift as floats would.
//!
//! `GET /api/v1/stats` reads the same day records: requests, model calls,
//! response-cache hits and what they saved, summed the same way.

use std::time::SystemTime;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use crate::llm::Spend;
use crate::llm::prices::Usd;

/// Summed usage, as the stores keep it: integers only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub thinking_tokens: u64,
    pub model_calls: u64,
    /// The cost of the calls whose model had a price, in pico-dollars.
    pub cost_pico: u64,
    /// Calls counted in a spend whose cost was unknown (a model with no
    /// price): the summed cost is then a lower bound, and shown as unknown.
    pub unpriced_calls: u64,
    /// Requests answered: each charge is one (a chat turn, an agent run, a
    /// batch item), except an attempt given back for a retry
    /// ([`Charge::given_back`]), whose run counts once when it finishes.
    pub requests: u64,
    /// Model calls the response cache answered instead (not in
    /// `model_calls`).
    pub cache_hits: u64,
    /// What those answers cost when the model first gave them, in
    /// pico-dollars: what the cache saved, for the hits whose cost was known.
    pub saved_pico: u64,
    /// Cache hits counted in a spend whose saving was unknown (the first
    /// answer's model had no price): `saved_pico` is then a lower bound,
    /// and shown as unknown, as `unpriced_calls` does for the cost.
    pub unpriced_hits: u64,
}

/// How many figures a [`Totals`] has: the columns (SQLite) and fields
/// (Firestore) it is stored in.
pub(crate) const TOTAL_FIELDS: usize = 11;

impl Totals {
    /// What `spend` adds to a sum, as one request's.
    pub fn of(spend: &Spend) -> Totals {
        Totals {
            input_tokens: spend.input_tokens,
            output_tokens: spend.output_tokens,
            cached_tokens: spend.cached_tokens,
            thinking_tokens: spend.thinking_tokens,
            model_calls: u64::from(spend.model_calls),
            cost_pico: spend.cost_usd.map_or(0, Usd::pico),
            unpriced_calls: if spend.cost_usd.is_none() {
                u64::from(spend.model_calls)
            } else {
                0
            },
            requests: 1,
            cache_hits: u64::from(spend.cache_hits),
            saved_pico: spend.saved_usd.map_or(0, Usd::pico),
            unpriced_hits: if spend.saved_usd.is_none() {
                u64::from(spend.cache_hits)
            } else {
                0
            },
        }
    }

    /// The field-wise sum (saturating: no sum of real spend comes near).
    pub fn plus(self, other: Totals) -> Totals {
        Totals {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cached_tokens: self.cached_tokens.saturating_add(other.cached_tokens),
            thinking_tokens: self.thinking_tokens.saturating_add(other.thinking_tokens),
            model_calls: self.model_calls.saturating_add(other.model_calls),
            cost_pico: self.cost_pico.saturating_add(other.cost_pico),
            unpriced_calls: self.unpriced_calls.saturating_add(other.unpriced_calls),
            requests: self.requests.saturating_add(other.requests),
            cache_hits: self.cache_hits.saturating_add(other.cache_hits),
            saved_pico: self.saved_pico.saturating_add(other.saved_pico),
            unpriced_hits: self.unpriced_hits.saturating_add(other.unpriced_hits),
        }
    }

    /// The fields as the stores name them, with their values as SQLite and
    /// Firestore integers (i64; a sum past i64 is clamped, never wrapped).
    /// The first 7 are migration 8's, the other 4 migration 9's.
    pub(crate) fn fields(&self) -> [(&'static str, i64); TOTAL_FIELDS] {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        [
            ("input_tokens", i(self.input_tokens)),
            ("output_tokens", i(self.output_tokens)),
            ("cached_tokens", i(self.cached_tokens)),
            ("thinking_tokens", i(self.thinking_tokens)),
            ("model_calls", i(self.model_calls)),
            ("cost_pico", i(self.cost_pico)),
            ("unpriced_calls", i(self.unpriced_calls)),
            ("requests", i(self.requests)),
            ("cache_hits", i(self.cache_hits)),
            ("saved_pico", i(self.saved_pico)),
            ("unpriced_hits", i(self.unpriced_hits)),
        ]
    }

    /// Totals from the stored integers, in the order of [`Totals::fields`];
    /// a negative one (damaged by hand) reads as 0.
    pub(crate) fn from_fields(values: [i64; TOTAL_FIELDS]) -> Totals {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Totals {
            input_tokens: u(values[0]),
            output_tokens: u(values[1]),
            cached_tokens: u(values[2]),
            thinking_tokens: u(values[3]),
            model_calls: u(values[4]),
            cost_pico: u(values[5]),
            unpriced_calls: u(values[6]),
            requests: u(values[7]),
            cache_hits: u(values[8]),
            saved_pico: u(values[9]),
            unpriced_hits: u(values[10]),
        }
    }

    /// As answers show it: the `usage` object of a session, a day or a sum.
    pub fn view(&self) -> UsageView {
        UsageView {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            thinking_tokens: self.thinking_tokens,
            model_calls: self.model_calls,
            cost_usd: self.cost_usd(),
            requests: self.requests,
            cache_hits: self.cache_hits,
            saved_usd: self.saved_usd(),
        }
    }

    /// The cost in US dollars; `None` (unknown) when a counted call had no
    /// price.
    pub fn cost_usd(&self) -> Option<f64> {
        (self.unpriced_calls == 0).then(|| Usd::from_pico(self.cost_pico).dollars())
    }

    /// What the response cache saved in US dollars; `None` (unknown) when a
    /// counted hit's first answer had no price.
    pub fn saved_usd(&self) -> Option<f64> {
        (self.unpriced_hits == 0).then(|| Usd::from_pico(self.saved_pico).dollars())
    }
}

/// Summed usage as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Output tokens the model spent thinking.
    pub thinking_tokens: u64,
    pub model_calls: u64,
    /// US dollars at the configured prices, summed exactly (in
    /// pico-dollars) before it is shown; null when a counted call's model
    /// had no price: unknown, not free.
    pub cost_usd: Option<f64>,
    /// Requests answered (chat turns, agent runs, batch items); 0 for what
    /// was stored before they were counted.
    pub requests: u64,
    /// Model calls answered from the response cache instead, free and not
    /// counted in `model_calls`.
    pub cache_hits: u64,
    /// What those answers cost when first given, in US dollars: what the
    /// cache saved. Null when one of them had no price.
    pub saved_usd: Option<f64>,
}

/// What one turn or one run spent, to be summed with what it stores: its
/// UTC day and the model that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub model: String,
    pub spend: Spend,
    /// Whether it counts as a request (`Totals::requests`): true but for
    /// an attempt given back for a retry ([`Charge::given_back`]).
    pub request: bool,
    /// What other models' calls in the same run spent (a multi-agent run's
    /// tiers, a fallback): each added to the day record of its own model,
    /// never counted as a request.
    pub also: Vec<(String, Spend)>,
}

impl Charge {
    /// `spend` by `model`, on today's UTC date.
    pub fn now(model: &str, spend: Spend) -> Charge {
        Charge::on(SystemTime::now(), model, spend)
    }

    pub fn on(at: SystemTime, model: &str, spend: Spend) -> Charge {
        Charge {
            day: day(at),
            model: model.to_string(),
            spend,
            request: true,
            also: Vec::new(),
        }
    }

    /// What a run spent by model, `last` (the model of its last answer)
    /// first: the request counts under it; `None` when nothing was spent.
    pub fn by_models(spends: &[(String, Spend)], last: &str) -> Option<Charge> {
        let main = spends.iter().find(|(model, _)| model == last)?;
        let mut charge = Charge::now(&main.0, main.1);
        charge.also = spends.iter().filter(|(model, _)| model != last).cloned().collect();
        Some(charge)
    }

    /// The day records it adds to: its model's with [`totals`](Self::totals),
    /// then each other model's with its spend alone.
    pub fn day_rows(&self) -> Vec<(&str, Totals)> {
        std::iter::once((self.model.as_str(), self.totals()))
            .chain(
                self.also
                    .iter()
                    .map(|(model, spend)| (model.as_str(), calls_only(spend))),
            )
            .collect()
    }

    /// Everything it adds up to, every model's spend and the request once:
    /// what a session's or a task's own totals add.
    pub fn sum(&self) -> Totals {
        self.also
            .iter()
            .fold(self.totals(), |sum, (_, spend)| sum.plus(calls_only(spend)))
    }

    /// What the charge adds: its spend, and one request unless given back.
    pub fn totals(&self) -> Totals {
        Totals {
            requests: u64::from(self.request),
            ..Totals::of(&self.spend)
        }
    }

    /// The charge of an attempt given back for a retry
    /// (`TaskStore::release_charged`): its calls count, but not as a
    /// request, since the run counts as one when it finishes.
    pub fn given_back(&self) -> Charge {
        Charge {
            request: false,
            ..self.clone()
        }
    }
}

/// What `spend` adds as calls of a run counted as a request elsewhere.
fn calls_only(spend: &Spend) -> Totals {
    Totals {
        requests: 0,
        ..Totals::of(spend)
    }
}

/// The UTC date of `at`, `YYYY-MM-DD`.
pub fn day(at: SystemTime) -> String {
    let text = super::rfc3339(at);
    text.get(..10).unwrap_or(&text).to_string()
}

/// One principal's usage of one model on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub model: String,
    pub totals: Totals,
}

/// At most this many records a usage read returns (366 days of 27 models):
/// a read stays bounded whatever the range holds.
pub const MAX_USAGE_RECORDS: usize = 10_000;

/// The per-day records. They are written by [`super::SessionStore`]'s
/// appends and [`super::TaskStore`]'s `finish`, in the same atomic step as
/// the turn or outcome; this trait only reads them.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// `owner`'s (a principal's string form; the stores key the records by
    /// `owned::key_owner`, as its sessions) records with `from <= date <= to` (`YYYY-MM-DD`), by date
    /// then model, at most [`MAX_USAGE_RECORDS`].
    async fn usage(&self, owner: &str, from: &str, to: &str) -> Result<Vec<DayUsage>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(cost: Option<u64>) -> Spend {
        Spend {
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 2,
            thinking_tokens: 1,
            model_calls: 2,
            cost_usd: cost.map(Usd::from_pico),
            ..Spend::default()
        }
    }

    #[test]
    fn totals_add_up_and_an_unpriced_call_makes_the_cost_unknown() {
        let sum = Totals::of(&spend(Some(7))).plus(Totals::of(&spend(Some(5))));
        assert_eq!(
            (sum.input_tokens, sum.model_calls, sum.cost_pico, sum.unpriced_calls),
            (20, 4, 12, 0)
        );
        assert_eq!(Totals::from_fields(sum.fields().map(|(_, v)| v)), sum);
        assert_eq!(sum.view().cost_usd, Some(12e-12));
        let unknown = sum.plus(Totals::of(&spend(None)));
        assert_eq!((unknown.unpriced_calls, unknown.view().cost_usd), (2, None));
    }

    #[test]
    fn a_charge_is_one_request_and_cache_hits_count_what_they_saved() {
        let hit = |saved: Option<u64>| Spend {
            model_calls: 0,
            cache_hits: 1,
            saved_usd: saved.map(Usd::from_pico),
            ..Spend::default()
        };
        let charge = |spend| Charge::on(SystemTime::UNIX_EPOCH, "m", spend);
        let sum = charge(spend(Some(7)))
            .totals()
            .plus(charge(hit(Some(40))).totals())
            .plus(charge(hit(Some(2))).totals());
        assert_eq!(
            (
                sum.requests,
                sum.model_calls,
                sum.cache_hits,
                sum.saved_pico,
                sum.cost_pico
            ),
            (3, 2, 2, 42, 7)
        );
        assert_eq!(Totals::from_fields(sum.fields().map(|(_, v)| v)), sum);
        let view = sum.view();
        assert_eq!((view.requests, view.cache_hits, view.saved_usd), (3, 2, Some(42e-12)));

        let retried = charge(spend(Some(7))).given_back().totals();
        assert_eq!(
            (retried.requests, retried.model_calls),
            (0, 2),
            "its calls, not a request"
        );
        let unknown = sum.plus(charge(hit(None)).totals());
        assert_eq!(
            (unknown.unpriced_hits, unknown.saved_usd()),
            (1, None),
            "unknown, not 0"
        );
        assert_eq!(unknown.cost_usd(), Some(7e-12), "a hit is free whatever it saved");
    }

    #[test]
    fn a_day_is_the_utc_date() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365 - 1);
        assert_eq!(day(at), "1970-12-31");
    }
}
