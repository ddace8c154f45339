//! The methods: each revision's name for it, its params read, the stored
//! task it touches, the answer in the revision it was asked in.

use agent_core::a2a::rpc::{self, Fault, Request};
use agent_core::a2a::{Version, wire};
use agent_core::auth::Principal;
use agent_core::http::ApiError;
use agent_core::http::paging::{self, PageQuery};
use agent_core::store::{TaskRecord, TaskStatus};
use agent_core::task::{self, TaskView};
use agent_core::{agent, session};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{A2a, answer, follow};

/// What a method is, whichever revision named it.
enum Method {
    Send,
    Stream,
    Get,
    List,
    Cancel,
    Subscribe,
    PushConfig,
    ExtendedCard,
}

fn method(version: Version, name: &str) -> Option<Method> {
    Some(match (version, name) {
        (Version::V1, "SendMessage") | (Version::V03, "message/send") => Method::Send,
        (Version::V1, "SendStreamingMessage") | (Version::V03, "message/stream") => Method::Stream,
        (Version::V1, "GetTask") | (Version::V03, "tasks/get") => Method::Get,
        (Version::V1, "ListTasks") | (Version::V03, "tasks/list") => Method::List,
        (Version::V1, "CancelTask") | (Version::V03, "tasks/cancel") => Method::Cancel,
        (Version::V1, "SubscribeToTask") | (Version::V03, "tasks/resubscribe") => Method::Subscribe,
        (
            Version::V1,
            "CreateTaskPushNotificationConfig"
            | "GetTaskPushNotificationConfig"
            | "ListTaskPushNotificationConfigs"
            | "DeleteTaskPushNotificationConfig",
        ) => Method::PushConfig,
        (
            Version::V03,
            "tasks/pushNotificationConfig/set"
            | "tasks/pushNotificationConfig/get"
            | "tasks/pushNotificationConfig/list"
            | "tasks/pushNotificationConfig/delete",
        ) => Method::PushConfig,
        (Version::V1, "GetExtendedAgentCard") | (Version::V03, "agent/getAuthenticatedExtendedCard") => {
            Method::ExtendedCard
        }
        _ => return None,
    })
}

pub(super) async fn dispatch(a2a: &A2a, principal: &Principal, version: Version, request: Request) -> Response {
    let Request {
        id,
        method: name,
        params,
    } = request;
    let Some(method) = method(version, &name) else {
        let other = match version {
            Version::V1 => Version::V03,
            Version::V03 => Version::V1,
        };
        if self::method(other, &name).is_some() {
            let fault = Fault::new(
                rpc::VERSION_NOT_SUPPORTED,
                format!(
                    "{name:?} is a method of A2A {}, and this request speaks {}: send the header A2A-Version: {}",
                    other.as_str(),
                    version.as_str(),
                    other.as_str()
                ),
            );
            return answer(rpc::error(&id, &fault));
        }
        let known = match version {
            Version::V1 => "SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask, SubscribeToTask",
            Version::V03 => "message/send, message/stream, tasks/get, tasks/cancel, tasks/resubscribe",
        };
        let fault = Fault::new(
            rpc::METHOD_NOT_FOUND,
            format!(
                "there is no method {name:?} in A2A {} (A2A-Version); the methods are {known}",
                version.as_str()
            ),
        );
        return answer(rpc::error(&id, &fault));
    };
    let outcome = match method {
        Method::Send => match wire::send(version, &params) {
            Ok(send) => created(a2a, principal, &send, true)
                .await
                .map(|task| wire::send_result(version, wire::task(version, &task, send.history_length))),
            Err(fault) => Err(fault),
        },
        Method::Stream => {
            let created = match wire::send(version, &params) {
                Ok(send) => created(a2a, principal, &send, false).await,
                Err(fault) => Err(fault),
            };
            return match created {
                Ok(task) => follow::stream(a2a, version, id, task),
                Err(fault) => answer(rpc::error(&id, &fault)),
            };
        }
        Method::Subscribe => {
            return match wire::task_ref(&params) {
                Ok((task_id, _)) => match find(a2a, principal, &task_id).await {
                    Ok(task) if task.status.is_finished() => {
                        let fault = Fault::new(
                            rpc::UNSUPPORTED_OPERATION,
                            format!(
                                "task {task_id:?} has ended ({}): there is nothing to follow; get it instead",
                                wire::state(version, task.status)
                            ),
                        );
                        answer(rpc::error(&id, &fault))
                    }
                    Ok(task) => follow::stream(a2a, version, id, task),
                    Err(fault) => answer(rpc::error(&id, &fault)),
                },
                Err(fault) => answer(rpc::error(&id, &fault)),
            };
        }
        Method::Get => get(a2a, principal, version, &params).await,
        Method::List => list(a2a, principal, version, &params).await,
        Method::Cancel => cancel(a2a, principal, version, &params).await,
        Method::PushConfig => Err(Fault::new(
            rpc::PUSH_NOTIFICATION_NOT_SUPPORTED,
            "push notification configs are not kept here; give configuration.pushNotificationConfig.url with the \
             message to have the finished task sent there, signed (X-Signature-256, WEBHOOK_SECRET)",
        )),
        Method::ExtendedCard => Err(Fault::new(
            rpc::UNSUPPORTED_OPERATION,
            "there is no extended card: GET /.well-known/agent-card.json is the whole card",
        )),
    };
    match outcome {
        Ok(result) => answer(rpc::result(&id, result)),
        Err(fault) => answer(rpc::error(&id, &fault)),
    }
}

