//! Which model answers, and how it is reached: `LLM_PROVIDER` and each
//! provider's key, model, endpoint, time limit and retries. A provider named
//! without what it needs stops start-up here, not at the first turn.

use std::time::Duration;

use super::{ConfigError, Env, Secret, validate_url};
use crate::llm::prices::{MODEL_PRICES_EXPECTED, PriceTable, parse_overrides};
use crate::llm::routing::{self, Mode, Rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Gemini,
    Vertex,
    OpenAi,
    Offline,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Gemini => "gemini",
            Provider::Vertex => "vertex",
            Provider::OpenAi => "openai",
            Provider::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub provider: Provider,
    /// True when `LLM_PROVIDER` was unset and no key was found, so the
    /// process falls back to the offline model and should say so.
    pub offline_by_default: bool,
    pub gemini_api_key: Option<Secret>,
    pub gemini_model: String,
    pub gemini_base_url: String,
    pub vertex_project: Option<String>,
    pub vertex_location: String,
    /// Overrides the Vertex AI endpoint (tests, private endpoints).
    pub vertex_base_url: Option<String>,
    pub openai_api_key: Option<Secret>,
    pub openai_model: String,
    pub openai_base_url: String,
    /// Per attempt: a call that gets no answer in this time is retried or
    /// answered with 504.
    pub timeout: Duration,
    pub max_retries: u32,
    /// Built-in prices with `MODEL_PRICES` on top.
    pub prices: PriceTable,
    /// Which tier answers, and what a client may ask for.
    pub routing: RoutingSettings,
}

/// The model tiers, their routing and their fallback (`MODEL_*`,
/// `ROUTING_*`, `FALLBACK_PROVIDER`).
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// `MODEL_FAST`: the provider's configured model unless set, so a
    /// deployment that sets nothing keeps its model.
    pub fast: String,
    /// `MODEL_STRONG`: a stronger model of the same provider.
    pub strong: String,
    /// `MODEL_ROUTING`, `off` unless set: `auto` sends complex requests to
    /// the strong tier, which costs more, so it is chosen, not defaulted.
    pub mode: Mode,
    pub rules: Rules,
    /// `MODEL_ALLOWED`: the names a request's `model` may give besides
    /// `fast` and `strong`; the two tier models unless set.
    pub allowed: Vec<String>,
    /// `MODEL_FALLBACK`, on unless set: a call that still fails after its
    /// retries (429, 5xx, timeout) goes to the other tier once.
    pub fallback: bool,
    /// `FALLBACK_PROVIDER`: a second provider (its own model settings)
    /// tried last, when both tiers failed.
    pub fallback_provider: Option<Provider>,
}

impl LlmSettings {
    /// The model calls go to, as configured.
    pub fn model_name(&self) -> &str {
        match self.provider {
            Provider::Gemini | Provider::Vertex => &self.gemini_model,
            Provider::OpenAi => &self.openai_model,
            Provider::Offline => crate::llm::offline::MODEL_NAME,
        }
    }

    /// These settings with `provider` and `model` as the model calls go to:
    /// how a tier or the fallback provider is built by the same code.
    pub fn for_model(&self, provider: Provider, model: &str) -> LlmSettings {
        let mut settings = self.clone();
        settings.provider = provider;
        match provider {
            Provider::Gemini | Provider::Vertex => settings.gemini_model = model.to_string(),
            Provider::OpenAi => settings.openai_model = model.to_string(),
            Provider::Offline => {}
        }
        settings
    }
}

/// `MODEL_STRONG` when unset.
fn default_strong(provider: Provider) -> &'static str {
    match provider {
        Provider::Gemini | Provider::Vertex => "gemini-2.5-pro",
        Provider::OpenAi => "gpt-4o",
        Provider::Offline => crate::llm::offline::MODEL_NAME,
    }
}

fn parse_provider(value: &str) -> Option<Provider> {
    match value.to_ascii_lowercase().as_str() {
        "gemini" => Some(Provider::Gemini),
        "vertex" | "vertexai" | "vertex-ai" => Some(Provider::Vertex),
        "openai" => Some(Provider::OpenAi),
        "offline" => Some(Provider::Offline),
        _ => None,
    }
}

/// A comma-separated list, entries trimmed, empty ones skipped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a provider needs to be called, checked for `provider` named by `var`.
fn check_provider_needs(
    env: &Env<'_>,
    var: &str,
    provider: Provider,
    has_gemini_key: bool,
    has_vertex_project: bool,
) -> Result<(), ConfigError> {
    let missing = match provider {
        Provider::Gemini if !has_gemini_key => Some(("GEMINI_API_KEY", "an API key from Google AI Studio")),
        Provider::Vertex if !has_vertex_project => Some(("VERTEX_PROJECT", "the Google Cloud project id")),
        Provider::OpenAi if env.get("OPENAI_API_KEY").is_none() && env.get("OPENAI_BASE_URL").is_none() => Some((
            "OPENAI_API_KEY",
            "an API key (or OPENAI_BASE_URL for a server that needs none)",
        )),
        _ => None,
    };
    match missing {
        Some((needed, what)) => Err(ConfigError::missing(
            needed,
            format!("{what} when {var}={}", provider.as_str()),
        )),
        None => Ok(()),
    }
}

