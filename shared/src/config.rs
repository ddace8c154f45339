//! Typed settings, read once from the environment at start-up.
//!
//! A bad value must stop the process before it serves anything, with one line
//! that names the variable, the value and what is expected: a function that
//! starts with a typo in `RATE_LIMIT_CHAT` would silently run unprotected.
//! Parsing takes a lookup function instead of reading `std::env` directly so
//! tests can build settings without touching the process environment.

mod auth;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{AuthSettings, FIREBASE_KEYS_URL, GOOGLE_KEYS_URL};

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid: expected {expected}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub expected: String,
}

impl ConfigError {
    fn new(var: &str, value: &str, expected: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    fn missing(var: &str, expected: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            value: String::new(),
            expected: expected.into(),
        }
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Firestore,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub sqlite_path: PathBuf,
    pub firestore_project: Option<String>,
    pub firestore_database: String,
    /// Sessions untouched for this long may be deleted by a Firestore TTL
    /// policy on `expire_at` (`SESSION_TTL_DAYS`); `None`: kept forever.
    pub session_ttl: Option<Duration>,
    /// Messages a Firestore session document keeps for the next turn's
    /// history, so that the turn reads no query: `HISTORY_LIMIT`.
    pub session_tail: usize,
}

/// `N/<window>`: at most N requests per client per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u64,
    pub window: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.max, self.window.as_secs())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// The settings of the HTTP layer every function shares.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// API keys and ID token issuers: who may call (`API_KEYS`, `AUTH_*`).
    pub auth: AuthSettings,
    pub cors_allowed_origins: CorsOrigins,
    pub max_body_bytes: usize,
    /// The longest `message` (in characters) a chat request may carry.
    pub max_message_chars: usize,
    /// Read the client address from `X-Forwarded-For` (set by Cloud Run's
    /// front end); only true behind a proxy that sets it, else forgeable.
    pub trust_proxy: bool,
    /// Count anonymous requests by their `X-Client-ID` rather than their
    /// address (`TRUST_CLIENT_ID`): only behind a gateway that authenticates
    /// end users and sets the header itself, as any client can send any id.
    pub trust_client_id: bool,
    /// A request body that sends nothing for this long is answered 408, so
    /// a client that never finishes its body cannot hold a connection.
    pub body_timeout: Duration,
}

/// Where the agent's tools run.
#[derive(Debug, Clone)]
pub struct ToolSettings {
    /// Call the search function here instead of searching in process.
    pub search_url: Option<String>,
    /// Call the calculator function here instead of calculating in process.
    pub calculator_url: Option<String>,
    /// A folder of .md and .txt documents to search; `None`: the built-in
    /// documentation.
    pub search_corpus: Option<PathBuf>,
    /// How long a remote tool call may take.
    pub timeout: Duration,
    /// Sent as `X-API-Key` to remote tool functions that require one.
    pub api_key: Option<Secret>,
    /// Attach a Google ID token to remote tool calls (on by default on
    /// Cloud Run, where the tool functions are private).
    pub id_tokens: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Durable in the store, delivered in process (the embedded default).
    Local,
    /// Google Cloud Pub/Sub; a push subscription delivers to `agent_worker`.
    PubSub,
}

/// Where asynchronous tasks are queued.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub kind: QueueKind,
    pub pubsub_project: Option<String>,
    pub pubsub_topic: String,
    /// `HOST:PORT` of the Pub/Sub emulator: no TLS, anonymous credentials.
    pub pubsub_emulator_host: Option<String>,
    /// How many local-queue tasks run at once in one process.
    pub local_concurrency: usize,
}

