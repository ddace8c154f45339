//! `POST /api/v1/chat/batch`: many chat turns in one request.
//!
//! Items run concurrently under a bound, each counted against the caller's
//! chat rate limit as a request of its own (the batch's own admission is
//! the first item's), and items that name the same session run one after
//! another in the batch's order (`agent_core::chat::batch`, which the
//! worker runs too). One bad item never fails the others; only a batch that
//! cannot be read at all is a 400.
//!
//! The batch runs detached from its request, as a single turn does: once a
//! model call has started, its turn is stored whether or not the client
//! stayed.
//!
//! With `"async": true` the batch is a task instead, owned by the caller:
//! checked as a synchronous batch is (a 400 queues nothing), its items
//! counted against the rate limit at once, stored `queued` and published as
//! an agent task is (`agent_core::task::submit`), answered 202 with its
//! status URL. The worker runs it once in effect; its result is the answer
//! the synchronous call gives, read with `GET /api/v1/tasks/{id}`, followed
//! with `.../events`, and POSTed to its `callback_url` if it has one.

use agent_core::auth::Principal;
use agent_core::chat::batch::{self, BatchRequest, BatchResponse};
use agent_core::http::{ApiError, ApiJson, Operation, RateBudget, detached};
use agent_core::store::{TaskKind, TaskRecord};
use agent_core::task::{self, Accepted};
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::ChatState;

pub(super) fn operation() -> Operation {
    Operation::post(
        "chat_batch",
        "many chat turns at once: concurrent, each counted against the rate limit, \
         turns of one session in order; or queued as a task with async: true",
    )
    .tag("chat")
    .body::<BatchRequest>()
    .json::<BatchResponse>(200, "one result per item, in order: its answer or its error")
    .json_with::<Accepted>(
        202,
        "with async: true, the batch is queued as a task; its result will be this same answer",
        &["Location"],
    )
    .error(
        400,
        "the batch is not valid: 1 to 100 requests, concurrency 1 to 16, a usable callback_url with async",
    )
    .error(429, "over the rate limit; retry after Retry-After")
    .error(
        503,
        "the store (or, with async, the queue) is unavailable for now; retry after Retry-After",
    )
}

pub async fn chat_batch(
    State(state): State<ChatState>,
    principal: Principal,
    budget: Option<Extension<RateBudget>>,
    ApiJson(body): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let concurrency = batch::check(&body)?;
    let budget = budget.map(|Extension(budget)| budget);
    if body.run_async {
        return submit(&state, &principal, budget, body).await;
    }
    if body.callback_url.is_some() {
        return Err(ApiError::invalid_argument(
            "callback_url is only used by asynchronous batches: add \"async\": true, or omit callback_url",
        ));
    }
    let chat = state.chat.clone();
    let answer = detached::run(move |_| async move {
        Ok::<_, ApiError>(batch::run(&chat, principal.as_str(), budget, body.requests, concurrency).await)
    })
    .await?;
    Ok(axum::Json(answer).into_response())
}

/// Queues the batch as a task of the caller's. Everything the request can
/// be refused for is checked first: the callback URL, then the rate limit,
/// which counts each item but the first (whose place is the request's own
/// admission) now, as the worker has no caller to count against. A batch
/// over the limit is a 429 and queues nothing (the places counted before
/// the refusal stay counted, as a synchronous batch's would).
async fn submit(
    state: &ChatState,
    principal: &Principal,
    budget: Option<RateBudget>,
    mut body: BatchRequest,
) -> Result<Response, ApiError> {
    let callback_url = match body.callback_url.take() {
        Some(url) => {
            let tasks = &state.app.settings.tasks;
            Some(task::check_callback(
                &url,
                tasks.allow_loopback_callbacks,
                tasks.webhook_secret.is_some(),
            )?)
        }
        None => None,
    };
    if let Some(budget) = &budget {
        for _ in 1..body.requests.len() {
            budget.spend_one().await?;
        }
    }
    let items = body.requests.len();
    body.run_async = false;
    let mut record = TaskRecord::queued(
        uuid::Uuid::new_v4().to_string(),
        principal.as_str(),
        format!("chat batch of {items} request{}", if items == 1 { "" } else { "s" }),
        "",
        0,
    );
    record.kind = TaskKind::ChatBatch;
    // A request read from JSON always writes back as JSON.
    record.input = Some(serde_json::to_value(&body).map_err(|_| ApiError::internal())?);
    record.callback_url = callback_url;
    let queue = open_queue(state).await?;
    task::submit(state.tasks.as_ref(), queue.as_ref(), record, Vec::new()).await
}

/// The app's task queue, opened by the first asynchronous batch unless the
/// agent function (in `local`) opened it already.
async fn open_queue(state: &ChatState) -> Result<std::sync::Arc<dyn agent_core::queue::Queue>, ApiError> {
    agent_core::queue::shared(&state.app).await.map_err(|err| {
        ApiError::unavailable(
            format!("the task queue could not be opened ({err:#}); submit the batch again later"),
            std::time::Duration::from_secs(5),
        )
    })
}
