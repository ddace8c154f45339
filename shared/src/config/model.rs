//! Which model answers, and how it is reached: `LLM_PROVIDER` and each
//! provider's key, model, endpoint, time limit and retries. A provider named
//! without what it needs stops start-up here, not at the first turn.

use std::time::Duration;

use super::{ConfigError, Env, Secret, validate_url};
use crate::llm::prices::{MODEL_PRICES_EXPECTED, PriceTable, parse_overrides};

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
            let p = match v.to_ascii_lowercase().as_str() {
                "gemini" => Provider::Gemini,
                "vertex" | "vertexai" | "vertex-ai" => Provider::Vertex,
                "openai" => Provider::OpenAi,
                "offline" => Provider::Offline,
                _ => {
                    return Err(ConfigError::new(
                        "LLM_PROVIDER",
                        &v,
                        "gemini, vertex, openai or offline",
                    ));
                }
            };
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

    Ok(LlmSettings {
        provider,
        offline_by_default,
        gemini_api_key,
        gemini_model: env.get_or("GEMINI_MODEL", "gemini-2.5-flash"),
        gemini_base_url: env.url_or("GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")?,
        vertex_project,
        vertex_location: env.get_or("VERTEX_LOCATION", "us-central1"),
        vertex_base_url,
        openai_api_key,
        openai_model: env.get_or("OPENAI_MODEL", "gpt-4o-mini"),
        openai_base_url: env.url_or("OPENAI_BASE_URL", "https://api.openai.com/v1")?,
        timeout: env.seconds_or("LLM_TIMEOUT_SECONDS", Duration::from_secs(60), 1.0..=3600.0)?,
        max_retries: env.parse_or("LLM_MAX_RETRIES", 3, "a number of retries from 0 to 10", |v| {
            v.parse::<u32>().ok().filter(|n| *n <= 10)
        })?,
        prices: env.parse_or("MODEL_PRICES", PriceTable::default(), MODEL_PRICES_EXPECTED, |v| {
            parse_overrides(v).map(|overrides| PriceTable::with_overrides(&overrides))
        })?,
    })
}
