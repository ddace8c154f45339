//! A task as the store keeps it: its status and outcome, its record, its
//! events, and the rules both backends apply inside their atomic step to
//! decide a claim (who runs it, under which lease, until when).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{CallbackState, StoreError, whole_millis};

/// Where an agent task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    /// Cancelled by its owner before it finished (`POST .../cancel`).
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended (completed, failed or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
    }

    /// The status named `s` exactly, as a client gives it in a filter.
    pub fn from_name(s: &str) -> Option<TaskStatus> {
        [
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    pub(crate) fn parse(s: &str) -> TaskStatus {
        match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "completed" => TaskStatus::Completed,
            "cancelled" => TaskStatus::Cancelled,
            _ => TaskStatus::Failed,
        }
    }
}

/// Where a stored task stands, with the outcome of a finished one: a
/// finished task is completed with its result or failed with its error, and
/// nothing else can be said.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    Queued,
    Running,
    /// `completed`, `failed` or `cancelled`.
    Finished(Finished),
}

impl TaskState {
    /// The status the API shows and the stores keep.
    pub fn status(&self) -> TaskStatus {
        match self {
            TaskState::Queued => TaskStatus::Queued,
            TaskState::Running => TaskStatus::Running,
            TaskState::Finished(outcome) => outcome.status(),
        }
    }

    /// The outcome, once `completed`, `failed` or `cancelled`.
    pub fn finished(&self) -> Option<&Finished> {
        match self {
            TaskState::Finished(outcome) => Some(outcome),
            TaskState::Queued | TaskState::Running => None,
        }
    }

    /// The state of a task as a backend stores it: its `status`, its
    /// `result` (JSON text) and its `error`. Both backends read with it.
    ///
    /// The stores write a result only with `completed` and an error only
    /// with `failed` ([`TaskStore::finish`](super::TaskStore::finish), [`Claim::Exhausted`]), so a row
    /// or document that says otherwise was damaged by hand. It never fails
    /// to read: it reads as its status says, and the API shows that status
    /// with no result or error where none could be read, as it always has:
    /// - an unknown status is `failed`;
    /// - `completed` without a result, or with one that is not JSON, is
    ///   completed with the result `null`, which [`crate::task::TaskView`]
    ///   leaves out (so a stored JSON `null` is left out too);
    /// - `failed` without an error is failed with the error `""`, also
    ///   left out;
    /// - a result or an error beside a status that cannot have it is
    ///   dropped (the API used to show it).
    pub(crate) fn from_stored(status: &str, result: Option<&str>, error: Option<String>) -> TaskState {
        match TaskStatus::parse(status) {
            TaskStatus::Queued => TaskState::Queued,
            TaskStatus::Running => TaskState::Running,
            TaskStatus::Completed => TaskState::Finished(Finished::Completed(
                result.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default(),
            )),
            TaskStatus::Failed => TaskState::Finished(Finished::Failed(error.unwrap_or_default())),
            TaskStatus::Cancelled => TaskState::Finished(Finished::Cancelled),
        }
    }

    /// What a backend stores for this state: `status`, `result` (JSON
    /// text) and `error`; [`TaskState::from_stored`] reads them back.
    pub(crate) fn to_stored(&self) -> (TaskStatus, Option<String>, Option<&str>) {
        match self {
            TaskState::Queued | TaskState::Running => (self.status(), None, None),
            TaskState::Finished(outcome) => outcome.to_stored(),
        }
    }
}

/// What a task runs: an agent run (every task stored before kinds were
/// is one), or a chat batch submitted with `"async": true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// `POST /api/v1/agent`: the tool-calling loop on `task`.
    #[default]
    Agent,
    /// `POST /api/v1/chat/batch`: the chat turns of its `input`.
    ChatBatch,
    /// `POST /api/v1/multi-agent`: a planner, executors and a synthesis
    /// on `task`.
    MultiAgent,
    /// `POST /api/v1/research`: the research flow on the topic in `task`.
    Research,
    /// One subtask of a queued multi-agent run, run as a task of its own
    /// (its `parent`) so that another worker can take it.
    Subtask,
    /// One subtopic's researcher of a research, likewise.
    Subtopic,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Agent => "agent",
            TaskKind::ChatBatch => "chat_batch",
            TaskKind::MultiAgent => "multi_agent",
            TaskKind::Research => "research",
            TaskKind::Subtask => "subtask",
            TaskKind::Subtopic => "subtopic",
        }
    }

    /// The kind a backend stored; absent or unknown reads as an agent run,
    /// what every task was before kinds were stored.
    pub(crate) fn parse(s: Option<&str>) -> TaskKind {
        match s {
            Some("chat_batch") => TaskKind::ChatBatch,
            Some("multi_agent") => TaskKind::MultiAgent,
            Some("research") => TaskKind::Research,
            Some("subtask") => TaskKind::Subtask,
            Some("subtopic") => TaskKind::Subtopic,
            _ => TaskKind::Agent,
        }
    }
}

