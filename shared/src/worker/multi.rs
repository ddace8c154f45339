//! What every orchestrated queued run shares (a multi-agent run, a
//! research): its roles, and what earlier attempts left.

use super::Worker;
use crate::multi::{Earlier, MultiEvent, RoutedRoles};
use crate::store::TaskRecord;

impl Worker {
    /// What earlier attempts of `task` left: the plan they followed and
    /// the subtasks they completed (their `plan` and `subtask_finished`
    /// events), kept by a redelivered run (its worker died, or its planner
    /// or synthesis was unavailable).
    pub(super) async fn earlier_run(&self, task: &TaskRecord) -> Option<Earlier> {
        let mut earlier = Earlier::default();
        for event in self.earlier_as::<MultiEvent>(task).await? {
            match event {
                MultiEvent::Plan(plan) => earlier.plan = Some(plan),
                MultiEvent::SubtaskFinished(result) => earlier.done.push(*result),
                _ => {}
            }
        }
        Some(earlier)
    }

    /// The models of an orchestrated run of `task`: the one it asked for
    /// (checked when it was submitted: refused now only when the
    /// allow-list changed since, which no attempt will undo), else each
    /// role's tier.
    pub(super) fn roles_for<'a>(&'a self, task: &'a TaskRecord) -> Result<RoutedRoles<'a>, String> {
        let requested = match &task.model {
            None => None,
            Some(asked) => Some(
                self.models
                    .route(&task.task, self.tools.names().len(), Some(asked))
                    .map_err(|refused| refused.to_string())?,
            ),
        };
        Ok(RoutedRoles {
            models: &self.models,
            requested,
            cache: self.cache.as_ref().filter(|_| task.cache),
            principal: &task.owner,
        })
    }
}
