//! Submission: an asynchronous request stored as a `queued` task, published,
//! and answered 202 once the queue holds it; the same for an agent run and
//! a chat batch.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::store::{Finished, TaskRecord, TaskStatus, TaskStore};

/// The 202 answer to an asynchronous `POST /api/v1/agent` or
/// `POST /api/v1/chat/batch`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct Accepted {
    pub task_id: String,
    pub status: TaskStatus,
    /// The agent run's session (absent for a chat batch, whose items name
    /// their own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    /// Where to read the task (also the `Location` header).
    pub status_url: String,
    /// Where to follow its progress as server-sent events.
    pub events_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Checks a `callback_url` a client gave with `"async": true`: a usable
/// outbound URL (`outbound_url`), on a deployment that can sign callbacks
/// (`enabled`: WEBHOOK_SECRET is set).
pub fn check_callback(url: &str, allow_loopback: bool, enabled: bool) -> Result<String, ApiError> {
    let url = crate::outbound_url::validate_url(url, allow_loopback)
        .map_err(|why| ApiError::invalid_argument(format!("callback_url is not usable: {why}")))?;
    if !enabled {
        return Err(ApiError::invalid_argument(
            "callback_url cannot be used here: this deployment has no WEBHOOK_SECRET to sign callbacks with; \
             poll status_url or follow events_url instead",
        ));
    }
    Ok(url.to_string())
}

/// Stores the task as `queued` and publishes it; the 202 goes out only once
/// the queue holds it (see [`enqueue`]). The same for every kind of task.
pub async fn submit(
    tasks: &dyn TaskStore,
    queue: &dyn crate::queue::Queue,
    task: TaskRecord,
    warnings: Vec<String>,
) -> Result<axum::response::Response, ApiError> {
    enqueue(tasks, queue, &task).await?;
    let status_url = format!("/api/v1/tasks/{}", task.task_id);
    let accepted = Accepted {
        events_url: format!("{status_url}/events"),
        status_url,
        task_id: task.task_id,
        status: TaskStatus::Queued,
        session_id: task.session_id,
        warnings,
    };
    Ok(accepted_response(&accepted, &accepted.status_url))
}

/// A 202 with `body` and a `Location` header (when `location` makes one).
pub fn accepted_response(body: &impl Serialize, location: &str) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;

    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    // A uuid makes a valid header value; the header is only a convenience.
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Stores the task as `queued` and publishes it. A failed publish fails
/// the task (and waives the callback it would owe), so none is left
/// queued with no message to run it: the caller answers 503.
pub async fn enqueue(
    tasks: &dyn TaskStore,
    queue: &dyn crate::queue::Queue,
    task: &TaskRecord,
) -> Result<(), ApiError> {
    tasks.create(task).await?;
    if let Err(err) = queue.publish(&task.task_id).await {
        tracing::error!(%err, task_id = %task.task_id, "the task could not be queued; it is marked failed");
        let message = format!(
            "task {} could not be queued ({err}); it is marked failed, submit it again",
            task.task_id
        );
        if let Err(store_err) = tasks.finish(&task.task_id, 0, &Finished::Failed(message.clone())).await {
            tracing::error!(%store_err, task_id = %task.task_id, "the unqueued task could not be marked failed");
        } else if task.callback_url.is_some() {
            // Finishing owed a callback, but this answer is the client's
            // news: a task it was never told was accepted calls back
            // nothing. Settled under attempt 0, before any was leased.
            let waived = crate::store::CallbackOutcome::Failed(
                "not sent: the task could not be queued, which the submission's 503 said".into(),
            );
            if let Err(store_err) = tasks.settle_callback(&task.task_id, 0, &waived).await {
                tracing::warn!(%store_err, task_id = %task.task_id, "the unqueued task's callback could not be waived");
            }
        }
        return Err(ApiError::unavailable(message, Duration::from_secs(5)));
    }
    Ok(())
}
