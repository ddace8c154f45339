//! A chat turn, as `chat_function` answers it and the worker runs the
//! items of a queued chat batch: the request and its answer, reading the
//! session's recent history ([`prepare`]), and storing the user's message
//! with the model's answer in one atomic append ([`store_turn`]).
//!
//! Here rather than in `chat_function` because two functions need it: the
//! chat function, and the worker (`agent_worker`, or the local queue) that
//! runs a batch submitted with `"async": true` ([`batch`]).

pub mod batch;

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::App;
use crate::cache::ResponseCache;
use crate::http::ApiError;
use crate::http::json::require_text;
use crate::llm::routed::{Models, Routed, Routing};
use crate::llm::routing::{RouteInfo, Tier};
use crate::llm::{Content, Model, ModelRequest, ModelResponse, Role, Spend};
use crate::store::{Charge, History, NewMessage, SessionStore};
use crate::{owned, session};

/// `POST /api/v1/chat`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The user's message (MAX_MESSAGE_CHARS at most).
    #[schemars(schema_with = "crate::http::json::text_schema")]
    pub message: String,
    /// Continues this session; a new one is created when omitted. Letters,
    /// digits, `_`, `.` and `-`.
    #[serde(default)]
    #[schemars(schema_with = "crate::session::optional_id_schema")]
    pub session_id: Option<String>,
    /// Instructions for the model on this turn (not stored in the session).
    #[serde(default)]
    pub system_instruction: Option<String>,
    /// Answer with server-sent events: `delta` events, then `done` or `error`.
    #[serde(default)]
    pub stream: bool,
    /// `fast`, `strong`, or a model name from the allow-list (see
    /// `GET /api/v1/models`); routed by MODEL_ROUTING when omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// `false`: this turn skips the response cache (`CACHE`): the model
    /// answers even if the cache holds the answer, and it is not kept.
    #[serde(default)]
    pub cache: Option<bool>,
}

/// The answer to a chat request, and the `data` of a stream's `done` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ChatResponse {
    pub response: String,
    pub session_id: String,
    /// Input and output tokens: `usage`'s two totals.
    pub tokens_used: u64,
    /// Tokens, model calls and cost of this turn.
    pub usage: Spend,
    pub model: String,
    /// The tier the turn was routed to and why.
    pub route: RouteInfo,
    /// The model that failed (after its retries) when another one answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<String>,
    /// The answer came from the response cache: no model call, nothing
    /// spent (`usage.cache_hits` 1, `usage.saved_usd` what it saved).
    #[serde(default)]
    pub cached: bool,
}

/// What a chat turn needs: the models, the sessions, and the limits.
#[derive(Clone)]
pub struct Chat {
    /// The tiers: each turn is routed by its message.
    pub models: Arc<Models>,
    pub sessions: Arc<dyn SessionStore>,
    /// The response cache; `None` with `CACHE=off`.
    pub cache: Option<Arc<ResponseCache>>,
    pub history_limit: usize,
    pub max_message_chars: usize,
}

impl Chat {
    pub fn new(app: &App) -> Chat {
        Chat {
            models: app.models.clone(),
            sessions: app.stores.sessions.clone(),
            cache: app.cache.clone(),
            history_limit: app.settings.history_limit,
            max_message_chars: app.settings.http.max_message_chars,
        }
    }
}

/// A validated request, ready for the model.
pub struct Turn {
    pub session_id: String,
    /// The session's store key: the caller's own (`owned::session_key`).
    pub session_key: String,
    pub message: String,
    pub request: ModelRequest,
    /// The history as read, which the append starts from: on Firestore the
    /// turn's one read serves both.
    pub history: History,
    /// The turn's model: routed by its message, falling back on failure.
    pub model: Routed,
}

/// Checks `body` and reads the session's recent history, for the
/// principal `owner` (`Principal::as_str`): the turn, ready for the model.
pub async fn prepare(chat: &Chat, owner: &str, body: ChatRequest) -> Result<Turn, ApiError> {
    require_text("message", &body.message, chat.max_message_chars)?;
    if let Some(system) = &body.system_instruction
        && system.chars().count() > chat.max_message_chars
    {
        return Err(ApiError::invalid_argument(format!(
            "system_instruction is over the limit of {} characters; shorten it",
            chat.max_message_chars
        )));
    }
    let route = chat
        .models
        .route(&body.message, 0, body.model.as_deref())
        .map_err(|refused| ApiError::invalid_argument(refused.to_string()))?;
    let session_id = session::given_or_new(body.session_id.as_deref())?;
    let session_key = owned::session_key(owner, &session_id);
    let mut history = chat.sessions.history(&session_key, chat.history_limit).await?;
    let mut contents: Vec<Content> = std::mem::take(&mut history.messages)
        .into_iter()
        .map(|m| match m.role {
            Role::User => Content::user_text(m.content),
            Role::Model => Content::model_text(m.content),
        })
        .collect();
    contents.push(Content::user_text(body.message.clone()));
    Ok(Turn {
        session_id,
        session_key,
        message: body.message,
        request: ModelRequest {
            system_instruction: body.system_instruction.filter(|s| !s.trim().is_empty()),
            contents,
            tools: Vec::new(),
            response_schema: None,
        },
        history,
        model: chat
            .models
            .routed(&route)
            .with_cache(chat.cache.as_ref().filter(|_| body.cache != Some(false)), owner),
    })
}

/// Stores the user's message and the answer in one atomic append.
///
/// What the answer spent goes with it (`Charge`): the store adds it to the
/// session's totals and the caller's day in the same write, so there is no
/// other round trip and the sums count exactly the turns stored.
pub async fn store_turn(chat: &Chat, turn: &Turn, answer: &ModelResponse) -> Result<ChatResponse, ApiError> {
    let response = answer.text();
    // Read before the write: the route and any fallback are the call's.
    let routing = turn.model.routing().unwrap_or_else(|| Routing {
        route: RouteInfo {
            tier: Tier::Fast,
            reason: "default".to_string(),
        },
        fallback_from: None,
    });
    let usage = Spend::of(answer);
    let charge = Charge::now(&answer.model, usage);
    chat.sessions
        .append_after(
            &turn.session_key,
            &turn.history,
            &[
                NewMessage {
                    role: Role::User,
                    content: turn.message.clone(),
                },
                NewMessage {
                    role: Role::Model,
                    content: response.clone(),
                },
            ],
            Some(&charge),
        )
        .await?;
    Ok(ChatResponse {
        response,
        session_id: turn.session_id.clone(),
        tokens_used: answer.usage.total(),
        usage,
        model: answer.model.clone(),
        route: routing.route,
        fallback_from: routing.fallback_from,
        cached: answer.cache_hit.is_some(),
    })
}
