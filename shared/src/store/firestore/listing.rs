//! Pages and listings on Firestore: each one query, with a cursor and a
//! limit of one document more than the page (which tells whether another
//! follows), so a page costs one query and at most `limit + 1` documents
//! however long the session or the list.
//!
//! - A session's messages after a sequence number: its `messages` in id
//!   order (ids are the numbers zero-padded, so id order is number order)
//!   from after that number's id.
//! - A principal's sessions: `owner ==` (the owner part of the keys,
//!   `owned::key_owner`), by `updated_at` then id, both descending, reading
//!   only the fields a summary needs (not the tail).
//! - A principal's tasks: `owner ==`, and `status ==` when asked, by
//!   `created_at` then id, both descending.
//!
//! An equality on one field ordered by another needs a composite index in
//! Firestore (not on the emulator): `deploy.sh` creates them. A session
//! document written before listings has no `owner` and is not listed until
//! its next append writes one; a task document written before owners has
//! none either and is not listed (both read by id as before).

use std::time::SystemTime;

use firestore::gcloud_sdk::google::firestore::v1::{Value, value::ValueType};
use firestore::gcloud_sdk::prost_types;
use firestore::{FirestoreDb, FirestoreQueryCursor, FirestoreTimestamp, FirestoreValue};
use serde::Deserialize;

use super::cas::classify;
use super::ids::is_document_id;
use super::sessions::{MESSAGES, MessageDoc, SESSIONS, message_path, to_message};
use super::task_doc::{TaskDoc, to_task};
use super::tasks::TASKS;
use super::usage::TotalsDoc;
use super::{FirestoreStore, query_limit, time_of};
use crate::owned;
use crate::store::{
    Page, SessionPosition, SessionSummary, StoreError, StoredMessage, TaskPosition, TaskRecord, TaskStatus,
};

/// What a session listing reads of a session document.
#[derive(Debug, Deserialize)]
struct SessionSummaryDoc {
    next_seq: i64,
    #[serde(default)]
    first_seq: Option<i64>,
    created_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    #[serde(default)]
    usage: Option<TotalsDoc>,
}

/// The fields of [`SessionSummaryDoc`].
const SUMMARY_FIELDS: [&str; 5] = ["next_seq", "first_seq", "created_at", "updated_at", "usage"];

/// The creation time of a task, exactly as stored (its record's text is to
/// the millisecond).
#[derive(Debug, Deserialize)]
struct CreatedDoc {
    created_at: FirestoreTimestamp,
}

/// `limit + 1`: the extra document says that more follow.
fn read_limit(limit: usize) -> u32 {
    query_limit(limit).saturating_add(1)
}

fn reference(name: String) -> FirestoreValue {
    FirestoreValue::from(Value {
        value_type: Some(ValueType::ReferenceValue(name)),
    })
}

fn time_value(t: SystemTime) -> Result<FirestoreValue, StoreError> {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| StoreError::Internal("a listing position before 1970".into()))?;
    let seconds = i64::try_from(since.as_secs())
        .map_err(|_| StoreError::Internal("a listing position past any representable time".into()))?;
    Ok(FirestoreValue::from(Value {
        value_type: Some(ValueType::TimestampValue(prost_types::Timestamp {
            seconds,
            nanos: since.subsec_nanos() as i32,
        })),
    }))
}

/// The last segment of a document's name: its id.
fn document_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or_default()
}

