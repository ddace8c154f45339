//! Typed settings, read once from the environment at start-up.
//!
//! A bad value must stop the process before it serves anything, with one line
//! that names the variable, the value and what is expected: a function that
//! starts with a typo in `RATE_LIMIT_CHAT` would silently run unprotected.
//! Parsing takes a lookup function instead of reading `std::env` directly so
//! tests can build settings without touching the process environment.
//!
//! The lookup of a running function is the real environment over a `.env`
//! file ([`dotenv`]): the file's values go through the same validation, and
//! an error about one names the file.

mod auth;
mod cache;
pub mod dotenv;
mod http;
mod lambda;
mod model;
mod store;
mod tasks;
mod tools;
mod traces;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{AuthSettings, FIREBASE_KEYS_URL, GOOGLE_KEYS_URL};
pub use cache::{CacheMode, CacheScope, CacheSettings};
pub use http::{CorsOrigins, HttpSettings, RateLimit};
pub use lambda::LambdaInvokeMode;
pub use model::{LlmSettings, Provider};
pub use store::{StoreKind, StoreSettings};
pub use tasks::{QueueKind, QueueSettings, TaskSettings};
pub use tools::{Peer, ToolSettings};
pub use traces::TraceExport;

use cache::cache_settings;
use http::{RATE_LIMIT_EXPECTED, parse_rate_limit};
use lambda::lambda_invoke_mode;
use model::llm_settings;
use store::{history_limit, store_settings};
use tasks::{queue_settings, task_settings};
use tools::tool_settings;

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}{} is not valid: expected {expected}", from.as_ref().map(|f| format!(" (from {})", f.display())).unwrap_or_default())]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub expected: String,
    /// The `.env` file the value came from; `None`: the environment.
    pub from: Option<PathBuf>,
}

impl ConfigError {
    pub fn new(var: &str, value: &str, expected: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            value: value.to_string(),
            expected: expected.into(),
            from: None,
        }
    }

    fn missing(var: &str, expected: impl Into<String>) -> Self {
        ConfigError::new(var, "", expected)
    }

    /// Names the `.env` file the bad value came from, if it did.
    pub fn with_source(mut self) -> Self {
        self.from = dotenv::source(&self.var).map(PathBuf::from);
        self
    }
}

/// A value that must never reach a log line or an error body.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub log_format: LogFormat,
    pub llm: LlmSettings,
    pub store: StoreSettings,
    pub http: HttpSettings,
    /// `None`: no limit (`RATE_LIMIT_CHAT=off`).
    pub rate_limit_chat: Option<RateLimit>,
    pub rate_limit_agent: Option<RateLimit>,
    pub rate_limit_tools: Option<RateLimit>,
    /// Reads of tasks and their event streams (clients poll them).
    pub rate_limit_tasks: Option<RateLimit>,
    /// The narrower limits of each end user (`X-Client-ID`) within a
    /// principal's (`RATE_LIMIT_*_PER_CLIENT`); `None`: none.
    pub rate_limit_chat_per_client: Option<RateLimit>,
    pub rate_limit_agent_per_client: Option<RateLimit>,
    pub rate_limit_tools_per_client: Option<RateLimit>,
    pub rate_limit_tasks_per_client: Option<RateLimit>,
    pub history_limit: usize,
    pub tools: ToolSettings,
    pub queue: QueueSettings,
    pub tasks: TaskSettings,
    /// The response cache (`CACHE*`).
    pub cache: CacheSettings,
    /// `K_SERVICE` is set: running on Cloud Run (or Knative).
    pub on_cloud_run: bool,
    /// Where spans are exported over OTLP, when an endpoint is set
    /// (`OTEL_EXPORTER_OTLP_*`; see [`crate::telemetry`]).
    pub traces: Option<TraceExport>,
    /// How answers go back on AWS Lambda (unused elsewhere).
    pub lambda_invoke_mode: LambdaInvokeMode,
}

