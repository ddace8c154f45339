//! A task as clients see it: its JSON (status, webhooks, the `done` event)
//! and the stream of its progress.
//!
//! Progress is read from the store, not from the memory of the process
//! that runs the task: on Cloud Run the client's `GET .../events` lands on
//! any instance of `agent_function` while the task runs in `agent_worker`.
//!
//! - `submit`: how an asynchronous request becomes a queued task and its
//!   202 answer, the same for every kind of task.
//! - `progress`: the server-sent events of a task's progress, read from
//!   the store.
//! - [`routes`]: the task routes (list, read, follow, cancel), served by
//!   every function that submits tasks.
//! - `tally`: what a run spends, counted by model as its model answers.
//! - `tree`: a fanned-out run's children, shown and cancelled with it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{self, Checkpoint, Outcome, RunError, Step};
use crate::http::ApiError;
use crate::llm::{Model, ModelError};
use crate::store::{CallbackState, CallbackStatus, Finished, TaskKind, TaskRecord, TaskState, TaskStatus};
use crate::tools::Registry;

mod progress;
pub mod routes;
mod submit;
mod tally;
mod tree;

use crate::{owned, session};
pub use progress::{
    Cursor, ItemEvent, POLL_EVERY, PROGRESS_EVENTS, StageEvent, StatusEvent, StepEvent, SubtopicStartedEvent,
    SubtopicsEvent, SynthesisEvent, parse_event_id, progress,
};
pub use submit::{Accepted, accepted_response, check_callback, enqueue, submit};
pub use tally::{Spent, Tally};
pub(crate) use tree::planned;
pub use tree::{ChildView, cancel_children, children};

/// A finished run: the answer of a synchronous `POST /api/v1/agent`, and
/// the `result` of its task (synchronous or not).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct AgentResponse {
    pub task_id: String,
    pub session_id: String,
    /// `response`, `steps`, `total_steps`, `tokens_used`, `usage` (tokens,
    /// model calls, `cost_usd`), `model` and `finish_reason` (`answered`,
    /// or `max_steps` when the limit ended it).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What the request asked that was adjusted (a `max_steps` over the cap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Checks a task id a client sent back, naming the field in the message.
/// Task ids are ours (a UUID from `POST /api/v1/agent`), so the hint says
/// where to find one; the characters allowed are the store's, as for
/// session ids (`session::is_safe_id`).
pub fn validate_id(field: &str, id: &str) -> Result<(), ApiError> {
    if session::is_safe_id(id) {
        return Ok(());
    }
    Err(ApiError::invalid_argument(format!(
        "{field} is not valid: task ids are UUIDs such as 0b7c6f1e-3f1a-4c2e-9d7a-5e2f8a1b4c3d, \
         made by POST /api/v1/agent (or POST /api/v1/chat/batch with async); use the task_id from its \
         202 answer (or the end of its status_url)"
    )))
}

/// Runs a task through the agent loop and assembles its answer: the one
/// way a task record becomes a run, whether it runs in the request
/// (`agent_function`) or from the queue ([`crate::worker`]). `on_step` sees
/// each step as it completes; `warnings` go into the answer as they are.
pub async fn run(
    model: &dyn Model,
    tools: &Registry,
    task: &TaskRecord,
    warnings: Vec<String>,
    on_step: &(dyn Fn(&Step) + Send + Sync),
) -> Result<AgentResponse, ModelError> {
    let run = agent_run(task);
    let outcome = agent::run(model, tools, &run, on_step).await?;
    Ok(response(task, outcome, warnings))
}

/// [`run`], stopped by `checkpoint` before a model or tool call when the
/// task is no longer this run's to run (see [`agent::run_checked`]).
pub async fn run_checked(
    model: &dyn Model,
    tools: &Registry,
    task: &TaskRecord,
    on_step: &(dyn Fn(&Step) + Send + Sync),
    checkpoint: &dyn Checkpoint,
) -> Result<AgentResponse, RunError> {
    let run = agent_run(task);
    let outcome = agent::run_checked(model, tools, &run, on_step, Some(checkpoint)).await?;
    Ok(response(task, outcome, Vec::new()))
}

fn agent_run(task: &TaskRecord) -> agent::Run {
    agent::Run {
        task: task.task.clone(),
        // The owner's session: the agent's memory is kept under it.
        session_key: owned::session_key(&task.owner, &task.session_id),
        max_steps: task.max_steps,
        system_instruction: task.system_instruction.clone(),
    }
}

fn response(task: &TaskRecord, outcome: Outcome, warnings: Vec<String>) -> AgentResponse {
    AgentResponse {
        task_id: task.task_id.clone(),
        session_id: task.session_id.clone(),
        outcome,
        warnings,
    }
}

