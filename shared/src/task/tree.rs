//! A fanned-out run's children as its task shows them, and their
//! cancellation with it: found by id from the parent's plan
//! (`store::child_id`), without a query.

use serde::{Deserialize, Serialize};

use crate::llm::Spend;
use crate::multi::{SubtaskResult, SubtaskStatus};
use crate::research::{ResearchInput, SubtopicResult};
use crate::store::{Cancel, StoreError, TaskKind, TaskRecord, TaskStatus, TaskStore, child_id};
use crate::worker::MultiInput;

/// One child of a fanned-out run in `GET /api/v1/tasks/{id}`: a subtask
/// (or a research's researcher) run as a task of its own, by whichever
/// worker took it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct ChildView {
    pub task_id: String,
    /// What it does: the id of a multi-agent run's subtask, or the title
    /// of a research's subtopic.
    pub subtask: String,
    pub status: TaskStatus,
    /// How the subtask ended (`completed`, `failed`), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<SubtaskStatus>,
    /// Claims of it so far (more than 1 after its worker died or a
    /// transient failure).
    pub attempts: u32,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// What its model calls spent, once it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Spend>,
}

/// What each child of `task` does, in order (child `i` does part `i`):
/// a fanned-out multi-agent run's subtask ids, a research's subtopic
/// titles, once it has made children; none for any other task.
pub(crate) fn planned(task: &TaskRecord) -> Vec<String> {
    let Some(input) = task.input.as_ref().filter(|_| task.children.created > 0) else {
        return Vec::new();
    };
    let parts = match task.kind {
        TaskKind::MultiAgent => MultiInput::deserialize(input)
            .ok()
            .and_then(|input| input.fanned)
            .map(|fanned| fanned.plan.subtasks.into_iter().map(|s| s.id).collect()),
        TaskKind::Research => ResearchInput::deserialize(input)
            .ok()
            .and_then(|input| input.fanned)
            .map(|fanned| fanned.subtopics.into_iter().map(|s| s.title).collect()),
        _ => None,
    };
    parts.unwrap_or_default()
}

/// What an ended child says of its part: how it ended, what it spent and
/// (a subtask) how long it took; `None` before it ended, or when its
/// result cannot be read.
fn outcome(child: &TaskRecord) -> Option<(SubtaskStatus, Spend, Option<f64>)> {
    let result = child.state.finished()?.result()?;
    match child.kind {
        TaskKind::Subtask => SubtaskResult::deserialize(result)
            .ok()
            .map(|r| (r.status, r.usage, Some(r.duration_ms))),
        TaskKind::Subtopic => SubtopicResult::deserialize(result)
            .ok()
            .map(|r| (r.status, r.usage, None)),
        _ => None,
    }
}

/// The children `parent` has made, in plan order: one read each.
pub async fn children(tasks: &dyn TaskStore, parent: &TaskRecord) -> Result<Vec<ChildView>, StoreError> {
    let mut found = Vec::new();
    for (i, subtask) in planned(parent).into_iter().enumerate() {
        let Some(child) = tasks.get(&child_id(&parent.task_id, i)).await? else {
            continue;
        };
        let outcome = outcome(&child);
        found.push(ChildView {
            status: child.status(),
            outcome: outcome.map(|o| o.0),
            duration_ms: outcome.and_then(|o| o.2),
            usage: outcome.map(|o| o.1),
            task_id: child.task_id,
            subtask,
            attempts: child.attempts,
            created_at: child.created_at,
            started_at: child.started_at,
            finished_at: child.finished_at,
        });
    }
    Ok(found)
}

/// Cancels the children of a cancelled `parent` that have not ended: a
/// queued one never runs, a running one stops before its next call. Run
/// again by a repeated cancel, in case one was missed.
pub async fn cancel_children(tasks: &dyn TaskStore, parent: &TaskRecord) {
    for i in 0..planned(parent).len() {
        let id = child_id(&parent.task_id, i);
        match tasks.cancel(&id).await {
            Ok(Cancel::Cancelled(_)) => tracing::info!(task_id = id, "a child cancelled with its parent"),
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, task_id = id, "a child could not be cancelled with its parent"),
        }
    }
}