impl Settings {
    /// Reads the process environment, and the `.env` file under it.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(dotenv::var).map_err(ConfigError::with_source)
    }

    /// Reads settings, or prints the problem as one line and exits with
    /// status 2 (the conventional exit code for a usage error); so does a
    /// `.env` file that cannot be read. A function that calls no model
    /// (`uses_model` false) ignores the model settings: they may be set for
    /// the whole deployment without its key.
    pub fn from_env_or_exit(uses_model: bool) -> Settings {
        dotenv::process_or_exit();
        let read = if uses_model {
            Settings::from_env()
        } else {
            Settings::from_lookup_without_model(dotenv::var).map_err(ConfigError::with_source)
        };
        match read {
            Ok(settings) => settings,
            Err(err) => {
                eprintln!("error: {err}");
                std::process::exit(2);
            }
        }
    }

    /// As [`Settings::from_lookup`], with every model setting unset: the
    /// offline model, and no warning about it.
    pub fn from_lookup_without_model(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        const MODEL_VARS: [&str; 6] = ["LLM_", "GEMINI_", "GOOGLE_API_KEY", "VERTEX_", "OPENAI_", "MODEL_"];
        let mut settings = Settings::from_lookup(|name| {
            if MODEL_VARS.iter().any(|p| name.starts_with(p)) {
                None
            } else {
                lookup(name)
            }
        })?;
        settings.llm.offline_by_default = false;
        Ok(settings)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let env = Env(&lookup);
        Ok(Settings {
            port: env.parse_or("PORT", 8080, "a port number from 1 to 65535", |v| {
                v.parse::<u16>().ok().filter(|p| *p > 0)
            })?,
            log_format: env.parse_or("LOG_FORMAT", default_log_format(&env), "json or pretty", |v| {
                match v.to_ascii_lowercase().as_str() {
                    "json" => Some(LogFormat::Json),
                    "pretty" | "text" => Some(LogFormat::Pretty),
                    _ => None,
                }
            })?,
            llm: llm_settings(&env)?,
            store: store_settings(&env)?,
            http: http::http_settings(&env)?,
            rate_limit_chat: env.parse_or(
                "RATE_LIMIT_CHAT",
                Some(RateLimit {
                    max: 100,
                    window: Duration::from_secs(60),
                }),
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_agent: env.parse_or(
                "RATE_LIMIT_AGENT",
                Some(RateLimit {
                    max: 20,
                    window: Duration::from_secs(60),
                }),
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_tools: env.parse_or(
                "RATE_LIMIT_TOOLS",
                Some(RateLimit {
                    max: 1000,
                    window: Duration::from_secs(60),
                }),
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_tasks: env.parse_or(
                "RATE_LIMIT_TASKS",
                Some(RateLimit {
                    max: 600,
                    window: Duration::from_secs(60),
                }),
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_chat_per_client: env.parse_or(
                "RATE_LIMIT_CHAT_PER_CLIENT",
                None,
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_agent_per_client: env.parse_or(
                "RATE_LIMIT_AGENT_PER_CLIENT",
                None,
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_tools_per_client: env.parse_or(
                "RATE_LIMIT_TOOLS_PER_CLIENT",
                None,
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            rate_limit_tasks_per_client: env.parse_or(
                "RATE_LIMIT_TASKS_PER_CLIENT",
                None,
                RATE_LIMIT_EXPECTED,
                parse_rate_limit,
            )?,
            tools: tool_settings(&env)?,
            queue: queue_settings(&env)?,
            tasks: task_settings(&env)?,
            cache: cache_settings(&env)?,
            on_cloud_run: env.get("K_SERVICE").is_some(),
            traces: traces::trace_export(&env)?,
            lambda_invoke_mode: lambda_invoke_mode(&env)?,
            history_limit: history_limit(&env)?,
        })
    }

    /// Warnings worth printing once at start-up: settings that work but are
    /// probably not what a production deployment wants.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.llm.offline_by_default {
            warnings.push(
                "no model is configured, so the offline development model answers (it is not a \
                 language model). Set GEMINI_API_KEY for Gemini, LLM_PROVIDER=vertex with \
                 VERTEX_PROJECT for Vertex AI, or OPENAI_BASE_URL/OPENAI_API_KEY for an \
                 OpenAI-compatible server."
                    .to_string(),
            );
        }
        // Every model a request can reach: the tiers and the allowed names.
        let routing = &self.llm.routing;
        let mut models: Vec<&str> = vec![&routing.fast, &routing.strong];
        models.extend(routing.allowed.iter().map(String::as_str));
        models.retain(|m| self.llm.prices.price(m).is_none());
        models.sort_unstable();
        models.dedup();
        for model in models {
            warnings.push(format!(
                "the model {model} has no price, so answers report cost_usd as null (unknown, not free). \
                 Set MODEL_PRICES={model}=INPUT/OUTPUT[/CACHED_INPUT] in US dollars per million tokens."
            ));
        }
        if !self.http.auth.is_on() {
            warnings.push(
                "API_KEYS, AUTH_FIREBASE_PROJECT and AUTH_GOOGLE_AUDIENCE are unset, so every \
                 request is accepted without a credential. Set API_KEYS=name:key,... to require an \
                 X-API-Key header, or AUTH_FIREBASE_PROJECT to accept Firebase ID tokens."
                    .to_string(),
            );
        }
        warnings
    }
}

/// A lookup with the parsing helpers settings need.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The variable's value, with an empty value treated as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn get_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    fn parse_or<T>(
        &self,
        name: &str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse(&v).ok_or_else(|| ConfigError::new(name, &v, expected)),
        }
    }

    /// A duration in (fractional) seconds within `range`.
    fn seconds_or(
        &self,
        name: &str,
        default: Duration,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Duration, ConfigError> {
        let expected = format!("a number of seconds from {} to {}", range.start(), range.end());
        self.parse_or(name, default, &expected, |v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| range.contains(s))
                .map(Duration::from_secs_f64)
        })
    }

    fn url_or(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let url = self.get_or(name, default);
        validate_url(name, &url)?;
        Ok(url.trim_end_matches('/').to_string())
    }
}

