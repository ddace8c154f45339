//! What travels: a stored task as each revision shows it, and what a
//! client's `SendMessage` (`message/send`) carries, read alike from either.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Version;
use super::rpc::Fault;
use crate::store::TaskStatus;
use crate::task::TaskView;

/// A task's state in `version`'s spelling.
pub fn state(version: Version, status: TaskStatus) -> &'static str {
    match (version, status) {
        (Version::V1, TaskStatus::Queued) => "TASK_STATE_SUBMITTED",
        (Version::V1, TaskStatus::Running) => "TASK_STATE_WORKING",
        (Version::V1, TaskStatus::Completed) => "TASK_STATE_COMPLETED",
        (Version::V1, TaskStatus::Failed) => "TASK_STATE_FAILED",
        (Version::V1, TaskStatus::Cancelled) => "TASK_STATE_CANCELED",
        (Version::V03, TaskStatus::Queued) => "submitted",
        (Version::V03, TaskStatus::Running) => "working",
        (Version::V03, TaskStatus::Completed) => "completed",
        (Version::V03, TaskStatus::Failed) => "failed",
        (Version::V03, TaskStatus::Cancelled) => "canceled",
    }
}

/// Whether a state (in either spelling) ends a task.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_REJECTED"
            | "completed"
            | "failed"
            | "canceled"
            | "rejected"
    )
}

/// A text part.
pub fn text_part(version: Version, text: &str) -> Value {
    match version {
        Version::V1 => json!({"text": text}),
        Version::V03 => json!({"kind": "text", "text": text}),
    }
}

/// A message with one text part, from the user or the agent.
pub fn message(version: Version, id: &str, from_user: bool, text: &str, task: &TaskView) -> Value {
    let role = match (version, from_user) {
        (Version::V1, true) => "ROLE_USER",
        (Version::V1, false) => "ROLE_AGENT",
        (Version::V03, true) => "user",
        (Version::V03, false) => "agent",
    };
    let mut message = json!({
        "messageId": id,
        "role": role,
        "parts": [text_part(version, text)],
        "taskId": task.task_id,
        "contextId": task.session_id,
    });
    if version == Version::V03 {
        message["kind"] = json!("message");
    }
    message
}

/// The answer a finished task holds, as text: an agent run's or a
/// multi-agent run's `response`, a research's `report`, else its JSON.
pub fn answer_text(task: &TaskView) -> Option<String> {
    let result = task.result.as_ref()?;
    for field in ["response", "report"] {
        if let Some(text) = result[field].as_str() {
            return Some(text.to_string());
        }
        if let Some(text) = result["result"][field].as_str() {
            return Some(text.to_string());
        }
    }
    Some(result.to_string())
}

/// The task's status: its state, when it last changed, and for a failed
/// task the reason as the agent's message.
pub fn status(version: Version, task: &TaskView) -> Value {
    let mut status = json!({
        "state": state(version, task.status),
        "timestamp": task.updated_at,
    });
    if let Some(error) = &task.error {
        status["message"] = message(version, &format!("{}-status", task.task_id), false, error, task);
    }
    status
}

/// The answer as the task's one artifact, `answer`.
pub fn artifact(version: Version, task: &TaskView) -> Option<Value> {
    if task.status != TaskStatus::Completed {
        return None;
    }
    let text = answer_text(task)?;
    Some(json!({
        "artifactId": format!("{}-answer", task.task_id),
        "name": "answer",
        "parts": [text_part(version, &text)],
    }))
}

/// A stored task as `version` shows it: the user's message as its history
/// (cut to `history_length` when given), the answer as its artifact.
pub fn task(version: Version, view: &TaskView, history_length: Option<usize>) -> Value {
    let mut task = json!({
        "id": view.task_id,
        "contextId": view.session_id,
        "status": status(version, view),
        "metadata": {"kind": view.kind, "created_at": view.created_at},
    });
    if version == Version::V03 {
        task["kind"] = json!("task");
    }
    if let Some(artifact) = artifact(version, view) {
        task["artifacts"] = json!([artifact]);
    }
    if history_length != Some(0) {
        let user = message(version, &format!("{}-message", view.task_id), true, &view.task, view);
        task["history"] = json!([user]);
    }
    task
}

/// The answer to a send, and a stream's first event: 1.0 wraps the task,
/// 0.3 gives it as it is.
pub fn send_result(version: Version, task: Value) -> Value {
    match version {
        Version::V1 => json!({"task": task}),
        Version::V03 => task,
    }
}

/// A stream's status event for `view`; `last` ends the stream.
pub fn status_update(version: Version, view: &TaskView, last: bool) -> Value {
    match version {
        Version::V1 => json!({"statusUpdate": {
            "taskId": view.task_id,
            "contextId": view.session_id,
            "status": status(version, view),
        }}),
        Version::V03 => json!({
            "kind": "status-update",
            "taskId": view.task_id,
            "contextId": view.session_id,
            "status": status(version, view),
            "final": last,
        }),
    }
}

/// A stream's artifact event: the answer, whole.
pub fn artifact_update(version: Version, view: &TaskView, artifact: Value) -> Value {
    match version {
        Version::V1 => json!({"artifactUpdate": {
            "taskId": view.task_id,
            "contextId": view.session_id,
            "artifact": artifact,
            "lastChunk": true,
        }}),
        Version::V03 => json!({
            "kind": "artifact-update",
            "taskId": view.task_id,
            "contextId": view.session_id,
            "artifact": artifact,
            "lastChunk": true,
        }),
    }
}

