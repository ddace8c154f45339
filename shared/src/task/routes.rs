//! The task routes: a caller's tasks listed, one read, its progress
//! followed, one cancelled. Every function that submits tasks serves them
//! (the agent function, and the chat function for its queued batches), so
//! a `status_url` is answered by the service that gave it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use schemars::JsonSchema;
use serde::Serialize;

use super::TaskView;
use crate::App;
use crate::auth::Principal;
use crate::callback::{Callbacks, Settled};
use crate::http::paging::{self, PageQuery};
use crate::http::{Api, ApiError, Operation, Routes, detached};
use crate::owned;
use crate::session;
use crate::store::{Cancel, TaskRecord, TaskStore};

/// What the task routes need: the store, and the callbacks a cancel sends.
#[derive(Clone)]
pub struct TaskRoutes {
    pub tasks: Arc<dyn TaskStore>,
    pub callbacks: Callbacks,
}

impl TaskRoutes {
    pub fn new(app: &App) -> TaskRoutes {
        TaskRoutes {
            tasks: app.stores.tasks.clone(),
            callbacks: Callbacks::new(&app.settings.tasks, &app.metrics, app.stores.tasks.clone()),
        }
    }
}

/// The task routes, behind their own rate limit (`RATE_LIMIT_TASKS`): a
/// client polls them, and one that used up its limit for runs must still
/// be able to read and stop what it started.
pub fn api(app: &App) -> Api {
    let routes = Routes::new()
        .route("/api/v1/tasks", get(list_tasks), [list_operation()])
        .route(
            "/api/v1/tasks/{id}",
            get(get_task),
            [task_errors(
                Operation::get(
                    "get_task",
                    "a task: its status, attempts, and its result or error; a queued multi-agent run's children",
                )
                .json::<TaskView>(200, "the task"),
            )],
        )
        .route(
            "/api/v1/tasks/{id}/events",
            get(task_events),
            [task_errors(
                Operation::get(
                    "task_events",
                    "a task's progress: status, step or item, and done events",
                )
                .event_stream(
                    200,
                    "`status`, one `step` per completed step (or `item` per finished item of a chat batch; \
                     a multi-agent run's `plan`, `subtask_started`, `subtask_finished` and `synthesis`; a \
                     research's `subtopics`, `subtopic_started`, `subtopic_finished` and `stage`), then `done` \
                     with the task",
                    &super::PROGRESS_EVENTS,
                    true,
                ),
            )],
        )
        .route(
            "/api/v1/tasks/{id}/cancel",
            post(cancel_task),
            [task_errors(
                Operation::post(
                    "cancel_task",
                    "cancel a task: a queued one never runs, a running one stops before its next model or tool call",
                )
                .json::<TaskView>(200, "the task, cancelled (now or by an earlier cancel)"),
            )
            .error(
                409,
                "the task already finished (completed or failed), is a synchronous run, or is a subtask \
                 (cancelled with its multi-agent run)",
            )],
        );
    let settings = &app.settings;
    app.rate_limited(
        routes.with_state(TaskRoutes::new(app)),
        "tasks",
        settings.rate_limit_tasks,
        settings.rate_limit_tasks_per_client,
    )
}

pub fn task_errors(op: Operation) -> Operation {
    op.tag("tasks")
        .path_schema(session::id_schema)
        .error(400, "the task id is not valid")
        .error(404, "there is no such task")
        .error(503, "the store is unavailable for now; retry after Retry-After")
}

