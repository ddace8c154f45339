//! `chat_function`: chat with session memory.
//!
//! `POST /api/v1/chat` sends the last `HISTORY_LIMIT` messages of the session
//! and the new message to the model, then stores the user's message and the
//! model's answer together: a failed model call stores nothing, so a session
//! never holds a question without its answer. `stream: true` answers with
//! server-sent events and stores the turn once the stream completes.
//!
//! A turn whose model call has started is not lost with its client: the
//! call, and the storing of its answer, run on a task of their own
//! (`agent_core::http::detached`), and a turn whose client was gone by the
//! time the answer was ready is counted in `chat_turns_abandoned_total`.
//!
//! `POST /api/v1/chat/batch` runs up to 100 turns at once (see `batch`).
//!
//! The handlers are plain functions over [`ChatState`]; everything they do
//! not own (keys, limits, CORS, errors, metrics) comes from `agent-core`.

mod batch;

use std::sync::Arc;

use agent_core::App;
use agent_core::auth::Principal;
use agent_core::cache::ResponseCache;
use agent_core::http::json::require_text;
use agent_core::http::paging::{self, PageQuery};
use agent_core::http::{Api, ApiError, ApiJson, Event, Metrics, Operation, Routes, detached, sse};
use agent_core::llm::routed::{Models, Routed, Routing};
use agent_core::llm::routing::{RouteInfo, Tier};
use agent_core::llm::{Content, Model, ModelRequest, ModelResponse, ModelStream, Role, Spend, StreamEvent};
use agent_core::store::usage::UsageView;
use agent_core::store::{Charge, History, NewMessage, SessionStore, StoredMessage};
use agent_core::{owned, session};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use batch::{BatchRequest, BatchResponse, BatchResult, ItemError, MAX_ITEMS};

pub const FUNCTION: &str = "chat_function";

/// `POST /api/v1/chat`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The user's message (MAX_MESSAGE_CHARS at most).
    #[schemars(schema_with = "agent_core::http::json::text_schema")]
    pub message: String,
    /// Continues this session; a new one is created when omitted. Letters,
    /// digits, `_`, `.` and `-`.
    #[serde(default)]
    #[schemars(schema_with = "agent_core::session::optional_id_schema")]
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

/// The `data` of a stream's `delta` event: the next piece of the answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Delta {
    pub text: String,
}

/// `GET /api/v1/sessions/{id}`: a page of the session's messages.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SessionResponse {
    pub session_id: String,
    /// Oldest first, at most `limit`, after `cursor`.
    pub messages: Vec<StoredMessage>,
    /// Pass it as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
    /// What the session's turns spent, summed (every page shows it).
    pub usage: UsageView,
}

/// `GET /api/v1/sessions`: a page of the caller's sessions.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SessionList {
    /// Most recently written first.
    pub sessions: Vec<SessionInfo>,
    /// Pass it as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// One session as listed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SessionInfo {
    pub session_id: String,
    pub message_count: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// When its last turn was stored.
    pub updated_at: String,
    /// What its turns spent, summed.
    pub usage: UsageView,
}

#[derive(Clone)]
pub struct ChatState {
    /// The tiers: each turn is routed by its message.
    pub models: Arc<Models>,
    pub sessions: Arc<dyn SessionStore>,
    /// The response cache; `None` with `CACHE=off`.
    pub cache: Option<Arc<ResponseCache>>,
    pub history_limit: usize,
    pub max_message_chars: usize,
    pub metrics: Metrics,
}

impl ChatState {
    pub fn new(app: &App) -> ChatState {
        ChatState {
            models: app.models.clone(),
            sessions: app.stores.sessions.clone(),
            cache: app.cache.clone(),
            history_limit: app.settings.history_limit,
            max_message_chars: app.settings.http.max_message_chars,
            metrics: app.metrics.clone(),
        }
    }

    /// Counts a turn whose answer is ready when its client has gone.
    fn count_if_abandoned(&self, client_gone: bool) {
        if client_gone {
            self.metrics.inc(
                "chat_turns_abandoned_total",
                "Chat turns whose client had gone by the time the model's answer was ready; each is stored all the same.",
                &[],
            );
        }
    }
}

/// The named routes, behind the chat rate limit; `local` merges these.
pub fn api(app: &App) -> Api {
    app.rate_limited(
        routes(ChatState::new(app)),
        "chat",
        app.settings.rate_limit_chat,
        app.settings.rate_limit_chat_per_client,
    )
    // What the caller spent: here, so that `local` serves it once.
    .merge(agent_core::http::usage::api(app))
}