/// What a send carries, read from either revision's params.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub message_id: String,
    /// The text of its parts, one after another (a data part as its JSON).
    pub text: String,
    /// The conversation it continues: the task's session.
    pub context_id: Option<String>,
    /// A task it answers; tasks here take one message, so only allowed to
    /// name the task this very message created (a repeated send).
    pub task_id: Option<String>,
    /// Wait for the task's end before answering (1.0: not
    /// `returnImmediately`; 0.3: `blocking`).
    pub wait: bool,
    pub history_length: Option<usize>,
    /// `configuration.pushNotificationConfig.url`: where to send the task
    /// when it ends, signed (`callback_url`).
    pub push_url: Option<String>,
}

fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn string(object: &Value, name: &str, what: &str) -> Result<Option<String>, Fault> {
    match field(object, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Fault::invalid_params(format!("{what}.{name} must be a string"))),
    }
}

/// Reads a send's params. `version` sets the default of `wait`: 1.0 waits
/// unless told to return at once, 0.3 waits only when `blocking`.
pub fn send(version: Version, params: &Value) -> Result<Send, Fault> {
    let Some(message) = field(params, "message").filter(|m| m.is_object()) else {
        return Err(Fault::invalid_params("params.message must be a message object"));
    };
    let message_id = string(message, "messageId", "message")?
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| Fault::invalid_params("message.messageId is required"))?;
    if message_id.chars().count() > 256 {
        return Err(Fault::invalid_params("message.messageId is longer than 256 characters"));
    }
    let role = string(message, "role", "message")?.unwrap_or_default();
    if !matches!(role.as_str(), "ROLE_USER" | "user") {
        return Err(Fault::invalid_params(format!(
            "message.role must be the user's ({}), not {role:?}",
            if version == Version::V1 { "ROLE_USER" } else { "user" }
        )));
    }
    let Some(Value::Array(parts)) = field(message, "parts") else {
        return Err(Fault::invalid_params("message.parts must be a list of parts"));
    };
    let mut texts = Vec::new();
    for part in parts {
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            texts.push(text.to_string());
        } else if let Some(data) = field(part, "data") {
            // 1.0 puts the value in `data`; 0.3 in `data` beside `kind: data`.
            texts.push(data.to_string());
        } else {
            return Err(Fault::new(
                super::rpc::INVALID_PARAMS,
                "only text and data parts are taken here (no files); send the content as text",
            ));
        }
    }
    let text = texts.join("\n");
    if text.trim().is_empty() {
        return Err(Fault::invalid_params("the message has no text"));
    }
    let configuration = field(params, "configuration")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let flag = |name: &str| configuration.get(name).and_then(Value::as_bool);
    let wait = match version {
        Version::V1 => flag("blocking").unwrap_or(!flag("returnImmediately").unwrap_or(false)),
        Version::V03 => flag("blocking").unwrap_or(false),
    };
    let history_length = match field(&configuration, "historyLength") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Fault::invalid_params("configuration.historyLength must be a whole number"))?,
        ),
    };
    let push =
        field(&configuration, "pushNotificationConfig").or_else(|| field(&configuration, "taskPushNotificationConfig"));
    let push_url = match push {
        None => None,
        Some(config) => Some(
            string(config, "url", "configuration.pushNotificationConfig")?
                .ok_or_else(|| Fault::invalid_params("configuration.pushNotificationConfig.url is required"))?,
        ),
    };
    Ok(Send {
        message_id,
        text,
        context_id: string(message, "contextId", "message")?,
        task_id: string(message, "taskId", "message")?,
        wait,
        history_length,
        push_url,
    })
}

/// The id of the task a message creates: the same for the same sender and
/// message id, so a message sent twice (a retry) makes one task.
pub fn task_id_for(owner: &str, message_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(owner.as_bytes())
        .chain_update([0u8])
        .chain_update(message_id.as_bytes())
        .finalize();
    format!("a2a-{}", hex::encode(&digest[..16]))
}

/// The `id` (and `historyLength`) of a get, cancel or subscribe.
pub fn task_ref(params: &Value) -> Result<(String, Option<usize>), Fault> {
    let id = string(params, "id", "params")?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Fault::invalid_params("params.id (the task's id) is required"))?;
    let history_length = field(params, "historyLength")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    Ok((id, history_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_reads_alike_in_both_revisions() {
        let v1 = json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "Calcula 15 * 23"}],
            "contextId": "c1"}});
        let v03 = json!({"message": {"kind": "message", "messageId": "m1", "role": "user",
            "parts": [{"kind": "text", "text": "Calcula 15 * 23"}], "contextId": "c1"}});
        let one = send(Version::V1, &v1).expect("1.0");
        let other = send(Version::V03, &v03).expect("0.3");
        assert_eq!(
            (one.text.as_str(), one.context_id.as_deref()),
            ("Calcula 15 * 23", Some("c1"))
        );
        assert_eq!(one.text, other.text);
        assert!(one.wait, "1.0 waits unless told to return at once");
        assert!(!other.wait, "0.3 waits only when blocking");
    }

    #[test]
    fn bad_sends_are_invalid_params() {
        for params in [
            json!({}),
            json!({"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}}),
            json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "x"}]}}),
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"url": "https://x"}]}}),
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": " "}]}}),
        ] {
            let fault = send(Version::V1, &params).expect_err("refused");
            assert_eq!(fault.code, super::super::rpc::INVALID_PARAMS, "{params}");
        }
    }

    #[test]
    fn a_message_id_names_one_task_per_sender() {
        assert_eq!(task_id_for("key:a", "m"), task_id_for("key:a", "m"));
        assert_ne!(task_id_for("key:a", "m"), task_id_for("key:b", "m"));
        assert!(crate::session::is_safe_id(&task_id_for("key:a", "m")));
    }
}
