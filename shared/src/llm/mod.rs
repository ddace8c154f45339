//! Language models behind one trait.
//!
//! Every provider speaks its own wire format; the rest of the system only sees
//! [`ModelRequest`] in and [`ModelResponse`] (or a stream of [`StreamEvent`]s)
//! out. A turn the model produced keeps the provider's own encoding in
//! [`Content::raw`], because some providers (Gemini 3) reject a conversation in
//! which their parts, with `thoughtSignature`, are not sent back verbatim.
//!
//! - [`gemini`]: Gemini on AI Studio (API key) and on Vertex AI (access token).
//! - `openai`: OpenAI chat completions and every compatible server.
//! - [`offline`]: a deterministic development model that needs no network.
//! - `retry`: the retry policy HTTP providers share, on the crate-wide
//!   backoff and `Retry-After` of `crate::retry`.
//! - `sse`: a server-sent events decoder for streaming responses.
//! - `metered`: a decorator that counts calls and tokens for `/metrics`.
//! - [`routing`]: which tier (fast or strong) a request goes to, by rules
//!   or by the client's choice from an allow-list.
//! - [`routed`]: the tiers' models, and calls that fall back from a failed
//!   model to the other tier and a second provider.

pub mod gemini;
pub(crate) mod metered;
pub mod offline;
pub(crate) mod openai;
pub mod prices;
pub(crate) mod retry;
pub mod routed;
pub mod routing;
pub mod spend;
pub(crate) mod sse;

pub use spend::Spend;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{LlmSettings, Provider};
use crate::http::metrics::Metrics;

/// Who said a turn. Tool results travel in a `User` turn, as Gemini expects;
/// providers that want a separate role (OpenAI's `tool`) map it themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Model,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Model => "model",
        }
    }
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The provider's call id, when it has one (OpenAI always, Gemini sometimes);
    /// the matching [`FunctionResponse`] must carry it back.
    pub id: Option<String>,
    pub name: String,
    /// The arguments as a JSON object (OpenAI's string-encoded arguments are
    /// decoded; arguments that are not valid JSON arrive as a JSON string).
    pub args: Value,
}

/// The result of a function call, sent back to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionResponse {
    pub id: Option<String>,
    pub name: String,
    /// A JSON object (Gemini requires an object here).
    pub response: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Part {
    Text(String),
    FunctionCall(FunctionCall),
    FunctionResponse(FunctionResponse),
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Content {
    pub role: Option<Role>,
    pub parts: Vec<Part>,
    /// The provider's own JSON for this turn, exactly as it was received.
    /// A provider that finds `raw` on a model turn it produced sends it back
    /// unchanged instead of re-encoding `parts`.
    pub raw: Option<Value>,
}

impl Content {
    pub fn user_text(text: impl Into<String>) -> Self {
        Content {
            role: Some(Role::User),
            parts: vec![Part::Text(text.into())],
            raw: None,
        }
    }

    pub fn model_text(text: impl Into<String>) -> Self {
        Content {
            role: Some(Role::Model),
            parts: vec![Part::Text(text.into())],
            raw: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role.unwrap_or(Role::User)
    }

    /// All text parts, joined.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn function_calls(&self) -> impl Iterator<Item = &FunctionCall> {
        self.parts.iter().filter_map(|p| match p {
            Part::FunctionCall(c) => Some(c),
            _ => None,
        })
    }
}

/// A function the model may call: name, description and a JSON Schema for
/// its arguments (an object schema).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, Default)]
pub struct ModelRequest {
    pub system_instruction: Option<String>,
    pub contents: Vec<Content>,
    pub tools: Vec<ToolSpec>,
    /// Asks for JSON matching a schema instead of free text (structured
    /// output: Gemini's `responseSchema`, OpenAI's `response_format`).
    pub response_schema: Option<ResponseSchema>,
}

/// A JSON Schema the answer's text must match, and its name (OpenAI
/// requires one; the offline model tells its roles apart by it).
///
/// Kept to the subset both providers accept: `type`, `properties`,
/// `required`, `items`, `enum`, `description`, and `additionalProperties:
/// false` on every object with every property required (OpenAI's strict
/// mode), which Gemini ignores.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseSchema {
    pub name: String,
    pub schema: Value,
}