/// An API error as the protocol's: a client's mistake is invalid params, a
/// missing task `TaskNotFound`, a store or model that is down an internal
/// error that says to retry.
fn fault(error: ApiError) -> Fault {
    let code = match error.status {
        StatusCode::NOT_FOUND => rpc::TASK_NOT_FOUND,
        StatusCode::CONFLICT => rpc::TASK_NOT_CANCELABLE,
        status if status.is_client_error() => rpc::INVALID_PARAMS,
        _ => rpc::INTERNAL_ERROR,
    };
    Fault::new(code, error.message)
}

/// The caller's task `id`; another's does not exist.
async fn find(a2a: &A2a, principal: &Principal, id: &str) -> Result<TaskView, Fault> {
    match task::routes::find(a2a.agent.tasks.as_ref(), principal, id).await {
        Ok(task) => Ok(task.into()),
        Err(error) if error.status == StatusCode::NOT_FOUND || error.status == StatusCode::BAD_REQUEST => {
            Err(Fault::task_not_found(id))
        }
        Err(error) => Err(fault(error)),
    }
}

/// The task a send (`SendMessage`, `message/send`, or their streaming
/// twins) makes, or the one the same message made before. With `may_wait`
/// and a client that waits (and no push URL), the task runs in the
/// request, as `POST /api/v1/agent` runs one; otherwise it is queued, and
/// a stream follows it.
async fn created(a2a: &A2a, principal: &Principal, send: &wire::Send, may_wait: bool) -> Result<TaskView, Fault> {
    let task_id = wire::task_id_for(principal.as_str(), &send.message_id);
    if let Some(given) = &send.task_id
        && *given != task_id
    {
        return Err(Fault::invalid_params(
            "a task here takes one message: to go on, send a new message (a new messageId) with the task's contextId",
        ));
    }
    if let Ok(existing) = find(a2a, principal, &task_id).await {
        return Ok(existing);
    }
    let state = &a2a.agent;
    agent_core::http::json::require_text("the message's text", &send.text, state.max_task_chars).map_err(fault)?;
    let session_id = session::given_or_new(send.context_id.as_deref()).map_err(|e| {
        Fault::invalid_params(format!(
            "message.contextId is not usable as a session id: {}",
            e.message
        ))
    })?;
    let route = state
        .models
        .route(&send.text, state.tools.names().len(), None)
        .map_err(|refused| Fault::invalid_params(refused.to_string()))?;
    let (max_steps, _) = agent::effective_max_steps(None);
    let mut record = TaskRecord::queued(
        task_id.clone(),
        principal.as_str(),
        send.text.clone(),
        session_id,
        max_steps,
    );
    if let Some(url) = &send.push_url {
        record.callback_url = Some(crate::check_callback(state, url).map_err(fault)?);
    }
    let outcome = if may_wait && send.wait && record.callback_url.is_none() {
        let cache = state.cache.as_ref().filter(|_| record.cache);
        let model = state.models.routed(&route).with_cache(cache, principal.as_str());
        // A failed run is a failed task, which the answer shows.
        match crate::run_now(state, record, Vec::new(), model).await {
            Ok(_) => Ok(()),
            Err(error) if error.status.is_server_error() => Ok(()),
            Err(error) => Err(error),
        }
    } else {
        task::enqueue(state.tasks.as_ref(), state.queue.as_ref(), &record)
            .await
            .map(|_| ())
    };
    match (outcome, find(a2a, principal, &task_id).await) {
        (_, Ok(task)) => Ok(task),
        // Not stored: the same message sent at once twice lost the race
        // to store it, or the store refused.
        (Err(error), Err(_)) => Err(fault(error)),
        (Ok(()), Err(missing)) => Err(missing),
    }
}

