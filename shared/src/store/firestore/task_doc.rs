//! A task as Firestore keeps it: the document (`tasks/{task_id}`), how a
//! record becomes one and back, and the changes `store::fan` decides.
//! `result`, `input` and an event's `data` are JSON text, so they come
//! back exactly as given (a Firestore map would not keep its keys' order,
//! and would turn large integers into doubles).

use std::time::SystemTime;

use firestore::FirestoreTimestamp;
use firestore::errors::FirestoreError;
use serde::{Deserialize, Serialize};

use super::{time_of, timestamp};
use crate::store::{CallbackStatus, Children, Finished, TaskKind, TaskRecord, TaskState, TaskStatus};

/// A task, written whole by every change (a `None` field is absent). The
/// fields after `max_steps` have defaults, so tasks stored before claims
/// existed still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TaskDoc {
    /// Absent on tasks stored before owners: those are `anonymous`'s.
    #[serde(default = "anonymous")]
    pub(super) owner: String,
    pub(super) status: String,
    pub(super) task: String,
    pub(super) session_id: String,
    pub(super) max_steps: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) system_instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) callback_url: Option<String>,
    #[serde(default)]
    pub(super) attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) delivery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lease_until: Option<FirestoreTimestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    pub(super) created_at: FirestoreTimestamp,
    pub(super) updated_at: FirestoreTimestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) started_at: Option<FirestoreTimestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) finished_at: Option<FirestoreTimestamp>,
    /// Absent on tasks finished before callback states: they owe nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) callback_status: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) callback_attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) callback_lease_until: Option<FirestoreTimestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) callback_error: Option<String>,
    /// `chat_batch`, or absent: an agent run (every task stored before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<String>,
    /// The model a queued agent run asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) model: Option<String>,
    /// A chat batch's request, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) input: Option<String>,
    /// An agent run that asked not to use the response cache; absent:
    /// it may (every task stored before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) no_cache: bool,
    /// The task a child task is part of (`store::fan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) parent: Option<String>,
    /// A parent's count of its children.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) children_created: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) children_done: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) resumes: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl TaskDoc {
    /// Finished with `outcome` at `now`: no lease any more.
    pub(super) fn finish(&mut self, outcome: &Finished, now: FirestoreTimestamp) {
        let (status, result, error) = outcome.to_stored();
        self.status = status.as_str().to_string();
        self.result = result;
        self.error = error.map(str::to_string);
        self.lease_until = None;
        self.finished_at = Some(now);
        self.updated_at = now;
        // The callback it owes, in the same commit (`store::callback`).
        self.callback_status = self
            .callback_url
            .as_ref()
            .map(|_| CallbackStatus::Pending.as_str().to_string());
        self.callback_attempts = 0;
        self.callback_lease_until = None;
        self.callback_error = None;
    }
}

impl TaskDoc {
    /// Takes what `store::fan` decided for this parent (`task`, its
    /// record after the decision): its input, its children's counts, its
    /// holder and lease; false, and no change, when nothing changed.
    pub(super) fn take_children(&mut self, task: &TaskRecord, now: FirestoreTimestamp) -> Result<bool, FirestoreError> {
        let input = task.input.as_ref().map(|input| input.to_string());
        let lease_until = task.lease_until.map(timestamp).transpose()?;
        let next = (
            input,
            i64::from(task.children.created),
            i64::from(task.children.done),
            i64::from(task.children.resumes),
            task.delivery_id.clone(),
            lease_until,
        );
        let current = (
            self.input.clone(),
            self.children_created,
            self.children_done,
            self.resumes,
            self.delivery_id.clone(),
            self.lease_until,
        );
        if next == current {
            return Ok(false);
        }
        (
            self.input,
            self.children_created,
            self.children_done,
            self.resumes,
            self.delivery_id,
            self.lease_until,
        ) = next;
        self.updated_at = now;
        Ok(true)
    }
}

fn anonymous() -> String {
    crate::auth::Principal::anonymous().as_str().to_string()
}

