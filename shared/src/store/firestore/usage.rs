//! Usage on Firestore.
//!
//! - A session document's `usage` map holds its totals. The append that
//!   stores a turn rewrites the document whole, conditioned on it being as
//!   read (`sessions`), so it writes the totals as read plus the turn's:
//!   exact, since a commit on a document that changed in between fails and
//!   runs again from a fresh read.
//! - `usage_days/{id}`: `{owner, date, model, input_tokens, output_tokens,
//!   cached_tokens, thinking_tokens, model_calls, cost_pico,
//!   unpriced_calls, requests, cache_hits, saved_pico, unpriced_hits}` (the
//!   last four absent, so 0, in documents from before they were counted)
//!   per owner (as `owned::key_owner` writes it), UTC day
//!   and model; the id is [`key_id`] of the three joined by newlines (which
//!   none of the first two holds). It is added to by a write of `increment`
//!   transforms in the commit that stores the turn (or the task's outcome):
//!   one more document written, no read and no more round trips, and
//!   increments from many instances at once never conflict. A read of a
//!   range is one query on `owner` and `date` (a composite index,
//!   `deploy.sh`).

use std::collections::HashMap;

use async_trait::async_trait;
use firestore::FirestoreDb;
use firestore::errors::{FirestoreError, FirestoreInvalidParametersError, FirestoreInvalidParametersPublicDetails};
use firestore::gcloud_sdk::google::firestore::v1::document_transform::FieldTransform;
use firestore::gcloud_sdk::google::firestore::v1::document_transform::field_transform::TransformType;
use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
use firestore::gcloud_sdk::google::firestore::v1::{Document, DocumentMask, Value, Write, write};
use serde::{Deserialize, Serialize};

use super::cas::{classify, read};

use super::ids::{is_document_id, key_id};
use super::sessions::SESSIONS;
use super::{FirestoreStore, bounded, query_limit};
use crate::owned;
use crate::store::usage::MAX_USAGE_RECORDS;
use crate::store::{Charge, DayUsage, StoreError, Totals, UsageStore};

pub(super) const USAGE_DAYS: &str = "usage_days";

/// Totals as a document keeps them (Firestore integers are i64).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct TotalsDoc {
    #[serde(default)]
    input_tokens: i64,
    #[serde(default)]
    output_tokens: i64,
    #[serde(default)]
    cached_tokens: i64,
    #[serde(default)]
    thinking_tokens: i64,
    #[serde(default)]
    model_calls: i64,
    #[serde(default)]
    cost_pico: i64,
    #[serde(default)]
    unpriced_calls: i64,
    // Since `GET /api/v1/stats`: absent (0) in what was stored before.
    #[serde(default)]
    requests: i64,
    #[serde(default)]
    cache_hits: i64,
    #[serde(default)]
    saved_pico: i64,
    #[serde(default)]
    unpriced_hits: i64,
}

impl TotalsDoc {
    pub(super) fn totals(&self) -> Totals {
        Totals::from_fields([
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.thinking_tokens,
            self.model_calls,
            self.cost_pico,
            self.unpriced_calls,
            self.requests,
            self.cache_hits,
            self.saved_pico,
            self.unpriced_hits,
        ])
    }

    pub(super) fn of(totals: Totals) -> TotalsDoc {
        let [a, b, c, d, e, f, g, h, i, j, k] = totals.fields().map(|(_, v)| v);
        TotalsDoc {
            input_tokens: a,
            output_tokens: b,
            cached_tokens: c,
            thinking_tokens: d,
            model_calls: e,
            cost_pico: f,
            unpriced_calls: g,
            requests: h,
            cache_hits: i,
            saved_pico: j,
            unpriced_hits: k,
        }
    }
}

/// A day document as read.
#[derive(Debug, Deserialize)]
struct DayDoc {
    date: String,
    model: String,
    #[serde(flatten)]
    totals: TotalsDoc,
}

fn string(s: &str) -> Value {
    Value {
        value_type: Some(ValueType::StringValue(s.to_string())),
    }
}