/// A task as stored: what was asked, where it stands, who holds
/// it, and its result (the agent's answer as JSON) or error.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub task_id: String,
    /// The principal that submitted it (`Principal::as_str`): only it may
    /// read the task, and its run uses that principal's session
    /// (`owned`). `anonymous` for a task stored before owners were.
    pub owner: String,
    /// Its status, with the result or error once finished.
    pub state: TaskState,
    /// What it runs: an agent run, or a chat batch.
    pub kind: TaskKind,
    /// An agent run's task; a chat batch's summary (`chat batch of N
    /// requests`).
    pub task: String,
    /// An agent run's session (a chat batch's items name their own: empty).
    pub session_id: String,
    pub max_steps: u32,
    pub system_instruction: Option<String>,
    /// The model an agent run asked for (`fast`, `strong` or an allowed
    /// name), checked when it was submitted; `None`: routed by the rules.
    pub model: Option<String>,
    /// What a chat batch asks: its request (`chat::batch::BatchRequest`)
    /// as JSON. `None` for an agent run.
    pub input: Option<serde_json::Value>,
    /// Whether an agent run's model calls may be answered by the response
    /// cache (`"cache": false` on its request says no). A chat batch's
    /// items say it each in `input`.
    pub cache: bool,
    /// Where the finished task is POSTed (asynchronous tasks only).
    pub callback_url: Option<String>,
    /// Claims so far: 0 while queued and never claimed, 1 for the first run.
    /// It is also the fencing token: only the holder of the latest claim may
    /// renew, release or finish the task.
    pub attempts: u32,
    /// The delivery (Pub/Sub message id, or the local queue's) that holds the
    /// current claim.
    pub delivery_id: Option<String>,
    /// While `running`: the claim is valid until then, and a claim whose
    /// lease has passed may be taken again. `None` for a synchronous run,
    /// which no queue will ever deliver again.
    pub lease_until: Option<SystemTime>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    /// When the first claim started it; `None` while queued.
    pub started_at: Option<String>,
    /// When it reached `completed` or `failed`.
    pub finished_at: Option<String>,
    /// The callback a finished task with a `callback_url` owes (see
    /// `store::callback` and [`crate::callback`]); `None` before it
    /// finished, without a `callback_url`,
    /// and for tasks finished before callback states were kept.
    pub callback: Option<CallbackState>,
    /// The task this one is a part of (a multi-agent run's subtask), which
    /// counts it when it ends (`fan`).
    pub parent: Option<String>,
    /// A parent's count of its children.
    pub children: super::Children,
}

impl TaskRecord {
    /// `queued`, `running`, `completed` or `failed`, as [`TaskRecord::state`] says.
    pub fn status(&self) -> TaskStatus {
        self.state.status()
    }

    /// A task that has not run yet: `queued`, no attempts, no lease, no
    /// outcome; the store sets the timestamps.
    pub fn queued(
        task_id: impl Into<String>,
        owner: impl Into<String>,
        task: impl Into<String>,
        session_id: impl Into<String>,
        max_steps: u32,
    ) -> TaskRecord {
        TaskRecord {
            task_id: task_id.into(),
            owner: owner.into(),
            state: TaskState::Queued,
            kind: TaskKind::Agent,
            task: task.into(),
            session_id: session_id.into(),
            max_steps,
            system_instruction: None,
            model: None,
            input: None,
            cache: true,
            callback_url: None,
            attempts: 0,
            delivery_id: None,
            lease_until: None,
            created_at: String::new(),
            updated_at: String::new(),
            started_at: None,
            finished_at: None,
            callback: None,
            parent: None,
            children: super::Children::default(),
        }
    }
}

