//! A chat batch: many chat turns run as one piece of work, in the request
//! (`POST /api/v1/chat/batch`) or as a queued task (`"async": true`, run by
//! the worker).
//!
//! Items run concurrently under a bound, and items that name the same
//! session run one after another in the batch's order, so their turns never
//! interleave: each sees the one before it in its history. One bad item
//! never fails the others: its result carries the error envelope's
//! `{code, message}` instead of an answer, whether it is a chat request the
//! single route would refuse or an object that is no chat request at all
//! (so the document gives items as free-form objects). Only a batch that
//! cannot be read at all is a 400 ([`check`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Chat, ChatRequest, ChatResponse, prepare, store_turn};
use crate::http::{ApiError, RateBudget};
use crate::llm::{Model, Spend};

/// The most items a batch holds.
pub const MAX_ITEMS: usize = 100;
/// Sessions run at once when the batch does not say.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The most sessions a batch may run at once.
pub const MAX_CONCURRENCY: usize = 16;

/// `POST /api/v1/chat/batch`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 100 chat requests (objects as `POST /api/v1/chat` takes,
    /// without `stream`), answered in this order; one that is not valid
    /// gets its error in its result.
    pub requests: Vec<serde_json::Map<String, serde_json::Value>>,
    /// How many sessions run at once: 1 to 16, 4 when omitted. Items of one
    /// session always run one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Queue the batch as a task and answer 202 at once: its result, once
    /// completed, is the answer a synchronous batch gives.
    #[serde(default, rename = "async", skip_serializing_if = "std::ops::Not::not")]
    pub run_async: bool,
    /// With `async`: an `https://` URL that receives the finished task,
    /// signed with `X-Signature-256` (needs WEBHOOK_SECRET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// The answer: one result per item, in the items' order, and what the
/// whole batch spent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
    /// The items' usage summed (failed items spent nothing).
    pub usage: Spend,
}

/// One item's result: its chat answer, or its error.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BatchResult {
    /// The item's place in `requests`, from 0.
    pub index: usize,
    #[serde(flatten)]
    pub answer: Option<ChatResponse>,
    /// Why this item has no answer (its other items are unaffected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// The error envelope's body, for one item.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ItemError {
    pub code: String,
    pub message: String,
}

impl From<ApiError> for ItemError {
    fn from(err: ApiError) -> ItemError {
        ItemError {
            code: err.code.to_string(),
            message: err.message,
        }
    }
}

/// Checks what makes a batch unreadable as a whole (the number of items,
/// the concurrency): the 400 of the request, before anything runs or is
/// queued. Returns the concurrency to run with.
pub fn check(body: &BatchRequest) -> Result<usize, ApiError> {
    let items = body.requests.len();
    if !(1..=MAX_ITEMS).contains(&items) {
        return Err(ApiError::invalid_argument(format!(
            "requests must hold 1 to {MAX_ITEMS} chat requests (it held {items}); split a larger batch"
        )));
    }
    let concurrency = body.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(ApiError::invalid_argument(format!(
            "concurrency must be from 1 to {MAX_CONCURRENCY} (it was {concurrency}); omit it for {DEFAULT_CONCURRENCY}"
        )));
    }
    Ok(concurrency)
}

/// Runs the batch's items for the principal `owner` (`Principal::as_str`)
/// and answers with their results and usage: the items grouped by session
/// (items without one are groups of their own, as each starts a new
/// session), the groups run `concurrency` at a time, each group's items in
/// order. With a `budget`, each item but the first to run is counted
/// against it as a request of its own (the first has the batch's own
/// admission); without one (a queued batch, counted when it was
/// submitted) nothing is counted here.
pub async fn run(
    chat: &Chat,
    owner: &str,
    budget: Option<RateBudget>,
    requests: Vec<serde_json::Map<String, serde_json::Value>>,
    concurrency: usize,
) -> BatchResponse {
    run_resuming(chat, owner, budget, requests, concurrency, Vec::new(), &|_| {}).await
}