fn routing_settings(
    env: &Env<'_>,
    provider: Provider,
    configured: &str,
    has_gemini_key: bool,
    has_vertex_project: bool,
) -> Result<RoutingSettings, ConfigError> {
    // The offline model has one name whatever is asked.
    let (fast, strong) = match provider {
        Provider::Offline => (configured.to_string(), configured.to_string()),
        _ => (
            env.get_or("MODEL_FAST", configured),
            env.get_or("MODEL_STRONG", default_strong(provider)),
        ),
    };
    let mode = env.parse_or("MODEL_ROUTING", Mode::Off, "off or auto", |v| {
        match v.to_ascii_lowercase().as_str() {
            "off" => Some(Mode::Off),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    })?;
    let count = |name: &str, default: usize| {
        env.parse_or(name, default, "a whole number (0 turns the rule off)", |v| {
            v.parse::<usize>().ok()
        })
    };
    let rules = match env.get("ROUTING_KEYWORDS") {
        Some(keywords) => Rules::new(
            keywords.split(','),
            count("ROUTING_MIN_CHARS", routing::DEFAULT_MIN_CHARS)?,
            count("ROUTING_MIN_TOOLS", routing::DEFAULT_MIN_TOOLS)?,
        ),
        None => Rules::new(
            routing::DEFAULT_KEYWORDS.iter().copied(),
            count("ROUTING_MIN_CHARS", routing::DEFAULT_MIN_CHARS)?,
            count("ROUTING_MIN_TOOLS", routing::DEFAULT_MIN_TOOLS)?,
        ),
    };
    let allowed = match env.get("MODEL_ALLOWED") {
        Some(v) => list(&v),
        None if fast == strong => vec![fast.clone()],
        None => vec![fast.clone(), strong.clone()],
    };
    let fallback = env.parse_or("MODEL_FALLBACK", true, "on or off", super::parse_bool)?;
    let fallback_provider = match env.get("FALLBACK_PROVIDER") {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some(v) => {
            let expected = "gemini, vertex or openai, other than LLM_PROVIDER (or none)";
            let second = parse_provider(&v)
                .filter(|p| *p != Provider::Offline && *p != provider)
                .ok_or_else(|| ConfigError::new("FALLBACK_PROVIDER", &v, expected))?;
            check_provider_needs(env, "FALLBACK_PROVIDER", second, has_gemini_key, has_vertex_project)?;
            Some(second)
        }
    };
    Ok(RoutingSettings {
        fast,
        strong,
        mode,
        rules,
        allowed,
        fallback,
        fallback_provider,
    })
}

pub(super) fn llm_settings(env: &Env<'_>) -> Result<LlmSettings, ConfigError> {
    let gemini_api_key = env
        .get("GEMINI_API_KEY")
        .or_else(|| env.get("GOOGLE_API_KEY"))
        .map(Secret::new);
    let openai_api_key = env.get("OPENAI_API_KEY").map(Secret::new);
    let openai_base_set = env.get("OPENAI_BASE_URL").is_some();

    let (provider, offline_by_default) = match env.get("LLM_PROVIDER") {
        Some(v) => {
            let p = parse_provider(&v)
                .ok_or_else(|| ConfigError::new("LLM_PROVIDER", &v, "gemini, vertex, openai or offline"))?;
            (p, false)
        }
        None if gemini_api_key.is_some() => (Provider::Gemini, false),
        None if openai_base_set || openai_api_key.is_some() => (Provider::OpenAi, false),
        None => (Provider::Offline, true),
    };

    let vertex_project = env.get("VERTEX_PROJECT").or_else(|| env.get("GOOGLE_CLOUD_PROJECT"));
    if provider == Provider::Gemini && gemini_api_key.is_none() {
        return Err(ConfigError::missing(
            "GEMINI_API_KEY",
            "an API key from Google AI Studio when LLM_PROVIDER=gemini (or use LLM_PROVIDER=vertex)",
        ));
    }
    if provider == Provider::Vertex && vertex_project.is_none() {
        return Err(ConfigError::missing(
            "VERTEX_PROJECT",
            "the Google Cloud project id when LLM_PROVIDER=vertex (or set GOOGLE_CLOUD_PROJECT)",
        ));
    }
    let vertex_base_url = match env.get("VERTEX_BASE_URL") {
        Some(url) => {
            validate_url("VERTEX_BASE_URL", &url)?;
            Some(url.trim_end_matches('/').to_string())
        }
        None => None,
    };

    let gemini_model = env.get_or("GEMINI_MODEL", "gemini-2.5-flash");
    let openai_model = env.get_or("OPENAI_MODEL", "gpt-4o-mini");
    let configured = match provider {
        Provider::Gemini | Provider::Vertex => gemini_model.as_str(),
        Provider::OpenAi => openai_model.as_str(),
        Provider::Offline => crate::llm::offline::MODEL_NAME,
    };
    let routing = routing_settings(
        env,
        provider,
        configured,
        gemini_api_key.is_some(),
        vertex_project.is_some(),
    )?;

    Ok(LlmSettings {
        provider,
        offline_by_default,
        gemini_api_key,
        gemini_model,
        gemini_base_url: env.url_or("GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")?,
        vertex_project,
        vertex_location: env.get_or("VERTEX_LOCATION", "us-central1"),
        vertex_base_url,
        openai_api_key,
        openai_model,
        openai_base_url: env.url_or("OPENAI_BASE_URL", "https://api.openai.com/v1")?,
        timeout: env.seconds_or("LLM_TIMEOUT_SECONDS", Duration::from_secs(60), 1.0..=3600.0)?,
        max_retries: env.parse_or("LLM_MAX_RETRIES", 3, "a number of retries from 0 to 10", |v| {
            v.parse::<u32>().ok().filter(|n| *n <= 10)
        })?,
        prices: env.parse_or("MODEL_PRICES", PriceTable::default(), MODEL_PRICES_EXPECTED, |v| {
            parse_overrides(v).map(|overrides| PriceTable::with_overrides(&overrides))
        })?,
        routing,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Settings;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn tiers_default_to_the_configured_model_and_a_stronger_one_with_routing_off() {
        let s = settings(&[("GEMINI_API_KEY", "k"), ("GEMINI_MODEL", "gemini-2.0-flash")]).expect("valid");
        let r = &s.llm.routing;
        assert_eq!(
            (r.fast.as_str(), r.strong.as_str()),
            ("gemini-2.0-flash", "gemini-2.5-pro")
        );
        assert_eq!((r.mode, r.fallback, r.fallback_provider), (Mode::Off, true, None));
        assert_eq!(r.allowed, ["gemini-2.0-flash", "gemini-2.5-pro"]);

        let s = settings(&[("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")]).expect("valid");
        assert_eq!(s.llm.routing.strong, "gpt-4o");
        let s = settings(&[]).expect("valid");
        assert_eq!(s.llm.routing.allowed, ["offline"]);
    }

    #[test]
    fn routing_settings_are_read_and_bad_ones_name_the_variable() {
        let s = settings(&[
            ("GEMINI_API_KEY", "k"),
            ("MODEL_ROUTING", "AUTO"),
            ("MODEL_FAST", "gemini-2.5-flash-lite"),
            ("MODEL_ALLOWED", " a, ,b "),
            ("MODEL_FALLBACK", "off"),
            ("ROUTING_KEYWORDS", "deep dive,分析"),
            ("ROUTING_MIN_CHARS", "0"),
            ("FALLBACK_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk"),
        ])
        .expect("valid");
        let r = &s.llm.routing;
        assert_eq!(
            (r.mode, r.fast.as_str(), r.fallback),
            (Mode::Auto, "gemini-2.5-flash-lite", false)
        );
        assert_eq!(r.allowed, ["a", "b"]);
        assert_eq!(r.rules.keywords().collect::<Vec<_>>(), ["deep dive", "分析"]);
        assert_eq!((r.rules.min_chars, r.fallback_provider), (0, Some(Provider::OpenAi)));

        let bad = |vars: &[(&str, &str)]| settings(vars).expect_err("invalid").var;
        assert_eq!(bad(&[("MODEL_ROUTING", "smart")]), "MODEL_ROUTING");
        assert_eq!(bad(&[("MODEL_FALLBACK", "maybe")]), "MODEL_FALLBACK");
        assert_eq!(bad(&[("ROUTING_MIN_TOOLS", "-1")]), "ROUTING_MIN_TOOLS");
        assert_eq!(
            bad(&[("GEMINI_API_KEY", "k"), ("FALLBACK_PROVIDER", "gemini")]),
            "FALLBACK_PROVIDER"
        );
        assert_eq!(
            bad(&[("GEMINI_API_KEY", "k"), ("FALLBACK_PROVIDER", "openai")]),
            "OPENAI_API_KEY"
        );
        assert_eq!(
            bad(&[("GEMINI_API_KEY", "k"), ("FALLBACK_PROVIDER", "vertex")]),
            "VERTEX_PROJECT"
        );
    }
}