/// The writes that add `charge` to the day documents of `key_owner` (as
/// `owned::key_owner` writes it), one a model it charges: key fields set,
/// totals incremented, each document created if absent. No precondition:
/// they commit with whatever the commit's other writes are conditioned on.
pub(super) fn charge_day(documents: &str, key_owner: &str, charge: &Charge) -> Result<Vec<Write>, FirestoreError> {
    charge
        .day_rows()
        .into_iter()
        .map(|(model, totals)| day_write(documents, key_owner, &charge.day, model, &totals))
        .collect()
}

/// The write that adds `totals` to one day document.
fn day_write(
    documents: &str,
    key_owner: &str,
    day: &str,
    model: &str,
    totals: &Totals,
) -> Result<Write, FirestoreError> {
    let id = key_id(&format!("{key_owner}\n{day}\n{model}")).ok_or_else(|| {
        FirestoreError::InvalidParametersError(FirestoreInvalidParametersError::new(
            FirestoreInvalidParametersPublicDetails::new(
                "model".into(),
                format!("the usage record of model {model:?} has too long a key"),
            ),
        ))
    })?;
    let fields = HashMap::from([
        ("owner".to_string(), string(key_owner)),
        ("date".to_string(), string(day)),
        ("model".to_string(), string(model)),
    ]);
    let transforms = totals
        .fields()
        .into_iter()
        .map(|(field, add)| FieldTransform {
            field_path: field.to_string(),
            transform_type: Some(TransformType::Increment(Value {
                value_type: Some(ValueType::IntegerValue(add)),
            })),
        })
        .collect();
    Ok(Write {
        update_mask: Some(DocumentMask {
            field_paths: vec!["owner".into(), "date".into(), "model".into()],
        }),
        update_transforms: transforms,
        current_document: None,
        operation: Some(write::Operation::Update(Document {
            name: format!("{documents}/{USAGE_DAYS}/{id}"),
            fields,
            create_time: None,
            update_time: None,
        })),
    })
}

/// What a session's totals read takes of its document.
#[derive(Debug, Deserialize)]
struct SessionUsageDoc {
    #[serde(default)]
    usage: Option<TotalsDoc>,
}

impl FirestoreStore {
    /// A session's totals: one get of its document (zeros before its first
    /// charged turn), `None` when there is no session.
    pub(super) async fn session_totals_now(&self, session_id: &str) -> Result<Option<Totals>, StoreError> {
        if !is_document_id(session_id) {
            return Ok(None);
        }
        let session = read::<SessionUsageDoc>(&self.counts, &self.db, self.documents(), SESSIONS, session_id)
            .await
            .map_err(classify)?;
        Ok(session
            .value
            .map(|doc| doc.usage.map(|u| u.totals()).unwrap_or_default()))
    }

    async fn usage_now(&self, owner: &str, from: &str, to: &str) -> Result<Vec<DayUsage>, StoreError> {
        let key_owner = owned::key_owner(owner);
        let query = self
            .db
            .fluent()
            .select()
            .from(USAGE_DAYS)
            .filter(|q| {
                q.for_all([
                    q.field("owner").eq(key_owner.as_str()),
                    q.field("date").greater_than_or_equal(from),
                    q.field("date").less_than_or_equal(to),
                ])
            })
            .order(|o| o.fields([o.field("date").ascending(), o.field("model").ascending()]))
            .limit(query_limit(MAX_USAGE_RECORDS))
            .query();
        let docs = self.counts.query(query).await.map_err(classify)?;
        docs.iter()
            .map(|doc| {
                let day: DayDoc = FirestoreDb::deserialize_doc_to(doc).map_err(classify)?;
                Ok(DayUsage {
                    date: day.date,
                    model: day.model,
                    totals: day.totals.totals(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl UsageStore for FirestoreStore {
    async fn usage(&self, owner: &str, from: &str, to: &str) -> Result<Vec<DayUsage>, StoreError> {
        bounded(self.usage_now(owner, from, to)).await
    }
}