/// A task's `result`, for the document: an agent run's answer, a chat
/// batch's (the answer a synchronous batch gives), a multi-agent run's or
/// a research's, or a child's part of one.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TaskResult {
    Agent(AgentResponse),
    ChatBatch(crate::chat::batch::BatchResponse),
    MultiAgent(crate::multi::MultiAgentResponse),
    Research(crate::research::ResearchResult),
    /// A multi-agent run's child: its subtask's result.
    Subtask(crate::multi::SubtaskResult),
    /// A research's child: its subtopic's result.
    Subtopic(crate::research::SubtopicResult),
}

/// `GET /api/v1/tasks/{id}`, the body of a webhook, and the `done` event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct TaskView {
    pub task_id: String,
    /// `agent` (`POST /api/v1/agent`), `chat_batch`
    /// (`POST /api/v1/chat/batch` with `"async": true`), `multi_agent`
    /// (`POST /api/v1/multi-agent`), `research` (`POST /api/v1/research`),
    /// or `subtask` (one subtask of a queued multi-agent run).
    #[serde(default)]
    pub kind: TaskKind,
    pub status: TaskStatus,
    /// An agent run's task; a chat batch's summary.
    pub task: String,
    /// An agent run's session (absent for a chat batch, whose items name
    /// their own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    /// The model a queued agent run asked for (`fast`, `strong` or an
    /// allowed name); absent when routed by the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How many times a worker has started it (more than 1 after a worker
    /// died or a transient failure).
    pub attempts: u32,
    /// When completed: the answer a synchronous run (or batch) gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TaskResult>")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Once finished, where its callback stands, when it has a
    /// `callback_url` (absent in the callback's own body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView>,
    /// A subtask's run (`kind: subtask`): the multi-agent run it is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// A queued multi-agent run's subtasks, each run as a task of its own
    /// (in `GET /api/v1/tasks/{id}`; absent elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildView>,
}

/// A finished task's callback: `pending` until it is `delivered` or
/// `failed` (refused for good, or `WEBHOOK_ATTEMPTS` attempts spent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct CallbackView {
    pub status: CallbackStatus,
    /// POSTs attempted so far.
    pub attempts: u32,
    /// Why the last failed attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<CallbackState> for CallbackView {
    fn from(c: CallbackState) -> CallbackView {
        CallbackView {
            status: c.status,
            attempts: c.attempts,
            last_error: c.last_error,
        }
    }
}

