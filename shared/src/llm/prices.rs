//! What a model call costs: a price table in US dollars per million tokens,
//! and the exact cost of one call's [`Usage`].
//!
//! Prices are kept as whole pico-dollars per token and costs as whole
//! pico-dollars ([`Usd`]), so sums over many calls, instances and days stay
//! exact: a float would drift, and a session's total must equal the sum of
//! its turns to the micro-dollar.
//!
//! Both providers count cached and thinking tokens inside their totals
//! (Gemini's `promptTokenCount` includes `cachedContentTokenCount`, OpenAI's
//! `prompt_tokens` includes `cached_tokens`; thinking is billed as output),
//! so a call costs `(input - cached) * input + cached * cached_input +
//! output * output`: cached tokens are priced once, at the cached rate.

use std::fmt;

use super::Usage;

/// When the built-in prices below were taken from the providers' pricing
/// pages (ai.google.dev/gemini-api/docs/pricing, openai.com/api/pricing).
/// `MODEL_PRICES` overrides any of them.
pub const PRICES_TAKEN: &str = "2025-11-01";

/// An amount of US dollars, exact to the pico-dollar (10^-12 USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(u64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub fn from_pico(pico: u64) -> Usd {
        Usd(pico)
    }

    pub fn pico(self) -> u64 {
        self.0
    }

    /// In dollars, for JSON answers: `cost_usd`.
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e12
    }

    /// The nearest amount to `dollars` (for records stored as a number);
    /// `None` for a negative or non-finite number.
    pub fn from_dollars(dollars: f64) -> Option<Usd> {
        (dollars.is_finite() && dollars >= 0.0).then(|| Usd((dollars * 1e12).round() as u64))
    }
}

impl std::ops::Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.dollars())
    }
}

/// The rates of one model, in pico-dollars per token (which is also
/// dollars per million tokens times 10^6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

/// A model's price: its rates, and for models billed more for long prompts
/// (Gemini 2.5 Pro above 200,000 tokens) the prompt size from which the
/// whole call is billed at the higher rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub rates: Rates,
    pub long_prompt: Option<(u64, Rates)>,
}

impl Price {
    /// A price with one set of rates, each in dollars per million tokens.
    fn flat(input: &str, output: &str, cached_input: &str) -> Price {
        Price {
            rates: rates(input, output, cached_input),
            long_prompt: None,
        }
    }

    /// What `usage` costs at this price.
    pub fn cost(&self, usage: &Usage) -> Usd {
        let rates = match self.long_prompt {
            Some((threshold, long)) if usage.input_tokens > threshold => long,
            _ => self.rates,
        };
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let pico = u128::from(fresh) * u128::from(rates.input)
            + u128::from(cached) * u128::from(rates.cached_input)
            + u128::from(usage.output_tokens) * u128::from(rates.output);
        Usd(u64::try_from(pico).unwrap_or(u64::MAX))
    }
}

/// Built-in rates; the literals are valid by construction (a unit test
/// parses every one).
fn rates(input: &str, output: &str, cached_input: &str) -> Rates {
    let parse = |v: &str| parse_dollars_per_million(v).unwrap_or(u64::MAX);
    Rates {
        input: parse(input),
        output: parse(output),
        cached_input: parse(cached_input),
    }
}

/// The prices of the models this project names, as of [`PRICES_TAKEN`]
/// (text input; standard tier, not batch).
fn builtin() -> Vec<(String, Price)> {
    let mut table = vec![
        ("gemini-2.5-flash", Price::flat("0.30", "2.50", "0.03")),
        ("gemini-2.5-flash-lite", Price::flat("0.10", "0.40", "0.01")),
        (
            "gemini-2.5-pro",
            Price {
                rates: rates("1.25", "10", "0.125"),
                long_prompt: Some((200_000, rates("2.50", "15", "0.25"))),
            },
        ),
        ("gemini-2.0-flash", Price::flat("0.10", "0.40", "0.025")),
        ("gpt-4o-mini", Price::flat("0.15", "0.60", "0.075")),
        ("gpt-4o", Price::flat("2.50", "10", "1.25")),
        ("gpt-4.1-mini", Price::flat("0.40", "1.60", "0.10")),
        ("gpt-4.1", Price::flat("2.00", "8.00", "0.50")),
        // The offline development model runs in process: it costs nothing.
        (super::offline::MODEL_NAME, Price::flat("0", "0", "0")),
    ];
    table.sort_by(|a, b| a.0.cmp(b.0));
    table
        .into_iter()
        .map(|(name, price)| (name.to_string(), price))
        .collect()
}