/// How a task ended: the two outcomes [`TaskStore::finish`](super::TaskStore::finish) records, so that
/// a result always comes with `completed` and an error with `failed`, and
/// `cancelled`, which only [`TaskStore::cancel`](super::TaskStore::cancel) records.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// `completed`, with its result (the agent's answer as JSON).
    Completed(serde_json::Value),
    /// `failed`, with the error that says why.
    Failed(String),
    /// `cancelled` by its owner: no result, no error.
    Cancelled,
}

impl Finished {
    /// `completed`, `failed` or `cancelled`.
    pub fn status(&self) -> TaskStatus {
        match self {
            Finished::Completed(_) => TaskStatus::Completed,
            Finished::Failed(_) => TaskStatus::Failed,
            Finished::Cancelled => TaskStatus::Cancelled,
        }
    }

    /// The result of a completed task.
    pub fn result(&self) -> Option<&serde_json::Value> {
        match self {
            Finished::Completed(result) => Some(result),
            Finished::Failed(_) | Finished::Cancelled => None,
        }
    }

    /// The error of a failed task.
    pub fn error(&self) -> Option<&str> {
        match self {
            Finished::Completed(_) | Finished::Cancelled => None,
            Finished::Failed(error) => Some(error),
        }
    }

    /// What a backend stores for this outcome: `status`, `result` (JSON
    /// text) and `error`.
    pub(crate) fn to_stored(&self) -> (TaskStatus, Option<String>, Option<&str>) {
        (self.status(), self.result().map(|r| r.to_string()), self.error())
    }
}

/// What [`TaskStore::claim`](super::TaskStore::claim) found, decided in one atomic step.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the task now, as attempt `record.attempts`, until
    /// `record.lease_until`; the record is as stored after the claim.
    Claimed(TaskRecord),
    /// Another claim holds the task and its lease has not passed.
    /// `same_delivery` is true when that claim came from this very delivery:
    /// a queue redelivers a message only after the first delivery failed, so
    /// its holder most likely died and the task is worth retrying later,
    /// once the lease has passed. A synchronous run (`running` with no lease)
    /// is held for good: `same_delivery` false, `lease_until`
    /// [`held_for_good`].
    Held {
        same_delivery: bool,
        lease_until: SystemTime,
    },
    /// Already `completed`, `failed` or `cancelled`: nothing to do.
    Finished(TaskRecord),
    /// The task was runnable but had used `max_attempts` claims: it is now
    /// `failed`, with an error that says so (the record as stored).
    Exhausted(TaskRecord),
    /// There is no such task.
    NotFound,
}

/// One progress event of a task: a step, as the agent completed it.
/// `(attempt, index)` orders the events of a task and identifies each one.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub attempt: u32,
    /// 0-based, in the order of the attempt's steps.
    pub index: u32,
    pub data: serde_json::Value,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// The `lease_until` of [`Claim::Held`] for a task that is `running` with no
/// lease (a synchronous run): the last second of the year 9999, which no
/// lease reaches.
pub fn held_for_good() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)
}

/// What a claim does to a task as stored; both backends decide with it,
/// inside their atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimStep {
    /// Runnable: it becomes `running` under the next attempt.
    Take,
    /// Runnable but out of attempts: it becomes `failed`.
    Exhaust,
    Held {
        same_delivery: bool,
        lease_until: SystemTime,
    },
    Finished,
}

pub(crate) fn claim_step(task: &TaskRecord, delivery_id: &str, max_attempts: u32, now: SystemTime) -> ClaimStep {
    let runnable = match (&task.state, task.lease_until) {
        (TaskState::Finished(_), _) => return ClaimStep::Finished,
        (TaskState::Queued, _) => true,
        (TaskState::Running, None) => false,
        (TaskState::Running, Some(until)) => lease_passed(until, now),
    };
    if !runnable {
        return match task.lease_until {
            Some(until) => ClaimStep::Held {
                same_delivery: task.delivery_id.as_deref() == Some(delivery_id),
                lease_until: until,
            },
            None => ClaimStep::Held {
                same_delivery: false,
                lease_until: held_for_good(),
            },
        };
    }
    // A claim that resumes a parent after its children ended is not an
    // attempt that failed (`fan`).
    if task.attempts.saturating_sub(task.children.resumes) >= max_attempts {
        ClaimStep::Exhaust
    } else {
        ClaimStep::Take
    }
}