impl From<TaskRecord> for TaskView {
    /// A `null` result and an empty error are what a damaged stored task
    /// reads as when it has none ([`TaskState`]'s `from_stored`); they are
    /// left out, as a missing one always was.
    fn from(t: TaskRecord) -> TaskView {
        let status = t.status();
        let (result, error) = match t.state {
            TaskState::Queued | TaskState::Running | TaskState::Finished(Finished::Cancelled) => (None, None),
            TaskState::Finished(Finished::Completed(result)) => (Some(result).filter(|r| !r.is_null()), None),
            TaskState::Finished(Finished::Failed(error)) => (None, Some(error).filter(|e| !e.is_empty())),
        };
        TaskView {
            task_id: t.task_id,
            kind: t.kind,
            status,
            task: t.task,
            session_id: t.session_id,
            model: t.model,
            attempts: t.attempts,
            result,
            error,
            created_at: t.created_at,
            updated_at: t.updated_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            callback: t.callback.map(CallbackView::from),
            parent_id: t.parent,
            children: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ModelRequest, ModelResponse, ModelStream};

    /// A task id is ours to make: a bad one gets its own hint (where task
    /// ids come from), not the session id's "omit it to start a new session".
    #[test]
    fn a_bad_task_id_says_what_a_task_id_is_and_where_it_comes_from() {
        for ok in ["0b7c6f1e-3f1a-4c2e-9d7a-5e2f8a1b4c3d", "task-1"] {
            assert!(validate_id("the task id", ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "__x__", "a/b", "a b", &"x".repeat(129)] {
            let err = validate_id("the task id", bad).expect_err(bad);
            assert_eq!(err.code, "invalid_argument");
            assert!(
                err.message.starts_with("the task id is not valid: task ids are UUIDs"),
                "{}",
                err.message
            );
            assert!(err.message.contains("task_id from its 202 answer"), "{}", err.message);
            assert!(!err.message.contains("session"), "{}", err.message);
        }
    }

    /// The JSON of a task says its status, with the result of a completed
    /// one or the error of a failed one; a null result or an empty error
    /// (what a damaged stored task reads as) is left out, as a missing one was.
    #[test]
    fn a_task_view_shows_the_outcome_its_state_holds() {
        let view = |state| {
            let view = serde_json::to_value(TaskView::from(TaskRecord {
                state,
                ..TaskRecord::queued("t", "anonymous", "2+2", "s", 5)
            }))
            .expect("json");
            (
                view["status"].clone(),
                view.get("result").cloned(),
                view.get("error").cloned(),
            )
        };
        let answer = serde_json::json!({"response": "4"});
        let json = |v: &str| Value::String(v.to_string());
        assert_eq!(view(TaskState::Queued), (json("queued"), None, None));
        assert_eq!(view(TaskState::Running), (json("running"), None, None));
        assert_eq!(
            view(TaskState::Finished(Finished::Completed(answer.clone()))),
            (json("completed"), Some(answer), None)
        );
        assert_eq!(
            view(TaskState::Finished(Finished::Failed("no model".to_string()))),
            (json("failed"), None, Some(json("no model")))
        );
        assert_eq!(
            view(TaskState::Finished(Finished::Cancelled)),
            (json("cancelled"), None, None)
        );
        assert_eq!(
            view(TaskState::Finished(Finished::Completed(Value::Null))),
            (json("completed"), None, None)
        );
        assert_eq!(
            view(TaskState::Finished(Finished::Failed(String::new()))),
            (json("failed"), None, None)
        );
    }

    /// The task JSON shows a finished task's callback, and the OpenAPI
    /// document (generated from this type) lists it with its states.
    #[test]
    fn a_task_view_shows_its_callback_and_its_schema_lists_it() {
        let task = TaskRecord {
            state: TaskState::Finished(Finished::Cancelled),
            callback: Some(CallbackState {
                attempts: 2,
                last_error: Some("the receiver answered 503".into()),
                ..CallbackState::pending()
            }),
            ..TaskRecord::queued("t", "anonymous", "2+2", "s", 5)
        };
        let view = serde_json::to_value(TaskView::from(task)).expect("json");
        assert_eq!(
            view["callback"],
            serde_json::json!({"status": "pending", "attempts": 2, "last_error": "the receiver answered 503"})
        );
        let schema = serde_json::to_string(&schemars::schema_for!(TaskView)).expect("schema");
        for word in [
            "\"callback\"",
            "\"pending\"",
            "\"delivered\"",
            "\"failed\"",
            "\"last_error\"",
        ] {
            assert!(schema.contains(word), "{word} in {schema}");
        }
    }

    /// A model that calls a tool on its first answer and is unavailable
    /// after: a run that fails having paid for one call.
    struct PaidThenDown(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl Model for PaidThenDown {
        fn name(&self) -> &str {
            "paid"
        }

        fn provider(&self) -> &'static str {
            "test"
        }

        async fn generate(&self, _request: &ModelRequest) -> Result<ModelResponse, ModelError> {
            if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                return Err(ModelError::Blocked("down".into()));
            }
            let call = crate::llm::FunctionCall {
                id: None,
                name: "calculate".into(),
                args: serde_json::json!({"expression": "2 + 2"}),
            };
            Ok(ModelResponse {
                content: crate::llm::Content {
                    role: Some(crate::llm::Role::Model),
                    parts: vec![crate::llm::Part::FunctionCall(call)],
                    raw: None,
                },
                usage: crate::llm::Usage {
                    input_tokens: 30,
                    output_tokens: 7,
                    ..Default::default()
                },
                model: "paid-001".into(),
                cost: Some(crate::llm::prices::Usd::from_pico(1234)),
                cache_hit: None,
            })
        }

        async fn stream(&self, _request: ModelRequest) -> Result<ModelStream, ModelError> {
            Err(ModelError::Blocked("no stream".into()))
        }
    }

    #[tokio::test]
    async fn a_failed_run_still_knows_what_its_paid_calls_spent() {
        let model = PaidThenDown(std::sync::atomic::AtomicUsize::new(0));
        let spent = Spent::default();
        let tally = Tally::new(&model, &spent);
        assert_eq!(spent.charge(), None, "nothing spent yet");
        let task = TaskRecord::queued("t", "key:a", "Calcula 2 + 2", "s", 5);
        let tools = crate::tools::Registry::default();
        let err = run(&tally, &tools, &task, Vec::new(), &|_| {}).await.expect_err("down");
        assert!(matches!(err, ModelError::Blocked(_)), "{err:?}");
        let charge = spent.charge().expect("one call answered");
        assert_eq!(charge.model, "paid-001");
        assert_eq!(
            (
                charge.spend.model_calls,
                charge.spend.input_tokens,
                charge.spend.output_tokens,
                charge.spend.cost_usd
            ),
            (1, 30, 7, Some(crate::llm::prices::Usd::from_pico(1234)))
        );
    }
}