fn validate_url(name: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ConfigError::new(name, url, "an http:// or https:// URL")),
    }
}

/// JSON on Cloud Run and Lambda (where logs are parsed), pretty elsewhere.
fn default_log_format(env: &Env<'_>) -> LogFormat {
    if env.get("K_SERVICE").is_some() || env.get("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        LogFormat::Json
    } else {
        LogFormat::Pretty
    }
}

/// A project id from `var`, else `GOOGLE_CLOUD_PROJECT`; an error when
/// `needed` and neither is set.
fn project(env: &Env<'_>, var: &str, needed: bool, when: &str) -> Result<Option<String>, ConfigError> {
    let project = env.get(var).or_else(|| env.get("GOOGLE_CLOUD_PROJECT"));
    if needed && project.is_none() {
        return Err(ConfigError::missing(
            var,
            format!("the Google Cloud project id {when} (or set GOOGLE_CLOUD_PROJECT)"),
        ));
    }
    Ok(project)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_embedded_and_offline() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.port, 8080);
        assert_eq!(s.llm.provider, Provider::Offline);
        assert!(s.llm.offline_by_default);
        assert_eq!(s.store.kind, StoreKind::Sqlite);
        assert_eq!(
            s.rate_limit_chat,
            Some(RateLimit {
                max: 100,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(s.history_limit, 20);
        assert_eq!(s.startup_warnings().len(), 2);
    }

    #[test]
    fn bad_values_name_the_variable_value_and_expectation() {
        let err = settings(&[("PORT", "99999")]).expect_err("port out of range");
        assert_eq!(err.var, "PORT");
        assert_eq!(err.value, "99999");
        assert!(err.to_string().contains("a port number"), "{err}");

        let err = settings(&[("RATE_LIMIT_CHAT", "abc")]).expect_err("not a limit");
        assert_eq!(err.var, "RATE_LIMIT_CHAT");
        assert!(err.to_string().contains("100/60s"), "{err}");

        let err = settings(&[("BODY_TIMEOUT_SECONDS", "0")]).expect_err("no time at all");
        assert_eq!(err.var, "BODY_TIMEOUT_SECONDS");

        let err = settings(&[("LLM_PROVIDER", "nope")]).expect_err("unknown provider");
        assert_eq!(
            err.to_string(),
            r#"LLM_PROVIDER="nope" is not valid: expected gemini, vertex, openai or offline"#
        );
    }

    #[test]
    fn queue_and_task_settings_default_to_embedded_and_are_validated() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.queue.kind, QueueKind::Local);
        assert_eq!(s.queue.pubsub_topic, "agent-tasks");
        assert_eq!((s.tasks.lease, s.tasks.max_attempts), (Duration::from_secs(60), 5));
        assert!(s.tasks.webhook_secret.is_none() && !s.tasks.allow_loopback_callbacks);

        let err = settings(&[("QUEUE", "pubsub")]).expect_err("no project");
        assert_eq!(err.var, "PUBSUB_PROJECT");
        let s = settings(&[("QUEUE", "PubSub"), ("GOOGLE_CLOUD_PROJECT", "demo")]).expect("project from GCP");
        assert_eq!(
            (s.queue.kind, s.queue.pubsub_project.as_deref()),
            (QueueKind::PubSub, Some("demo"))
        );
        for (var, bad) in [
            ("QUEUE", "kafka"),
            ("PUBSUB_TOPIC", "1topic"),
            ("PUBSUB_TOPIC", "goog-tasks"),
            ("PUBSUB_TOPIC", "a b"),
            ("PUBSUB_EMULATOR_HOST", "not a host/x y"),
            ("TASK_LEASE_SECONDS", "0"),
            ("TASK_MAX_ATTEMPTS", "0"),
            ("ALLOW_LOOPBACK_CALLBACKS", "maybe"),
            ("WEBHOOK_ATTEMPTS", "99"),
            ("LOCAL_QUEUE_CONCURRENCY", "0"),
        ] {
            let err = settings(&[(var, bad)]).expect_err(bad);
            assert_eq!(err.var, var, "{bad}");
        }
        let s = settings(&[("WEBHOOK_SECRET", "s3cret"), ("TASK_LEASE_SECONDS", "2.5")]).expect("valid");
        assert_eq!(s.tasks.lease, Duration::from_millis(2500));
        assert!(!format!("{:?}", s.tasks).contains("s3cret"));
    }

    #[test]
    fn a_function_without_a_model_ignores_model_settings() {
        let vars = [
            ("LLM_PROVIDER", "gemini"),
            ("LLM_TIMEOUT_SECONDS", "nope"),
            ("PORT", "9000"),
        ];
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(
            Settings::from_lookup(|n| map.get(n).cloned()).is_err(),
            "a model caller needs its key"
        );
        let s = Settings::from_lookup_without_model(|n| map.get(n).cloned()).expect("ignored");
        assert_eq!((s.port, s.llm.provider), (9000, Provider::Offline));
        assert!(s.startup_warnings().iter().all(|w| !w.contains("offline")));
        let bad_port = Settings::from_lookup_without_model(|n| (n == "PORT").then(|| "0".to_string()));
        assert_eq!(bad_port.expect_err("still validated").var, "PORT");
    }

    #[test]
    fn rate_limits_parse_in_several_spellings() {
        let min = Duration::from_secs(60);
        assert_eq!(parse_rate_limit("3/60s"), Some(Some(RateLimit { max: 3, window: min })));
        assert_eq!(parse_rate_limit("3/60"), Some(Some(RateLimit { max: 3, window: min })));
        assert_eq!(parse_rate_limit("3/1m"), Some(Some(RateLimit { max: 3, window: min })));
        assert_eq!(parse_rate_limit("3/m"), Some(Some(RateLimit { max: 3, window: min })));
        assert_eq!(parse_rate_limit("off"), Some(None));
        assert_eq!(
            parse_rate_limit("10000/1h"),
            Some(Some(RateLimit {
                max: 10_000,
                window: Duration::from_secs(3600)
            }))
        );
        let err = settings(&[("RATE_LIMIT_CHAT_PER_CLIENT", "10001/1h")]).expect_err("over the cap");
        let message = err.to_string();
        assert!(message.contains("RATE_LIMIT_CHAT_PER_CLIENT"), "{message}");
        assert!(message.contains("at most 10000 per window"), "{message}");
        let s = settings(&[("RATE_LIMIT_AGENT_PER_CLIENT", "5/1m"), ("TRUST_CLIENT_ID", "true")]).expect("valid");
        assert_eq!(
            s.rate_limit_agent_per_client,
            Some(RateLimit {
                max: 5,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(s.rate_limit_chat_per_client, None, "off unless set");
        assert!(s.http.trust_client_id);
        assert!(!settings(&[]).expect("defaults").http.trust_client_id);
        for bad in ["abc", "3", "3/", "-1/60s", "3/0s", "3/60x", "3/99999999999999999999d"] {
            assert_eq!(parse_rate_limit(bad), None, "{bad}");
        }
    }

    #[test]
    fn model_prices_are_read_and_an_unpriced_model_is_warned_of() {
        let s = settings(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("OPENAI_MODEL", "llama3:8b"),
        ])
        .expect("valid");
        let warning = s.startup_warnings().into_iter().find(|w| w.contains("no price"));
        assert!(
            warning
                .as_deref()
                .is_some_and(|w| w.contains("MODEL_PRICES=llama3:8b=")),
            "{warning:?}"
        );
        let s = settings(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("OPENAI_MODEL", "llama3:8b"),
            ("MODEL_PRICES", "llama3:8b=0/0"),
        ])
        .expect("valid");
        assert!(s.startup_warnings().iter().all(|w| !w.contains("no price")));
        assert!(
            settings(&[])
                .expect("defaults")
                .startup_warnings()
                .iter()
                .all(|w| !w.contains("no price"))
        );
        let err = settings(&[("MODEL_PRICES", "llama3=free")]).expect_err("not a price");
        assert_eq!(err.var, "MODEL_PRICES");
        assert!(err.to_string().contains("per million tokens"), "{err}");
    }

    #[test]
    fn provider_is_inferred_from_keys() {
        let s = settings(&[("GEMINI_API_KEY", "k")]).expect("valid");
        assert_eq!(s.llm.provider, Provider::Gemini);
        let s = settings(&[("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")]).expect("valid");
        assert_eq!(s.llm.provider, Provider::OpenAi);
        assert_eq!(s.llm.openai_base_url, "http://127.0.0.1:11434/v1");
        let err = settings(&[("LLM_PROVIDER", "gemini")]).expect_err("needs a key");
        assert_eq!(err.var, "GEMINI_API_KEY");
        let err = settings(&[("LLM_PROVIDER", "vertex")]).expect_err("needs a project");
        assert_eq!(err.var, "VERTEX_PROJECT");
    }

    #[test]
    fn cors_origins_are_validated() {
        let s = settings(&[("CORS_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000")]).expect("valid");
        assert_eq!(
            s.http.cors_allowed_origins,
            CorsOrigins::List(vec!["https://a.example".into(), "http://localhost:3000".into()])
        );
        assert!(settings(&[("CORS_ALLOWED_ORIGINS", "a.example")]).is_err());
        assert!(settings(&[("CORS_ALLOWED_ORIGINS", "https://a.example/app")]).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = settings(&[("API_KEYS", "k1,k2"), ("GEMINI_API_KEY", "sekrit")]).expect("valid");
        let debug = format!("{s:?}");
        assert!(!debug.contains("sekrit") && !debug.contains("k1"), "{debug}");
        assert_eq!(s.http.auth.api_keys.len(), 2);
    }
}
