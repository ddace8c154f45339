//! What a turn or a run spent on the model: the `usage` object every answer
//! carries, summed over its model calls.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ModelResponse;
use super::prices::Usd;

/// Tokens, calls and cost of one answer. Cached tokens are part of the
/// input tokens and thinking tokens part of the output tokens, as the
/// providers count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Spend {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache (cheaper).
    pub cached_tokens: u64,
    /// Output tokens the model spent thinking.
    pub thinking_tokens: u64,
    pub model_calls: u32,
    /// In US dollars at the configured prices (`MODEL_PRICES`); null when a
    /// call's model has no price: unknown, not free.
    #[serde(with = "dollars")]
    #[schemars(with = "Option<f64>")]
    pub cost_usd: Option<Usd>,
    /// Model calls answered from the response cache instead: counted
    /// here, not in `model_calls`, and free.
    #[serde(default)]
    pub cache_hits: u32,
    /// What those answers cost when the model first gave them, in US
    /// dollars: what the cache saved. Null when one of them had no price.
    #[serde(default = "zero", with = "dollars")]
    #[schemars(with = "Option<f64>")]
    pub saved_usd: Option<Usd>,
}

fn zero() -> Option<Usd> {
    Some(Usd::ZERO)
}

impl Default for Spend {
    /// Nothing spent: no call, and a known cost of zero.
    fn default() -> Spend {
        Spend {
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            thinking_tokens: 0,
            model_calls: 0,
            cost_usd: Some(Usd::ZERO),
            cache_hits: 0,
            saved_usd: Some(Usd::ZERO),
        }
    }
}

impl Spend {
    /// Counts one model call's answer in: a call the model made, or one the
    /// response cache answered for nothing.
    pub fn add(&mut self, response: &ModelResponse) {
        if let Some(hit) = &response.cache_hit {
            self.cache_hits += 1;
            self.saved_usd = self.saved_usd.zip(hit.cost).map(|(a, b)| a + b);
            return;
        }
        let usage = &response.usage;
        self.input_tokens += usage.input_tokens;
        self.output_tokens += usage.output_tokens;
        self.cached_tokens += usage.cached_tokens;
        self.thinking_tokens += usage.thinking_tokens;
        self.model_calls += 1;
        self.cost_usd = self.cost_usd.zip(response.cost).map(|(a, b)| a + b);
    }

    /// What one model call spent.
    pub fn of(response: &ModelResponse) -> Spend {
        let mut spend = Spend::default();
        spend.add(response);
        spend
    }

    /// Input and output tokens: the answer's `tokens_used`.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// Several answers' spend summed (a batch's): unknown if any cost was.
impl std::ops::AddAssign for Spend {
    fn add_assign(&mut self, other: Spend) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.thinking_tokens += other.thinking_tokens;
        self.model_calls += other.model_calls;
        self.cost_usd = self.cost_usd.zip(other.cost_usd).map(|(a, b)| a + b);
        self.cache_hits += other.cache_hits;
        self.saved_usd = self.saved_usd.zip(other.saved_usd).map(|(a, b)| a + b);
    }
}

/// `cost_usd` as a JSON number of dollars; read back to the nearest
/// pico-dollar.
mod dollars {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Usd;

    pub(super) fn serialize<S: Serializer>(cost: &Option<Usd>, serializer: S) -> Result<S::Ok, S::Error> {
        cost.map(Usd::dollars).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Usd>, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.and_then(Usd::from_dollars))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Content, Usage};

    fn response(input: u64, output: u64, cost: Option<u64>) -> ModelResponse {
        ModelResponse {
            content: Content::model_text("x"),
            usage: Usage {
                input_tokens: input,
                output_tokens: output,
                cached_tokens: 1,
                thinking_tokens: 2,
            },
            model: "m".into(),
            cost: cost.map(Usd::from_pico),
            cache_hit: None,
        }
    }

    #[test]
    fn calls_add_up_and_one_unpriced_call_makes_the_cost_unknown() {
        let mut spend = Spend::of(&response(10, 5, Some(1_500_000)));
        spend.add(&response(20, 5, Some(2_500_000)));
        assert_eq!(
            (
                spend.input_tokens,
                spend.output_tokens,
                spend.cached_tokens,
                spend.thinking_tokens
            ),
            (30, 10, 2, 4)
        );
        assert_eq!((spend.model_calls, spend.tokens()), (2, 40));
        assert_eq!(spend.cost_usd, Some(Usd::from_pico(4_000_000)));
        let json = serde_json::to_value(spend).expect("json");
        assert_eq!(json["cost_usd"], serde_json::json!(0.000004));
        assert_eq!(serde_json::from_value::<Spend>(json).expect("back"), spend);

        let mut sum = Spend::default();
        sum += spend;
        sum += spend;
        assert_eq!((sum.model_calls, sum.tokens()), (4, 80));
        assert_eq!(sum.cost_usd, Some(Usd::from_pico(8_000_000)));

        spend.add(&response(1, 1, None));
        sum += spend;
        assert_eq!(sum.cost_usd, None, "one unknown cost makes the sum unknown");
        assert_eq!(spend.cost_usd, None);
        assert_eq!(
            serde_json::to_value(spend).expect("json")["cost_usd"],
            serde_json::Value::Null
        );
        assert_eq!(
            Spend::default().cost_usd,
            Some(Usd::ZERO),
            "nothing spent costs nothing"
        );
    }

    #[test]
    fn a_cache_hit_is_free_and_counts_what_it_saved() {
        let mut hit = response(0, 0, Some(0));
        hit.usage = Usage::default();
        hit.cache_hit = Some(crate::llm::CacheHit {
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            cost: Some(Usd::from_pico(3_000_000)),
        });
        let mut spend = Spend::of(&response(10, 5, Some(1_000_000)));
        spend.add(&hit);
        spend.add(&hit);
        assert_eq!((spend.model_calls, spend.cache_hits, spend.tokens()), (1, 2, 15));
        assert_eq!(spend.cost_usd, Some(Usd::from_pico(1_000_000)));
        assert_eq!(spend.saved_usd, Some(Usd::from_pico(6_000_000)));
        let json = serde_json::to_value(spend).expect("json");
        assert_eq!(json["saved_usd"], serde_json::json!(0.000006));
        assert_eq!(serde_json::from_value::<Spend>(json).expect("back"), spend);
        let old: Spend = serde_json::from_value(serde_json::json!({
            "input_tokens": 1, "output_tokens": 1, "cached_tokens": 0, "thinking_tokens": 0,
            "model_calls": 1, "cost_usd": 0.0
        }))
        .expect("a spend stored before the cache reads");
        assert_eq!((old.cache_hits, old.saved_usd), (0, Some(Usd::ZERO)));
    }
}