/// [`run`], for a queued batch that may have run before: the `known`
/// results (what an earlier attempt recorded) are kept as they are and
/// their items not run again, and `on_item` sees each other item's result
/// as soon as it is ready (the worker records it).
pub async fn run_resuming(
    chat: &Chat,
    owner: &str,
    budget: Option<RateBudget>,
    requests: Vec<serde_json::Map<String, serde_json::Value>>,
    concurrency: usize,
    known: Vec<BatchResult>,
    on_item: &(dyn Fn(&BatchResult) + Send + Sync),
) -> BatchResponse {
    let total = requests.len();
    let mut results: Vec<Option<BatchResult>> = (0..total).map(|_| None).collect();
    for result in known {
        if let Some(place) = results.get_mut(result.index) {
            *place = Some(result);
        }
    }
    let mut groups: Vec<Vec<(usize, Item)>> = Vec::new();
    let mut by_session: HashMap<String, usize> = HashMap::new();
    for (index, request) in requests.into_iter().enumerate() {
        if results[index].is_some() {
            continue;
        }
        let item = serde_json::from_value::<ChatRequest>(serde_json::Value::Object(request))
            .map_err(|err| ApiError::invalid_argument(format!("this item is not a valid chat request: {err}")));
        match item.as_ref().ok().and_then(|r| r.session_id.clone()) {
            Some(id) => match by_session.get(&id) {
                Some(&group) => groups[group].push((index, item)),
                None => {
                    by_session.insert(id, groups.len());
                    groups.push(vec![(index, item)]);
                }
            },
            None => groups.push(vec![(index, item)]),
        }
    }
    // The batch's own admission by the rate-limit layer counts for the
    // first item to run; each other item is counted when it runs.
    let first = AtomicBool::new(true);
    let (budget, first) = (&budget, &first);
    let mut runs = futures_util::stream::iter(groups)
        .map(|group| {
            async move {
                let mut done = Vec::with_capacity(group.len());
                for (index, request) in group {
                    // An item that is no chat request costs no place in
                    // the budget: it is refused before anything is done.
                    let outcome = match request {
                        Err(err) => Err(err),
                        Ok(request) => match admitted(budget, first).await {
                            Ok(()) => turn(chat, owner, request).await,
                            Err(err) => Err(err),
                        },
                    };
                    let result = match outcome {
                        Ok(answer) => BatchResult {
                            index,
                            answer: Some(answer),
                            error: None,
                        },
                        Err(err) => BatchResult {
                            index,
                            answer: None,
                            error: Some(err.into()),
                        },
                    };
                    on_item(&result);
                    done.push(result);
                }
                done
            }
        })
        .buffer_unordered(concurrency);
    while let Some(done) = runs.next().await {
        for result in done {
            let index = result.index;
            results[index] = Some(result);
        }
    }
    let results: Vec<BatchResult> = results.into_iter().flatten().collect();
    let mut usage = Spend::default();
    for answer in results.iter().filter_map(|r| r.answer.as_ref()) {
        usage += answer.usage;
    }
    BatchResponse { results, usage }
}

/// An item as read: a chat request, or why it is none.
type Item = Result<ChatRequest, ApiError>;

/// Counts one item against the rate limit: the first to run has the
/// batch's own admission, each other one is counted when it runs.
async fn admitted(budget: &Option<RateBudget>, first: &AtomicBool) -> Result<(), ApiError> {
    match budget {
        Some(budget) if !first.swap(false, Ordering::Relaxed) => budget.spend_one().await,
        _ => Ok(()),
    }
}

/// One item: a chat turn as `POST /api/v1/chat` runs it (not streamed).
async fn turn(chat: &Chat, owner: &str, request: ChatRequest) -> Result<ChatResponse, ApiError> {
    if request.stream {
        return Err(ApiError::invalid_argument(
            "stream is not available in a batch: the batch answers once, with every result",
        ));
    }
    let turn = prepare(chat, owner, request).await?;
    let answer = turn.model.generate(&turn.request).await?;
    store_turn(chat, &turn, &answer).await
}