/// How queued tasks are claimed, retried and reported.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// A claim lasts this long unless its worker renews it (every third of
    /// it while the task runs); a worker that dies frees its task after at
    /// most this long.
    pub lease: Duration,
    /// Claims per task before it is marked failed, so no poison message
    /// loops (Pub/Sub's dead-letter policy is the second net).
    pub max_attempts: u32,
    /// Signs every callback (`X-Signature-256`); without it, `callback_url`
    /// is refused.
    pub webhook_secret: Option<Secret>,
    /// Accept `http://` loopback callback URLs (development and tests).
    pub allow_loopback_callbacks: bool,
    /// POSTs per callback before giving up, and each one's time limit.
    pub webhook_attempts: u32,
    pub webhook_timeout: Duration,
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
    /// `K_SERVICE` is set: running on Cloud Run (or Knative).
    pub on_cloud_run: bool,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings, or prints the problem as one line and exits with
    /// status 2 (the conventional exit code for a usage error). A function
    /// that calls no model (`uses_model` false) ignores the model settings:
    /// they may be set for the whole deployment without its key.
    pub fn from_env_or_exit(uses_model: bool) -> Settings {
        let read = if uses_model {
            Settings::from_env()
        } else {
            Settings::from_lookup_without_model(|name| std::env::var(name).ok())
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
        const MODEL_VARS: [&str; 5] = ["LLM_", "GEMINI_", "GOOGLE_API_KEY", "VERTEX_", "OPENAI_"];
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
            http: HttpSettings {
                auth: auth::auth_settings(&env)?,
                cors_allowed_origins: cors_origins(&env)?,
                max_body_bytes: env.parse_or(
                    "MAX_BODY_BYTES",
                    1024 * 1024,
                    "a size in bytes from 1024 to 104857600",
                    |v| {
                        v.parse::<usize>()
                            .ok()
                            .filter(|n| (1024..=100 * 1024 * 1024).contains(n))
                    },
                )?,
                max_message_chars: env.parse_or(
                    "MAX_MESSAGE_CHARS",
                    32_000,
                    // A turn must fit a Firestore document (1 MiB): 200,000
                    // characters are at most 800 KB of UTF-8.
                    "a number of characters from 1 to 200000",
                    |v| v.parse::<usize>().ok().filter(|n| (1..=200_000).contains(n)),
                )?,
                trust_proxy: env.parse_or(
                    "TRUST_PROXY",
                    env.get("K_SERVICE").is_some(),
                    "true or false",
                    parse_bool,
                )?,
                trust_client_id: env.parse_or("TRUST_CLIENT_ID", false, "true or false", parse_bool)?,
                body_timeout: env.seconds_or("BODY_TIMEOUT_SECONDS", Duration::from_secs(30), 0.1..=3600.0)?,
            },
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
            on_cloud_run: env.get("K_SERVICE").is_some(),
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

const RATE_LIMIT_EXPECTED: &str = "requests per window such as 100/60s, 20/1m or 1000/1h, at most 10000 per window \
     and a window of at most 7d (or off for no limit)";

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

fn llm_settings(env: &Env<'_>) -> Result<LlmSettings, ConfigError> {
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
    })
}

fn tool_settings(env: &Env<'_>) -> Result<ToolSettings, ConfigError> {
    let url = |name: &str| -> Result<Option<String>, ConfigError> {
        match env.get(name) {
            Some(url) => validate_url(name, &url).map(|_| Some(url)),
            None => Ok(None),
        }
    };
    Ok(ToolSettings {
        search_url: url("SEARCH_URL")?,
        calculator_url: url("CALCULATOR_URL")?,
        search_corpus: env.get("SEARCH_CORPUS").map(PathBuf::from),
        timeout: env.seconds_or("TOOL_TIMEOUT_SECONDS", Duration::from_secs(10), 0.1..=300.0)?,
        api_key: env.get("TOOL_API_KEY").map(Secret::new),
        id_tokens: env.parse_or(
            "TOOL_ID_TOKENS",
            env.get("K_SERVICE").is_some(),
            "true or false",
            parse_bool,
        )?,
    })
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

fn queue_settings(env: &Env<'_>) -> Result<QueueSettings, ConfigError> {
    let kind = env.parse_or("QUEUE", QueueKind::Local, "local or pubsub", |v| {
        match v.to_ascii_lowercase().as_str() {
            "local" => Some(QueueKind::Local),
            "pubsub" => Some(QueueKind::PubSub),
            _ => None,
        }
    })?;
    let pubsub_project = project(
        env,
        "PUBSUB_PROJECT",
        kind == QueueKind::PubSub,
        "of the topic when QUEUE=pubsub",
    )?;
    let pubsub_topic = env.get_or("PUBSUB_TOPIC", "agent-tasks");
    let topic_ok = (3..=255).contains(&pubsub_topic.len())
        && pubsub_topic.starts_with(|c: char| c.is_ascii_alphabetic())
        && pubsub_topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
        && !pubsub_topic.to_ascii_lowercase().starts_with("goog");
    if !topic_ok {
        return Err(ConfigError::new(
            "PUBSUB_TOPIC",
            &pubsub_topic,
            "a topic id: 3 to 255 letters, digits and - _ . ~ + %, starting with a letter, not with goog",
        ));
    }
    let pubsub_emulator_host = env.get("PUBSUB_EMULATOR_HOST");
    if let Some(host) = &pubsub_emulator_host {
        validate_url("PUBSUB_EMULATOR_HOST", &format!("http://{host}"))
            .map_err(|_| ConfigError::new("PUBSUB_EMULATOR_HOST", host, "HOST:PORT of the Pub/Sub emulator"))?;
    }
    Ok(QueueSettings {
        kind,
        pubsub_project,
        pubsub_topic,
        pubsub_emulator_host,
        local_concurrency: env.parse_or("LOCAL_QUEUE_CONCURRENCY", 4, "a number of tasks from 1 to 256", |v| {
            v.parse::<usize>().ok().filter(|n| (1..=256).contains(n))
        })?,
    })
}

fn task_settings(env: &Env<'_>) -> Result<TaskSettings, ConfigError> {
    Ok(TaskSettings {
        lease: env.seconds_or("TASK_LEASE_SECONDS", Duration::from_secs(60), 1.0..=3600.0)?,
        max_attempts: env.parse_or("TASK_MAX_ATTEMPTS", 5, "a number of attempts from 1 to 100", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=100).contains(n))
        })?,
        webhook_secret: env.get("WEBHOOK_SECRET").map(Secret::new),
        allow_loopback_callbacks: env.parse_or("ALLOW_LOOPBACK_CALLBACKS", false, "true or false", parse_bool)?,
        webhook_attempts: env.parse_or("WEBHOOK_ATTEMPTS", 5, "a number of attempts from 1 to 20", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=20).contains(n))
        })?,
        webhook_timeout: env.seconds_or("WEBHOOK_TIMEOUT_SECONDS", Duration::from_secs(10), 0.1..=120.0)?,
    })
}