impl FirestoreStore {
    pub(super) async fn messages_page_now(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Page<StoredMessage, u64>, StoreError> {
        if !is_document_id(session_id) || limit == 0 {
            return Ok(Page::of(Vec::new(), 0, |m: &StoredMessage| m.seq));
        }
        let session_path = format!("{}/{SESSIONS}/{session_id}", self.documents());
        let query = self
            .db
            .fluent()
            .select()
            .from(MESSAGES)
            .parent(&session_path)
            .order(|o| o.fields([o.field("__name__").ascending()]))
            .limit(read_limit(limit));
        let query = match i64::try_from(after) {
            Ok(0) => query,
            // After the message with that number, whether or not it exists.
            Ok(after) => query.start_at(FirestoreQueryCursor::AfterValue(vec![reference(message_path(
                &session_path,
                after,
            ))])),
            Err(_) => return Ok(Page::of(Vec::new(), 0, |m: &StoredMessage| m.seq)),
        };
        let docs: Vec<MessageDoc> = self.counts.query(query.obj().query()).await.map_err(classify)?;
        let messages = docs.into_iter().map(to_message).collect();
        Ok(Page::of(messages, limit, |m| m.seq))
    }

    pub(super) async fn list_sessions_now(
        &self,
        owner: &str,
        after: Option<&SessionPosition>,
        limit: usize,
    ) -> Result<Page<SessionSummary, SessionPosition>, StoreError> {
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let key_owner = owned::key_owner(owner);
        let query = self
            .db
            .fluent()
            .select()
            .fields(SUMMARY_FIELDS)
            .from(SESSIONS)
            .filter(|q| q.for_all([q.field("owner").eq(key_owner.as_str())]))
            .order(|o| o.fields([o.field("updated_at").descending(), o.field("__name__").descending()]))
            .limit(read_limit(limit));
        let query = match after {
            Some(p) => {
                let key = owned::session_key(owner, &p.id);
                if !is_document_id(&key) {
                    return Ok(Page {
                        items: Vec::new(),
                        next: None,
                    });
                }
                let name = format!("{}/{SESSIONS}/{key}", self.documents());
                query.start_at(FirestoreQueryCursor::AfterValue(vec![
                    time_value(p.updated_at)?,
                    reference(name),
                ]))
            }
            None => query,
        };
        let docs = self.counts.query(query.query()).await.map_err(classify)?;
        let mut listed = Vec::with_capacity(docs.len());
        for doc in docs {
            let summary: SessionSummaryDoc = FirestoreDb::deserialize_doc_to(&doc).map_err(classify)?;
            let id = owned::split_key(document_id(&doc.name)).1.to_string();
            let updated_at = SystemTime::from(summary.updated_at);
            let count = summary.next_seq - summary.first_seq.unwrap_or(1);
            listed.push((
                SessionSummary {
                    id,
                    message_count: u64::try_from(count).unwrap_or(0),
                    created_at: time_of(summary.created_at),
                    updated_at: time_of(summary.updated_at),
                    usage: summary.usage.map(|u| u.totals()).unwrap_or_default(),
                },
                updated_at,
            ));
        }
        let page = Page::of(listed, limit, |(s, updated_at)| SessionPosition {
            updated_at: *updated_at,
            id: s.id.clone(),
        });
        Ok(Page {
            items: page.items.into_iter().map(|(s, _)| s).collect(),
            next: page.next,
        })
    }

    pub(super) async fn list_tasks_now(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        after: Option<&TaskPosition>,
        limit: usize,
    ) -> Result<Page<TaskRecord, TaskPosition>, StoreError> {
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let query = self
            .db
            .fluent()
            .select()
            .from(TASKS)
            .filter(|q| {
                q.for_all([
                    q.field("owner").eq(owner),
                    status.and_then(|s| q.field("status").eq(s.as_str())),
                ])
            })
            .order(|o| o.fields([o.field("created_at").descending(), o.field("__name__").descending()]))
            .limit(read_limit(limit));
        let query = match after {
            Some(p) => {
                if !is_document_id(&p.task_id) {
                    return Ok(Page {
                        items: Vec::new(),
                        next: None,
                    });
                }
                let name = format!("{}/{TASKS}/{}", self.documents(), p.task_id);
                query.start_at(FirestoreQueryCursor::AfterValue(vec![
                    time_value(p.created_at)?,
                    reference(name),
                ]))
            }
            None => query,
        };
        let docs = self.counts.query(query.query()).await.map_err(classify)?;
        let mut listed = Vec::with_capacity(docs.len());
        for doc in docs {
            let created: CreatedDoc = FirestoreDb::deserialize_doc_to(&doc).map_err(classify)?;
            let task: TaskDoc = FirestoreDb::deserialize_doc_to(&doc).map_err(classify)?;
            listed.push((
                to_task(document_id(&doc.name), task),
                SystemTime::from(created.created_at),
            ));
        }
        let page = Page::of(listed, limit, |(task, created_at)| TaskPosition {
            created_at: *created_at,
            task_id: task.task_id.clone(),
        });
        Ok(Page {
            items: page.items.into_iter().map(|(task, _)| task).collect(),
            next: page.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Metrics;
    use crate::store::firestore::tests::{Cost, emulator, project, question_and_answer};
    use crate::store::{SessionStore, TaskStore};

    /// A page: one query, whose documents are the page and the one after.
    fn one_query_reading(documents: u64) -> Cost {
        Cost {
            query: 1,
            read: documents,
            ..Cost::default()
        }
    }

    /// Every page and listing is one query of at most `limit + 1`
    /// documents, wherever it starts and however long what it pages.
    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_page_is_one_query_of_at_most_limit_and_one_documents() {
        let metrics = Metrics::new("test");
        let store = FirestoreStore::connect_to(Some(&emulator()), &project(), "(default)", None, &metrics)
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        let key = owned::session_key("key:pages", "long");
        for i in 0..15 {
            store.append(&key, &question_and_answer(i)).await.expect("append");
        }
        let (first, cost) = Cost::measure(&metrics, store.messages_page(&key, 0, 10)).await;
        let first = first.expect("page");
        assert_eq!((first.items.len(), first.next), (10, Some(10)));
        assert_eq!(cost, one_query_reading(11), "the first page");
        let (middle, cost) = Cost::measure(&metrics, store.messages_page(&key, 10, 10)).await;
        assert_eq!(middle.expect("page").next, Some(20));
        assert_eq!(cost, one_query_reading(11), "a page from a cursor");
        let (last, cost) = Cost::measure(&metrics, store.messages_page(&key, 20, 10)).await;
        assert_eq!(last.expect("page").next, None);
        assert_eq!(cost, one_query_reading(10), "the last page");

        for id in ["a", "b", "c"] {
            let session = owned::session_key("key:pages", id);
            store.append(&session, &question_and_answer(0)).await.expect("append");
        }
        let (sessions, cost) = Cost::measure(&metrics, store.list_sessions("key:pages", None, 2)).await;
        let sessions = sessions.expect("list");
        assert!(sessions.next.is_some());
        assert_eq!(cost, one_query_reading(3), "a page of sessions");
        let (rest, cost) = Cost::measure(&metrics, store.list_sessions("key:pages", sessions.next.as_ref(), 2)).await;
        assert_eq!(rest.expect("list").items.len(), 2);
        assert_eq!(cost, one_query_reading(2), "the last page of sessions");

        for id in ["t1", "t2", "t3"] {
            store
                .create(&TaskRecord::queued(id, "key:pages", "t", "s", 5))
                .await
                .expect("create");
        }
        let (tasks, cost) = Cost::measure(&metrics, store.list_tasks("key:pages", None, None, 2)).await;
        assert!(tasks.expect("list").next.is_some());
        assert_eq!(cost, one_query_reading(3), "a page of tasks");
        let status = Some(TaskStatus::Queued);
        let (tasks, cost) = Cost::measure(&metrics, store.list_tasks("key:pages", status, None, 5)).await;
        assert_eq!(tasks.expect("list").items.len(), 3);
        assert_eq!(cost, one_query_reading(3), "a page of tasks in one status");
    }

    /// A session document from before listings has no `owner`: it is read
    /// by id as ever, listed from its next append on.
    #[tokio::test]
    #[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
    async fn a_session_from_before_listings_is_listed_from_its_next_append() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct NoOwner {}
        let metrics = Metrics::new("test");
        let store = FirestoreStore::connect_to(Some(&emulator()), &project(), "(default)", None, &metrics)
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        store.append("legacy", &question_and_answer(0)).await.expect("append");
        // The update mask names `owner` and the object has none: removed.
        store
            .db
            .fluent()
            .update()
            .fields(["owner"])
            .in_col(SESSIONS)
            .document_id("legacy")
            .object(&NoOwner {})
            .execute::<super::super::Written>()
            .await
            .expect("remove the owner");
        let listed = |page: Page<SessionSummary, SessionPosition>| {
            page.items
                .into_iter()
                .map(|s| (s.id, s.message_count))
                .collect::<Vec<_>>()
        };
        let before = store.list_sessions("anonymous", None, 10).await.expect("list");
        assert_eq!(listed(before), []);
        let page = store.messages_page("legacy", 0, 10).await.expect("page");
        assert_eq!(page.items.len(), 2, "still read by id");
        store.append("legacy", &question_and_answer(1)).await.expect("append");
        let after = store.list_sessions("anonymous", None, 10).await.expect("list");
        assert_eq!(listed(after), [("legacy".to_string(), 4)]);
    }
}
