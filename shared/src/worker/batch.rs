//! A queued chat batch: its items run as the synchronous batch runs them,
//! each item's result stored as an event as it finishes, so a redelivered
//! batch keeps what an earlier attempt did.

use super::{Disposition, ITEM_EVENT, Worker, store_retry};
use crate::chat::batch::BatchResult;
use crate::store::{Finished, StoreError, TaskRecord};

impl Worker {
    /// Runs a queued chat batch (`TaskKind::ChatBatch`): its items as the
    /// synchronous `POST /api/v1/chat/batch` runs them (`chat::batch::run`,
    /// under the task owner's sessions), its result the answer that call
    /// gives. Its items were counted against the rate limit when it was
    /// submitted, and each turn's spend is counted in the write that
    /// stores the turn, so the outcome counts nothing more. A bad item is
    /// an error in its result, not a failed task.
    pub(super) async fn run_batch(&self, task: TaskRecord) -> Disposition {
        let task_id = task.task_id.clone();
        let attempt = task.attempts;
        let request = task
            .input
            .clone()
            .and_then(|input| serde_json::from_value::<crate::chat::batch::BatchRequest>(input).ok());
        let Some(request) = request else {
            return self
                .fail(&task, "the stored chat batch cannot be read; submit it again", None)
                .await;
        };
        let concurrency = match crate::chat::batch::check(&request) {
            Ok(concurrency) => concurrency,
            Err(err) => return self.fail(&task, &err.message, None).await,
        };
        // What an earlier attempt recorded is kept, not run again: its
        // turns are stored already.
        let known = match self.known_items(&task_id, attempt).await {
            Ok(known) => known,
            Err(err) => {
                let _ = self.tasks.release(&task_id, attempt).await;
                return store_retry(&err);
            }
        };
        // Each item's result is stored as an `item` event as it is ready,
        // as an agent run's steps are.
        let owner = task.owner.as_str();
        let running = self.while_held(&task_id, attempt, |events| async move {
            let on_item = move |result: &BatchResult| {
                let _ = events.send(serde_json::json!({"type": ITEM_EVENT, "result": result}));
            };
            crate::chat::batch::run_resuming(&self.chat, owner, None, request.requests, concurrency, known, &on_item)
                .await
        });
        let Some(response) = running.await else {
            return self.claim_lost(&task_id, attempt).await;
        };
        let result = serde_json::to_value(&response).unwrap_or_default();
        self.finish(&task, Finished::Completed(result), None).await
    }

    /// The item results earlier attempts of a batch recorded (`item`
    /// events), by item: the last one recorded for each.
    async fn known_items(&self, task_id: &str, attempt: u32) -> Result<Vec<BatchResult>, StoreError> {
        let mut known = std::collections::BTreeMap::new();
        for data in self.earlier_events(task_id, attempt).await? {
            if data["type"] != ITEM_EVENT {
                continue;
            }
            if let Ok(result) = serde_json::from_value::<BatchResult>(data["result"].clone()) {
                known.insert(result.index, result);
            }
        }
        Ok(known.into_values().collect())
    }
}