async fn get(a2a: &A2a, principal: &Principal, version: Version, params: &Value) -> Result<Value, Fault> {
    let (id, history) = wire::task_ref(params)?;
    let task = find(a2a, principal, &id).await?;
    Ok(wire::task(version, &task, history))
}

/// `ListTasks`: the caller's tasks, newest first, a page at a time; only
/// those of `contextId` and in `status` when given.
async fn list(a2a: &A2a, principal: &Principal, version: Version, params: &Value) -> Result<Value, Fault> {
    let size = match params.get("pageSize").filter(|v| !v.is_null()) {
        None => 50,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| Fault::invalid_params("pageSize must be a whole number from 1 to 100"))?
            as usize,
    };
    let token = params
        .get("pageToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let status = match params.get("status").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        None | Some("TASK_STATE_UNSPECIFIED") => None,
        Some(state) => Some(status_of(state).ok_or_else(|| {
            Fault::invalid_params(format!(
                "status {state:?} is not a task state (TASK_STATE_COMPLETED, ...)"
            ))
        })?),
    };
    let context = params
        .get("contextId")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    let page = PageQuery::new(size, token);
    let after = page
        .after_task()
        .map_err(|e| Fault::invalid_params(format!("pageToken: {}", e.message)))?;
    let found = a2a
        .agent
        .tasks
        .list_tasks(principal.as_str(), status, after.as_ref(), page.limit)
        .await
        .map_err(|e| fault(e.into()))?;
    let history = params.get("historyLength").and_then(Value::as_u64).map(|n| n as usize);
    let tasks: Vec<Value> = found
        .items
        .into_iter()
        .map(TaskView::from)
        .filter(|task| context.is_none_or(|c| task.session_id == c))
        .map(|task| wire::task(version, &task, history))
        .collect();
    Ok(json!({
        "tasks": tasks,
        "nextPageToken": found.next.as_ref().map(paging::task_cursor).unwrap_or_default(),
        "pageSize": size,
    }))
}

fn status_of(state: &str) -> Option<TaskStatus> {
    Some(match state {
        "TASK_STATE_SUBMITTED" | "submitted" => TaskStatus::Queued,
        "TASK_STATE_WORKING" | "working" => TaskStatus::Running,
        "TASK_STATE_COMPLETED" | "completed" => TaskStatus::Completed,
        "TASK_STATE_FAILED" | "failed" => TaskStatus::Failed,
        "TASK_STATE_CANCELED" | "canceled" => TaskStatus::Cancelled,
        _ => return None,
    })
}

/// `CancelTask`: as `POST /api/v1/tasks/{id}/cancel`; a finished task is
/// not cancelable.
async fn cancel(a2a: &A2a, principal: &Principal, version: Version, params: &Value) -> Result<Value, Fault> {
    let (id, history) = wire::task_ref(params)?;
    let found = find(a2a, principal, &id).await?;
    if found.parent_id.is_some() {
        return Err(Fault::new(
            rpc::TASK_NOT_CANCELABLE,
            "a subtask ends with its run: cancel the run",
        ));
    }
    let cancelled = task::routes::cancel(&a2a.tasks, &id).await.map_err(fault)?;
    Ok(wire::task(version, &cancelled, history))
}