/// The tokens of one model call, as its provider reported them.
///
/// `cached_tokens` are part of `input_tokens` and `thinking_tokens` part of
/// `output_tokens`, as both providers count them; see [`prices`] for what
/// that means for the cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input read from the provider's prompt cache, billed at its rate.
    pub cached_tokens: u64,
    /// Output the model spent thinking (billed as output, never shown).
    pub thinking_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.cached_tokens += rhs.cached_tokens;
        self.thinking_tokens += rhs.thinking_tokens;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelResponse {
    /// The model's turn (role `Model`), `raw` set by HTTP providers.
    pub content: Content,
    pub usage: Usage,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// What the call cost at the configured prices; `None` when the model
    /// has no price. Set by the accounting around every model (see
    /// [`build`]), never by a provider.
    pub cost: Option<prices::Usd>,
    /// Set when the answer came from the response cache instead of the
    /// model: `usage` is then zero and `cost` nothing, and this says what
    /// the call it repeats had spent.
    pub cache_hit: Option<CacheHit>,
}

/// What an answer from the response cache saved: the tokens and cost of
/// the model call whose answer it repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheHit {
    pub usage: Usage,
    /// `None` when that call's model had no price.
    pub cost: Option<prices::Usd>,
}

impl ModelResponse {
    pub fn text(&self) -> String {
        self.content.text()
    }
}

/// What a streaming call yields: text as it arrives, then the whole turn.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    /// The complete response; its text equals the deltas joined.
    Done(ModelResponse),
}

pub type ModelStream = BoxStream<'static, Result<StreamEvent, ModelError>>;

/// Why a model call failed, in the terms the HTTP contract answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The provider kept answering 429, 500, 502, 503 or 504 (or could not be
    /// reached) after the allowed retries.
    #[error("the model provider is unavailable: {message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider refused the request (4xx other than 429) or answered
    /// something that is not its documented format. Carries its message.
    #[error("the model provider answered with an error: {message}")]
    Upstream { status: Option<u16>, message: String },
    /// No answer within `LLM_TIMEOUT_SECONDS`.
    #[error("the model provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The provider declined the prompt itself (a safety block): the client
    /// can change the prompt, so this is the client's error.
    #[error("the model declined the prompt: {0}")]
    Blocked(String),
}

/// A language model. Implementations are cheap to share (`Arc<dyn Model>`).
#[async_trait]
pub trait Model: Send + Sync {
    /// The configured model name (`gemini-2.5-flash`, `offline`, ...).
    fn name(&self) -> &str;

    /// The provider, for logs and metrics labels.
    fn provider(&self) -> &'static str;

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError>;

    /// Streams the answer. An error before the first event is returned here,
    /// so the caller can still answer with a proper HTTP status; an error
    /// later arrives in the stream.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError>;

    /// The route this model was chosen by and any fallback so far: set by a
    /// [`routed::Routed`] model (made per request), so a run that is handed
    /// a model can report how it was chosen; `None` for any other.
    fn routing(&self) -> Option<routed::Routing> {
        None
    }
}

/// Builds the configured model, wrapped in the metrics decorator.
///
/// Only HTTP providers get an HTTP client: building one loads the system's
/// root certificates (some 150 files), a few milliseconds of cold start the
/// offline model has no use for.
pub fn build(settings: &LlmSettings, metrics: Metrics) -> anyhow::Result<Arc<dyn Model>> {
    let inner: Arc<dyn Model> = match settings.provider {
        Provider::Offline => Arc::new(offline::OfflineModel::new()),
        Provider::Gemini => Arc::new(gemini::GeminiModel::ai_studio(
            settings,
            http_client(settings.timeout)?,
        )?),
        Provider::Vertex => Arc::new(gemini::GeminiModel::vertex(settings, http_client(settings.timeout)?)?),
        Provider::OpenAi => Arc::new(openai::OpenAiModel::new(settings, http_client(settings.timeout)?)?),
    };
    Ok(Arc::new(metered::Metered::new(inner, metrics, settings.prices.clone())))
}

/// The HTTP client every provider shares: rustls, connection reuse, and a
/// connect timeout (the per-request timeout is applied by each call, so a
/// stream can outlive it).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("serverless-agent/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A rough token estimate (4 characters a token) for models that report none.
pub(crate) fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