/// The prices in use: the built-in ones with `MODEL_PRICES` on top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    entries: Vec<(String, Price)>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable { entries: builtin() }
    }
}

impl PriceTable {
    /// The built-in prices, each of `overrides` replacing or adding one.
    pub fn with_overrides(overrides: &[(String, Price)]) -> PriceTable {
        let mut table = PriceTable::default();
        for (name, price) in overrides {
            match table.entries.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = *price,
                None => table.entries.push((name.clone(), *price)),
            }
        }
        table
    }

    /// The price of `model` as a provider names it: its own entry, else the
    /// entry it is a dated or versioned name of (`gpt-4o-mini-2024-07-18`,
    /// `gemini-2.5-flash-001`, `gemini-2.5-flash-preview-05-20`). Never the
    /// price of another model: `gpt-4o-mini` is not priced as `gpt-4o`.
    pub fn price(&self, model: &str) -> Option<&Price> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        if let Some((_, price)) = self.entries.iter().find(|(name, _)| name == model) {
            return Some(price);
        }
        self.entries
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(is_version_suffix)
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| price)
    }

    /// What `usage` cost on `model`; `None` when the model has no price
    /// (an unknown cost is not a zero one).
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Usd> {
        self.price(model).map(|price| price.cost(usage))
    }
}

/// `001`, `2024-07-18`, `preview-05-20`, `latest`, `exp-03-25`: a version
/// of the same model, not another model (`mini`, `lite`, `image`).
fn is_version_suffix(rest: &str) -> bool {
    rest.starts_with(|c: char| c.is_ascii_digit())
        || ["preview", "latest", "exp"]
            .iter()
            .any(|tag| rest == *tag || rest.strip_prefix(tag).is_some_and(|r| r.starts_with('-')))
}

/// A price in dollars per million tokens (`0.30`, `2.5`, `0`, at most six
/// decimals and at most 100,000) as pico-dollars per token, exactly.
fn parse_dollars_per_million(value: &str) -> Option<u64> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 6 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    if whole > 100_000 {
        return None;
    }
    let fraction: u64 = format!("{fraction:0<6}").parse().ok()?;
    Some(whole * 1_000_000 + fraction)
}

/// What `MODEL_PRICES` must look like, for its error message.
pub const MODEL_PRICES_EXPECTED: &str = "comma-separated MODEL=INPUT/OUTPUT[/CACHED_INPUT] entries in US dollars \
     per million tokens, such as gemini-2.5-flash=0.30/2.50/0.03,llama3:8b=0/0";