fn history_limit(env: &Env<'_>) -> Result<usize, ConfigError> {
    env.parse_or("HISTORY_LIMIT", 20, "a number of messages from 0 to 1000", |v| {
        v.parse::<usize>().ok().filter(|n| *n <= 1000)
    })
}

fn store_settings(env: &Env<'_>) -> Result<StoreSettings, ConfigError> {
    let kind = env.parse_or("STORE", StoreKind::Sqlite, "sqlite or firestore", |v| {
        match v.to_ascii_lowercase().as_str() {
            "sqlite" => Some(StoreKind::Sqlite),
            "firestore" => Some(StoreKind::Firestore),
            _ => None,
        }
    })?;
    let firestore_project = project(
        env,
        "FIRESTORE_PROJECT",
        kind == StoreKind::Firestore,
        "when STORE=firestore",
    )?;
    Ok(StoreSettings {
        kind,
        sqlite_path: PathBuf::from(env.get_or("SQLITE_PATH", ".agent-data/agent.db")),
        firestore_project,
        firestore_database: env.get_or("FIRESTORE_DATABASE", "(default)"),
        session_ttl: env.parse_or("SESSION_TTL_DAYS", None, "a number of days from 1 to 3650", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .map(|d| Some(Duration::from_secs(d * 86_400)))
        })?,
        session_tail: history_limit(env)?,
    })
}

fn cors_origins(env: &Env<'_>) -> Result<CorsOrigins, ConfigError> {
    let Some(v) = env.get("CORS_ALLOWED_ORIGINS") else {
        return Ok(CorsOrigins::Any);
    };
    if v == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut origins = Vec::new();
    for origin in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let valid = reqwest::Url::parse(origin)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/")
            .is_some()
            && !origin.ends_with('/');
        if !valid {
            return Err(ConfigError::new(
                "CORS_ALLOWED_ORIGINS",
                &v,
                "* or a comma-separated list of origins such as https://app.example.com,http://localhost:3000 \
                 (scheme and host, optional port, no path or trailing slash)",
            ));
        }
        origins.push(origin.to_string());
    }
    if origins.is_empty() {
        return Ok(CorsOrigins::Any);
    }
    Ok(CorsOrigins::List(origins))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `100/60s`, `100/60`, `20/1m`, `1000/1h`, `5/1d`, or `off`. At most
/// [`MAX_LIMIT`](crate::store::rate_log::MAX_LIMIT) requests per window:
/// the store keeps the time of each, in one record per client.
fn parse_rate_limit(v: &str) -> Option<Option<RateLimit>> {
    if matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "0") {
        return Some(None);
    }
    let (max, window) = v.split_once('/')?;
    let max: u64 = max
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=crate::store::rate_log::MAX_LIMIT).contains(n))?;
    let window = window.trim();
    if window.is_empty() {
        return None;
    }
    let (number, unit) = match window.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => window.split_at(i),
        None => (window, "s"),
    };
    let number: u64 = if number.is_empty() { 1 } else { number.parse().ok()? };
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    if seconds == 0 || seconds > 7 * 86_400 {
        return None;
    }
    Some(Some(RateLimit {
        max,
        window: Duration::from_secs(seconds),
    }))
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