/// A lease is valid until `until`, and passed from then on.
pub(crate) fn lease_passed(until: SystemTime, now: SystemTime) -> bool {
    until <= now
}

/// The error of a task that ran out of attempts.
pub(crate) fn exhausted_error(attempts: u32, max_attempts: u32) -> String {
    format!("gave up after {attempts} attempts (at most {max_attempts}): every claim ended without an outcome")
}

/// `now + lease`, to the millisecond (as both backends store it, so that a
/// claimed record is exactly as stored).
pub(crate) fn lease_end(now: SystemTime, lease: Duration) -> Result<SystemTime, StoreError> {
    now.checked_add(lease)
        .map(whole_millis)
        .ok_or_else(|| StoreError::Internal(format!("a lease of {lease:?} ends past any representable time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_task_is_completed_with_a_result_or_failed_with_an_error() {
        let answer = serde_json::json!({"response": "4"});
        let completed = Finished::Completed(answer.clone());
        assert_eq!(
            (completed.status(), completed.result(), completed.error()),
            (TaskStatus::Completed, Some(&answer), None)
        );
        assert_eq!(
            completed.to_stored(),
            (TaskStatus::Completed, Some(answer.to_string()), None)
        );
        let failed = Finished::Failed("no model".to_string());
        assert_eq!(
            (failed.status(), failed.result(), failed.error()),
            (TaskStatus::Failed, None, Some("no model"))
        );
        assert_eq!(failed.to_stored(), (TaskStatus::Failed, None, Some("no model")));
    }

    #[test]
    fn stored_parts_read_as_one_state_and_back() {
        let answer = serde_json::json!({"response": "4", "n": 12345678901234567_u64});
        let states = [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Finished(Finished::Completed(answer.clone())),
            TaskState::Finished(Finished::Failed("no model".to_string())),
            TaskState::Finished(Finished::Cancelled),
        ];
        for state in states {
            let (status, result, error) = state.to_stored();
            let read = TaskState::from_stored(status.as_str(), result.as_deref(), error.map(str::to_string));
            assert_eq!(read, state, "{status:?}");
            assert_eq!(read.status(), status);
        }
        assert_eq!(
            TaskState::from_stored("completed", Some(&answer.to_string()), None).finished(),
            Some(&Finished::Completed(answer))
        );
        assert_eq!(TaskState::Queued.finished(), None);
    }

    /// Rows the stores never write (damaged by hand) read as their status
    /// says, with what the API showed before: no result, no error.
    #[test]
    fn inconsistent_stored_parts_read_as_their_status_says() {
        let completed =
            |result, error: Option<&str>| TaskState::from_stored("completed", result, error.map(str::to_string));
        let no_result = TaskState::Finished(Finished::Completed(serde_json::Value::Null));
        assert_eq!(completed(None, None), no_result, "completed without a result");
        assert_eq!(
            completed(Some("not json"), None),
            no_result,
            "a result that is not JSON"
        );
        assert_eq!(
            completed(None, Some("boom")),
            no_result,
            "an error beside completed is dropped"
        );
        assert_eq!(
            TaskState::from_stored("failed", None, None),
            TaskState::Finished(Finished::Failed(String::new())),
            "failed without an error"
        );
        assert_eq!(
            TaskState::from_stored("failed", Some("{\"response\": \"4\"}"), Some("boom".to_string())),
            TaskState::Finished(Finished::Failed("boom".to_string())),
            "a result beside failed is dropped"
        );
        assert_eq!(
            TaskState::from_stored("paused", None, Some("?".to_string())),
            TaskState::Finished(Finished::Failed("?".to_string())),
            "an unknown status is failed, as before"
        );
        for status in ["queued", "running"] {
            let state = TaskState::from_stored(status, Some("{}"), Some("boom".to_string()));
            assert_eq!((state.status().as_str(), state.finished()), (status, None));
        }
    }
}