/// The standalone function: the named routes, `POST /` as a Cloud Function
/// URL is called, and the shared HTTP layer.
pub fn router(app: &App) -> Router {
    app.standalone(
        api(app)
            .merge(agent_core::http::models::api(app))
            .merge(agent_core::http::cache::api(app)),
        FUNCTION,
    )
}

fn chat_operation() -> Operation {
    Operation::post(
        "chat",
        "chat with session memory: the model answers with the session's recent history",
    )
    .tag("chat")
    .body::<ChatRequest>()
    .json::<ChatResponse>(200, "the model's answer, stored in the session with the message")
    .event_stream(
        200,
        "with stream: true, `delta` events as the model writes, then `done` (the same object) or `error`",
        &[
            Event::json::<Delta>("delta"),
            Event::json::<ChatResponse>("done"),
            Event::error(),
        ],
        false,
    )
    .model_errors()
}

fn routes(state: ChatState) -> Api {
    let session_errors = |op: Operation| {
        op.tag("chat")
            .path_schema(session::id_schema)
            .error(400, "the session id is not valid (letters, digits, _, . and -)")
            .error(404, "there is no such session")
            .error(503, "the store is unavailable for now; retry after Retry-After")
    };
    Routes::new()
        .main_route("/api/v1/chat", post(chat), [chat_operation()])
        .route("/api/v1/chat/batch", post(batch::chat_batch), [batch::operation()])
        .route(
            "/api/v1/sessions",
            get(list_sessions),
            [paging::paged(
                Operation::get("list_sessions", "the caller's sessions, most recently written first")
                    .tag("chat")
                    .json::<SessionList>(200, "a page of sessions"),
            )
            .error(503, "the store is unavailable for now; retry after Retry-After")],
        )
        .route(
            "/api/v1/sessions/{id}",
            get(get_session).delete(delete_session),
            [
                paging::paged(session_errors(
                    Operation::get("get_session", "a page of a session's messages, oldest first")
                        // The first answer documented for a status is the one shown.
                        .error(
                            400,
                            "the session id, limit or cursor is not valid (the message says which)",
                        )
                        .json::<SessionResponse>(200, "a page of the session"),
                )),
                session_errors(
                    Operation::delete("delete_session", "forget a session and its messages")
                        .empty(204, "the session is gone"),
                ),
            ],
        )
        .with_state(state)
}

/// A validated request, ready for the model.
struct Turn {
    session_id: String,
    /// The session's store key: the caller's own (`owned::session_key`).
    session_key: String,
    message: String,
    request: ModelRequest,
    /// The history as read, which the append starts from: on Firestore the
    /// turn's one read serves both.
    history: History,
    /// The turn's model: routed by its message, falling back on failure.
    model: Routed,
}

async fn prepare(state: &ChatState, principal: &Principal, body: ChatRequest) -> Result<Turn, ApiError> {
    require_text("message", &body.message, state.max_message_chars)?;
    if let Some(system) = &body.system_instruction
        && system.chars().count() > state.max_message_chars
    {
        return Err(ApiError::invalid_argument(format!(
            "system_instruction is over the limit of {} characters; shorten it",
            state.max_message_chars
        )));
    }
    let route = state
        .models
        .route(&body.message, 0, body.model.as_deref())
        .map_err(|refused| ApiError::invalid_argument(refused.to_string()))?;
    let session_id = session::given_or_new(body.session_id.as_deref())?;
    let session_key = owned::session_key(principal.as_str(), &session_id);
    let mut history = state.sessions.history(&session_key, state.history_limit).await?;
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
        },
        history,
        model: state.models.routed(&route).with_cache(
            state.cache.as_ref().filter(|_| body.cache != Some(false)),
            principal.as_str(),
        ),
    })
}