/// The document of `task` as created at `now`.
pub(super) fn to_doc(task: &TaskRecord, now: FirestoreTimestamp) -> Result<TaskDoc, FirestoreError> {
    let (status, result, error) = task.state.to_stored();
    let mut doc = TaskDoc {
        owner: task.owner.clone(),
        status: status.as_str().to_string(),
        task: task.task.clone(),
        session_id: task.session_id.clone(),
        max_steps: i64::from(task.max_steps),
        system_instruction: task.system_instruction.clone(),
        kind: (task.kind != TaskKind::Agent).then(|| task.kind.as_str().to_string()),
        model: task.model.clone(),
        input: task.input.as_ref().map(|input| input.to_string()),
        no_cache: !task.cache,
        callback_url: task.callback_url.clone(),
        attempts: i64::from(task.attempts),
        delivery_id: task.delivery_id.clone(),
        lease_until: task.lease_until.map(timestamp).transpose()?,
        result,
        error: error.map(str::to_string),
        created_at: now,
        updated_at: now,
        // Set by the store from the status, as the other times.
        started_at: (status != TaskStatus::Queued).then_some(now),
        finished_at: task.state.finished().is_some().then_some(now),
        callback_status: None,
        callback_attempts: 0,
        callback_lease_until: None,
        callback_error: None,
        parent: task.parent.clone(),
        children_created: i64::from(task.children.created),
        children_done: i64::from(task.children.done),
        resumes: i64::from(task.children.resumes),
    };
    doc.set_callback(task.callback.as_ref())?;
    Ok(doc)
}

pub(super) fn to_u32(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

pub(super) fn to_task(task_id: &str, doc: TaskDoc) -> TaskRecord {
    let callback = doc.callback();
    TaskRecord {
        task_id: task_id.to_string(),
        owner: doc.owner,
        state: TaskState::from_stored(&doc.status, doc.result.as_deref(), doc.error),
        kind: TaskKind::parse(doc.kind.as_deref()),
        task: doc.task,
        session_id: doc.session_id,
        max_steps: to_u32(doc.max_steps),
        system_instruction: doc.system_instruction,
        model: doc.model,
        input: doc.input.and_then(|text| serde_json::from_str(&text).ok()),
        cache: !doc.no_cache,
        callback_url: doc.callback_url,
        attempts: to_u32(doc.attempts),
        delivery_id: doc.delivery_id,
        lease_until: doc.lease_until.map(SystemTime::from),
        created_at: time_of(doc.created_at),
        updated_at: time_of(doc.updated_at),
        started_at: doc.started_at.map(time_of),
        finished_at: doc.finished_at.map(time_of),
        callback,
        parent: doc.parent,
        children: Children {
            created: to_u32(doc.children_created),
            done: to_u32(doc.children_done),
            resumes: to_u32(doc.resumes),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document this store never writes (edited by hand) reads through
    /// `TaskState::from_stored`, as the SQLite rows do.
    #[test]
    fn damaged_task_documents_read_as_their_status_says() {
        let at = timestamp(SystemTime::UNIX_EPOCH).expect("a timestamp");
        let doc = |status: &str, result: Option<&str>, error: Option<&str>| TaskDoc {
            owner: anonymous(),
            status: status.to_string(),
            task: "t".to_string(),
            session_id: "s".to_string(),
            max_steps: 5,
            system_instruction: None,
            callback_url: None,
            attempts: 1,
            delivery_id: None,
            lease_until: None,
            result: result.map(str::to_string),
            error: error.map(str::to_string),
            created_at: at,
            updated_at: at,
            started_at: None,
            finished_at: None,
            callback_status: None,
            callback_attempts: 0,
            callback_lease_until: None,
            callback_error: None,
            kind: None,
            model: None,
            input: None,
            no_cache: false,
            parent: None,
            children_created: 0,
            children_done: 0,
            resumes: 0,
        };
        let state = |status, result, error| to_task("t", doc(status, result, error)).state;
        assert_eq!(
            state("completed", Some(r#"{"response":"4"}"#), None),
            TaskState::Finished(Finished::Completed(serde_json::json!({"response": "4"})))
        );
        assert_eq!(
            state("completed", Some("{not json"), None),
            TaskState::Finished(Finished::Completed(serde_json::Value::Null))
        );
        assert_eq!(
            state("failed", Some("{}"), None),
            TaskState::Finished(Finished::Failed(String::new()))
        );
        assert_eq!(state("running", None, Some("stale")), TaskState::Running);
    }
}