fn list_operation() -> Operation {
    paging::paged(
        Operation::get("list_tasks", "the caller's tasks, newest first")
            .tag("tasks")
            // The first answer documented for a status is the one shown.
            .error(400, "limit, cursor or status is not valid (the message says which)")
            .query_param(
                "status",
                "only the tasks in this status",
                serde_json::json!({"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]}),
            )
            .json::<TaskList>(200, "a page of tasks"),
    )
    .error(503, "the store is unavailable for now; retry after Retry-After")
}

/// The caller's task `id`. Another principal's task answers exactly as one
/// that does not exist: the same one read, the same 404.
pub async fn find(tasks: &dyn TaskStore, principal: &Principal, id: &str) -> Result<TaskRecord, ApiError> {
    super::validate_id("the task id", id)?;
    let found = tasks.get(id).await?;
    found.filter(|task| owned::owns(principal, &task.owner)).ok_or_else(|| {
        ApiError::not_found(format!(
            "there is no task {id:?}; task ids are returned by POST /api/v1/agent (and by POST /api/v1/chat/batch with async)"
        ))
    })
}

/// Cancels the caller's task `id` and answers with it, `cancelled`. The
/// store decides in one step ([`TaskStore::cancel`]); the request that
/// cancelled it sends its callback, once, before answering (on Cloud Run
/// nothing runs after the answer), detached so that a client that leaves
/// does not drop it. Cancelling again answers the same task; a finished
/// task is a 409.
pub async fn cancel_task(
    State(state): State<TaskRoutes>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<TaskView>, ApiError> {
    let found = find(state.tasks.as_ref(), &principal, &id).await?;
    if let Some(parent) = &found.parent {
        return Err(conflict(format!(
            "task {id:?} is a subtask of the multi-agent run {parent:?}, and ends with it: cancel {parent:?} \
             (POST /api/v1/tasks/{parent}/cancel)"
        )));
    }
    detached::run(move |_| async move { cancel(&state, &found.task_id).await })
        .await
        .map(axum::Json)
}

pub async fn cancel(state: &TaskRoutes, id: &str) -> Result<TaskView, ApiError> {
    match state.tasks.cancel(id).await? {
        Cancel::Cancelled(task) => {
            tracing::info!(task_id = id, attempts = task.attempts, "task cancelled");
            // Its children next: the parent, cancelled first, is no longer
            // resumed by them, and none starts after this.
            super::cancel_children(state.tasks.as_ref(), &task).await;
            // Recorded pending with the cancel; sent now, and by a later
            // delivery of the task should this request not get to it.
            match state.callbacks.settle(id).await {
                Settled::Done(Some(settled)) => Ok((*settled).into()),
                Settled::Done(None) | Settled::Later(_) | Settled::Store(_) => Ok(task.into()),
            }
        }
        Cancel::AlreadyCancelled(task) => {
            // Again, should the cancel that won have stopped halfway.
            super::cancel_children(state.tasks.as_ref(), &task).await;
            Ok(task.into())
        }
        Cancel::Finished(task) => Err(conflict(format!(
            "task {id:?} already finished ({}), so there is nothing to cancel; \
             only a queued or running task can be cancelled",
            task.status().as_str()
        ))),
        Cancel::Synchronous(_) => Err(conflict(format!(
            "task {id:?} is a synchronous run, which ends with its request and cannot be cancelled; \
             submit with \"async\": true to be able to cancel a task"
        ))),
        // Removed (a TTL policy) since `find` read it.
        Cancel::NotFound => Err(ApiError::not_found(format!(
            "there is no task {id:?}; task ids are returned by POST /api/v1/agent (and by POST /api/v1/chat/batch with async)"
        ))),
    }
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

/// `GET /api/v1/tasks`: a page of the caller's tasks.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskList {
    /// Newest first (by creation), each as `GET /api/v1/tasks/{id}` shows it.
    pub tasks: Vec<TaskView>,
    /// Pass it as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The caller's tasks, newest first, in one status when asked: only its
/// own, as the store filters on the owner whatever the cursor says.
pub async fn list_tasks(
    State(state): State<TaskRoutes>,
    principal: Principal,
    page: PageQuery,
) -> Result<axum::Json<TaskList>, ApiError> {
    let status = page.status()?;
    let after = page.after_task()?;
    let found = state
        .tasks
        .list_tasks(principal.as_str(), status, after.as_ref(), page.limit)
        .await?;
    Ok(axum::Json(TaskList {
        tasks: found.items.into_iter().map(TaskView::from).collect(),
        next_cursor: found.next.as_ref().map(paging::task_cursor),
    }))
}

pub async fn get_task(
    State(state): State<TaskRoutes>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<TaskView>, ApiError> {
    let found = find(state.tasks.as_ref(), &principal, &id).await?;
    let children = super::children(state.tasks.as_ref(), &found).await?;
    Ok(axum::Json(TaskView {
        children,
        ..found.into()
    }))
}

/// Server-sent events: `status`, `step`..., then `done` with the task.
/// Reconnecting with `Last-Event-ID` resumes after that step.
pub async fn task_events(
    State(state): State<TaskRoutes>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = find(state.tasks.as_ref(), &principal, &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(super::parse_event_id);
    Ok(crate::http::sse::response(super::progress(
        state.tasks.clone(),
        found,
        after,
    )))
}