/// Stores the user's message and the answer in one atomic append.
///
/// What the answer spent goes with it (`Charge`): the store adds it to the
/// session's totals and the caller's day in the same write, so there is no
/// other round trip and the sums count exactly the turns stored.
async fn store_turn(state: &ChatState, turn: &Turn, answer: &ModelResponse) -> Result<ChatResponse, ApiError> {
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
    state
        .sessions
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

pub async fn chat(
    State(state): State<ChatState>,
    principal: Principal,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let stream = body.stream;
    let turn = prepare(&state, &principal, body).await?;
    if stream {
        return stream_chat(state, turn).await;
    }
    // Detached: a client that disconnects drops this future, and the paid
    // model call must still end with its answer stored.
    let done = detached::run(move |client| async move {
        let answer = turn.model.generate(&turn.request).await?;
        state.count_if_abandoned(client.is_gone());
        store_turn(&state, &turn, &answer).await
    })
    .await?;
    Ok(axum::Json(done).into_response())
}

/// `delta` events as the model writes, then one `done` event carrying the
/// same object the non-streaming call answers (after the turn is stored),
/// or one `error` event with the envelope.
///
/// The stream is opened, and then driven to its end, on a task of its own
/// that sends the events to the response: a client that goes away stops
/// receiving them, not the turn, which is stored when the stream completes.
async fn stream_chat(state: ChatState, mut turn: Turn) -> Result<Response, ApiError> {
    let (feed, events) = sse::channel();
    detached::run(move |_| async move {
        // An error before the first token is still a proper HTTP status.
        // Storing the turn needs only its session and message, not the
        // request (the history), so the model takes it rather than a copy.
        let model_stream = turn.model.stream(std::mem::take(&mut turn.request)).await?;
        detached::spawn(finish_stream(state, turn, model_stream, feed));
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(sse::response(events))
}

/// Sends the deltas, then stores the turn and sends `done`, or sends the
/// `error`; nothing follows a done or error event.
async fn finish_stream(state: ChatState, turn: Turn, mut model_stream: ModelStream, feed: sse::Feed) {
    let last = loop {
        match model_stream.next().await {
            Some(Ok(StreamEvent::Delta(text))) => feed.send(sse::json("delta", &Delta { text })),
            Some(Ok(StreamEvent::Done(answer))) => {
                state.count_if_abandoned(feed.is_gone());
                break match store_turn(&state, &turn, &answer).await {
                    Ok(done) => sse::json("done", &done),
                    Err(err) => sse::error(&err),
                };
            }
            Some(Err(err)) => break sse::error(&ApiError::from(err)),
            None => return,
        }
    };
    feed.send(last);
}

/// A page of the session's messages, read as one bounded range of the
/// store (O(`limit`) however long the session). Another principal's
/// session answers exactly as one that does not exist: its key is not the
/// caller's, so the store finds nothing. A first page with no message is a
/// missing session; a later page past the end (or of a session deleted
/// since) is empty, with no cursor.
pub async fn get_session(
    State(state): State<ChatState>,
    principal: Principal,
    Path(id): Path<String>,
    page: PageQuery,
) -> Result<axum::Json<SessionResponse>, ApiError> {
    session::validate("the session id", &id)?;
    let after = page.after_message()?;
    let key = owned::session_key(principal.as_str(), &id);
    let found = state.sessions.messages_page(&key, after, page.limit).await?;
    if found.items.is_empty() && after == 0 {
        return Err(unknown_session(&id));
    }
    // A second read, off the chat path: a page and the totals need not be
    // of one instant, and a session deleted in between shows zeros.
    let usage = state.sessions.totals(&key).await?.unwrap_or_default();
    Ok(axum::Json(SessionResponse {
        session_id: id,
        messages: found.items,
        next_cursor: found.next.map(paging::message_cursor),
        usage: usage.view(),
    }))
}

/// The caller's sessions, most recently written first: only its own, as
/// the store filters on the owner whatever the cursor says.
pub async fn list_sessions(
    State(state): State<ChatState>,
    principal: Principal,
    page: PageQuery,
) -> Result<axum::Json<SessionList>, ApiError> {
    let after = page.after_session()?;
    let found = state
        .sessions
        .list_sessions(principal.as_str(), after.as_ref(), page.limit)
        .await?;
    Ok(axum::Json(SessionList {
        sessions: found
            .items
            .into_iter()
            .map(|s| SessionInfo {
                session_id: s.id,
                message_count: s.message_count,
                created_at: s.created_at,
                updated_at: s.updated_at,
                usage: s.usage.view(),
            })
            .collect(),
        next_cursor: found.next.as_ref().map(paging::session_cursor),
    }))
}

pub async fn delete_session(
    State(state): State<ChatState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    session::validate("the session id", &id)?;
    if state
        .sessions
        .delete(&owned::session_key(principal.as_str(), &id))
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(unknown_session(&id))
    }
}

fn unknown_session(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no session {id:?}; a session is created by the first POST /api/v1/chat that names it"
    ))
}
