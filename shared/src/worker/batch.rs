//! A queued chat batch: its items run as the synchronous batch runs them,
//! each item's result stored as an event as it finishes, so a redelivered
//! batch keeps what an earlier attempt did.

use super::{Disposition, ITEM_EVENT, Worker, store_retry};
use crate::chat::batch::BatchResult;
use crate::store::{Finished, StoreError, TaskEvent, TaskRecord};

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
        // by a writer beside the batch, as an agent run's steps are.
        let (items_tx, mut items_rx) = tokio::sync::mpsc::unbounded_channel::<BatchResult>();
        let batch = async {
            let on_item = move |result: &BatchResult| {
                let _ = items_tx.send(result.clone());
            };
            crate::chat::batch::run_resuming(
                &self.chat,
                &task.owner,
                None,
                request.requests,
                concurrency,
                known,
                &on_item,
            )
            .await
        };
        let record_items = async {
            let mut index = 0;
            while let Some(result) = items_rx.recv().await {
                let event = TaskEvent {
                    attempt,
                    index,
                    data: serde_json::json!({"type": ITEM_EVENT, "result": result}),
                    created_at: String::new(),
                };
                if let Err(err) = self.tasks.add_event(&task_id, &event).await {
                    tracing::warn!(%err, task_id = %task_id, "a batch item's result could not be stored");
                }
                index += 1;
            }
        };
        let work = async { tokio::join!(batch, record_items).0 };
        let response = tokio::select! {
            response = work => response,
            () = self.keep_claim(&task_id, attempt) => {
                tracing::warn!(task_id = %task_id, attempt, "the batch's claim was lost (cancelled or taken over) while it ran; stopped");
                return self.settle(&task_id, format!("task {task_id} is no longer this delivery's to run")).await;
            }
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
