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
use agent_core::chat::{Chat, Turn, prepare, store_turn};
use agent_core::http::paging::{self, PageQuery};
use agent_core::http::{Api, ApiError, ApiJson, Event, Metrics, Operation, Routes, detached, sse};
use agent_core::llm::{Model, ModelStream, StreamEvent};
use agent_core::store::usage::UsageView;
use agent_core::store::{StoredMessage, TaskStore};
use agent_core::{owned, session};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;

pub use agent_core::chat::batch::{BatchRequest, BatchResponse, BatchResult, ItemError, MAX_ITEMS};
// The chat turn itself (its request, answer, `prepare` and `store_turn`)
// lives in `agent_core::chat`: the worker runs a queued batch's turns too.
pub use agent_core::chat::{ChatRequest, ChatResponse};

pub const FUNCTION: &str = "chat_function";

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
    /// The models, the sessions and the limits of a turn.
    pub chat: Chat,
    pub metrics: Metrics,
    /// Where a batch with `"async": true` is stored as a task.
    pub tasks: Arc<dyn TaskStore>,
    /// The app, for the queue a batch with `"async": true` is published
    /// to, opened when the first one comes (`agent_core::queue::open`).
    pub app: App,
}

impl ChatState {
    pub fn new(app: &App) -> ChatState {
        ChatState {
            chat: Chat::new(app),
            metrics: app.metrics.clone(),
            tasks: app.stores.tasks.clone(),
            app: app.clone(),
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
/// URL is called, and the shared HTTP layer; and the task routes, so the
/// `status_url` of a batch queued here is answered here (`local` has them
/// from the agent function).
pub fn router(app: &App) -> Router {
    app.standalone(
        api(app)
            .merge(agent_core::http::models::api(app))
            .merge(agent_core::http::cache::api(app))
            // A queued batch's status_url and events_url, answered here.
            .merge(agent_core::task::routes::api(app)),
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

pub async fn chat(
    State(state): State<ChatState>,
    principal: Principal,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let stream = body.stream;
    let turn = prepare(&state.chat, principal.as_str(), body).await?;
    if stream {
        return stream_chat(state, turn).await;
    }
    // Detached: a client that disconnects drops this future, and the paid
    // model call must still end with its answer stored.
    let done = detached::run(move |client| async move {
        let answer = turn.model.generate(&turn.request).await?;
        state.count_if_abandoned(client.is_gone());
        store_turn(&state.chat, &turn, &answer).await
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
                break match store_turn(&state.chat, &turn, &answer).await {
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
    let found = state.chat.sessions.messages_page(&key, after, page.limit).await?;
    if found.items.is_empty() && after == 0 {
        return Err(unknown_session(&id));
    }
    // A second read, off the chat path: a page and the totals need not be
    // of one instant, and a session deleted in between shows zeros.
    let usage = state.chat.sessions.totals(&key).await?.unwrap_or_default();
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
        .chat
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
        .chat
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
