//! Where a remote agent's task stands, from what its stream, its send and
//! its reads said, in either revision's words: its id, its state, and its
//! answer (the artifacts' text, else the last status message's).

use serde_json::Value;

use super::{Version, wire};

/// The longest answer handed to the model.
const MAX_ANSWER_CHARS: usize = 32_000;

/// Where the remote task stands: what the events and reads said so far.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) task_id: Option<String>,
    pub(super) state: Option<String>,
    /// The text of the artifacts (and of a final message).
    answer: Vec<String>,
    /// The text of the last status message (why it failed, or asks).
    status_text: Option<String>,
    /// An answer that came as a message, with no task.
    message_only: bool,
}

impl Outcome {
    pub(super) fn is_final(&self) -> bool {
        self.message_only
            || self
                .state
                .as_deref()
                .is_some_and(|s| wire::is_terminal(s) || is_interrupted(s))
    }

    /// Takes in a send's, a read's or a stream event's result, in either
    /// revision's shape.
    pub(super) fn absorb(&mut self, version: Version, result: &Value) {
        // 1.0 wraps each kind in a field named for it; 0.3 tags it `kind`.
        let (kind, body) = match version {
            Version::V1 => ["task", "message", "statusUpdate", "artifactUpdate"]
                .into_iter()
                .find_map(|k| result.get(k).map(|b| (k, b)))
                .unwrap_or(("task", result)),
            Version::V03 => (
                match result["kind"].as_str() {
                    Some("message") => "message",
                    Some("status-update") => "statusUpdate",
                    Some("artifact-update") => "artifactUpdate",
                    _ => "task",
                },
                result,
            ),
        };
        match kind {
            "message" => {
                self.answer.push(parts_text(&body["parts"]));
                if self.task_id.is_none() {
                    self.message_only = true;
                }
            }
            "statusUpdate" => self.status(&body["status"]),
            "artifactUpdate" => self.answer.push(parts_text(&body["artifact"]["parts"])),
            _ => {
                if let Some(id) = body["id"].as_str() {
                    self.task_id = Some(id.to_string());
                }
                self.status(&body["status"]);
                if let Some(artifacts) = body["artifacts"].as_array() {
                    // A task read whole replaces what the stream gave.
                    self.answer = artifacts.iter().map(|a| parts_text(&a["parts"])).collect();
                }
            }
        }
    }

    fn status(&mut self, status: &Value) {
        if let Some(state) = status["state"].as_str() {
            self.state = Some(state.to_string());
        }
        let text = parts_text(&status["message"]["parts"]);
        if !text.is_empty() {
            self.status_text = Some(text);
        }
    }

    pub(super) fn text(&self) -> String {
        let answer: Vec<&str> = self
            .answer
            .iter()
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .collect();
        let text = if answer.is_empty() {
            self.status_text.clone().unwrap_or_default()
        } else {
            answer.join("\n")
        };
        text.chars().take(MAX_ANSWER_CHARS).collect()
    }
}

/// A state in which the remote agent waits on its caller.
fn is_interrupted(state: &str) -> bool {
    matches!(
        state,
        "TASK_STATE_INPUT_REQUIRED" | "TASK_STATE_AUTH_REQUIRED" | "input-required" | "auth-required"
    )
}

/// The text parts of a list of parts, one after another (data parts as JSON).
fn parts_text(parts: &Value) -> String {
    parts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p["text"]
                .as_str()
                .map(str::to_string)
                .or_else(|| p.get("data").filter(|d| !d.is_null()).map(Value::to_string))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_revisions_stream_to_one_outcome() {
        let mut v1 = Outcome::default();
        for event in [
            json!({"task": {"id": "t", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            json!({"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_WORKING"}}}),
            json!({"artifactUpdate": {"taskId": "t", "artifact": {"parts": [{"text": "HELLO!"}]}}}),
            json!({"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_COMPLETED"}}}),
        ] {
            assert!(!v1.is_final());
            v1.absorb(Version::V1, &event);
        }
        assert!(v1.is_final());
        assert_eq!((v1.text().as_str(), v1.task_id.as_deref()), ("HELLO!", Some("t")));
        let mut v03 = Outcome::default();
        v03.absorb(
            Version::V03,
            &json!({"kind": "task", "id": "u", "status": {"state": "working"}}),
        );
        v03.absorb(
            Version::V03,
            &json!({"kind": "status-update", "taskId": "u", "final": true,
            "status": {"state": "failed", "message": {"parts": [{"kind": "text", "text": "no fuel"}]}}}),
        );
        assert!(v03.is_final());
        assert_eq!(v03.text(), "no fuel");
    }
}