/// Parses `MODEL_PRICES`: entries `MODEL=INPUT/OUTPUT[/CACHED_INPUT]`,
/// split at the last `=` so a model name may hold `/` or `:`
/// (`meta-llama/llama-3`, `llama3:8b`). Without a cached rate, cached
/// tokens cost the input rate.
pub fn parse_overrides(value: &str) -> Option<Vec<(String, Price)>> {
    let mut overrides = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, prices) = entry.rsplit_once('=')?;
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return None;
        }
        let parts: Vec<u64> = prices
            .split('/')
            .map(|p| parse_dollars_per_million(p.trim()))
            .collect::<Option<_>>()?;
        let rates = match parts[..] {
            [input, output] => Rates {
                input,
                output,
                cached_input: input,
            },
            [input, output, cached_input] => Rates {
                input,
                output,
                cached_input,
            },
            _ => return None,
        };
        overrides.push((
            name.to_string(),
            Price {
                rates,
                long_prompt: None,
            },
        ));
    }
    Some(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            thinking_tokens: 0,
        }
    }

    #[test]
    fn prices_parse_exactly_in_pico_dollars_per_token() {
        assert_eq!(parse_dollars_per_million("0.30"), Some(300_000));
        assert_eq!(parse_dollars_per_million("2.5"), Some(2_500_000));
        assert_eq!(parse_dollars_per_million("0.075"), Some(75_000));
        assert_eq!(parse_dollars_per_million("0.000001"), Some(1));
        assert_eq!(parse_dollars_per_million("15"), Some(15_000_000));
        assert_eq!(parse_dollars_per_million(".5"), Some(500_000));
        assert_eq!(parse_dollars_per_million("0"), Some(0));
        for bad in ["", ".", "-1", "1e3", "0.0000001", "abc", "1.2.3", "100001"] {
            assert_eq!(parse_dollars_per_million(bad), None, "{bad}");
        }
        for (name, price) in builtin() {
            for rates in std::iter::once(price.rates).chain(price.long_prompt.map(|(_, r)| r)) {
                assert!(
                    [rates.input, rates.output, rates.cached_input]
                        .iter()
                        .all(|r| *r != u64::MAX),
                    "{name}: a built-in rate does not parse"
                );
            }
        }
    }

    #[test]
    fn cached_tokens_are_priced_once_at_the_cached_rate() {
        let table = PriceTable::default();
        // 10,000 prompt tokens of which 4,000 cached, 1,000 out, on Flash:
        // 6,000 * 0.30 + 4,000 * 0.03 + 1,000 * 2.50 = 1,800 + 120 + 2,500
        // micro-dollars.
        let cost = table.cost("gemini-2.5-flash", &usage(10_000, 4_000, 1_000));
        assert_eq!(cost, Some(Usd::from_pico(4_420_000_000)));
        assert_eq!(cost.map(|c| c.to_string()), Some("$0.004420".to_string()));
        // More cached than sent cannot cost less than nothing.
        let odd = table.cost("gpt-4o-mini", &usage(10, 50, 0)).expect("priced");
        assert_eq!(odd, Usd::from_pico(10 * 75_000));
    }

    #[test]
    fn a_long_prompt_on_pro_is_billed_at_the_long_rates() {
        let table = PriceTable::default();
        let short = table.cost("gemini-2.5-pro", &usage(200_000, 0, 1_000)).expect("priced");
        assert_eq!(short.pico(), 200_000 * 1_250_000 + 1_000 * 10_000_000);
        let long = table.cost("gemini-2.5-pro", &usage(200_001, 1, 1_000)).expect("priced");
        assert_eq!(long.pico(), 200_000 * 2_500_000 + 250_000 + 1_000 * 15_000_000);
    }

    #[test]
    fn versioned_names_take_their_models_price_and_no_other() {
        let table = PriceTable::default();
        let mini = table.price("gpt-4o-mini").copied();
        assert!(mini.is_some());
        assert_eq!(table.price("gpt-4o-mini-2024-07-18").copied(), mini);
        assert_ne!(table.price("gpt-4o-2024-08-06").copied(), mini);
        let flash = table.price("gemini-2.5-flash").copied();
        assert_eq!(table.price("gemini-2.5-flash-001").copied(), flash);
        assert_eq!(table.price("gemini-2.5-flash-preview-05-20").copied(), flash);
        assert_eq!(table.price("models/gemini-2.5-flash").copied(), flash);
        assert_ne!(table.price("gemini-2.5-flash-lite").copied(), flash);
        assert_eq!(table.price("gemini-2.5-flash-image"), None, "another model");
        assert_eq!(table.price("llama3"), None);
        assert_eq!(table.cost("llama3", &usage(1, 0, 1)), None, "unknown, not free");
    }

    #[test]
    fn overrides_replace_or_add_prices() {
        let overrides =
            parse_overrides("gemini-2.5-flash=1/2/0.5, llama3:8b=0/0,meta-llama/llama-3=0.1/0.2").expect("valid");
        let table = PriceTable::with_overrides(&overrides);
        let flash = table.price("gemini-2.5-flash").expect("priced");
        assert_eq!(flash.rates.input, 1_000_000);
        assert_eq!(flash.rates.cached_input, 500_000);
        assert_eq!(table.cost("llama3:8b", &usage(100, 0, 100)), Some(Usd::ZERO));
        let llama = table.price("meta-llama/llama-3").expect("priced");
        assert_eq!(llama.rates.cached_input, llama.rates.input, "cached at the input rate");
        for bad in ["flash", "flash=1", "flash=1/2/3/4", "=1/2", "flash=a/b", "flash=-1/2"] {
            assert_eq!(parse_overrides(bad), None, "{bad}");
        }
        assert_eq!(parse_overrides(""), Some(Vec::new()));
    }
}
