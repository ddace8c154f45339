//! What every orchestrated queued run shares (a multi-agent run, a
//! research): its roles, and the plan an earlier claim made.

use super::Worker;
use crate::multi::{MultiEvent, PlanView, RoutedRoles};
use crate::store::TaskRecord;

impl Worker {
    /// The plan an earlier claim of `task` made (its last `plan` event),
    /// kept when it stopped before fanning out (its worker died, the store
    /// failed): not paid for again.
    pub(super) async fn kept_plan(&self, task: &TaskRecord) -> Option<PlanView> {
        let events = self.earlier_as::<MultiEvent>(task).await?;
        events.into_iter().rev().find_map(|event| match event {
            MultiEvent::Plan(plan) => Some(plan),
            _ => None,
        })
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
