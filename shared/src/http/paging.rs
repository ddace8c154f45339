//! Paged listings: the `limit` and `cursor` query parameters every listing
//! takes (and `status` for tasks), checked here so that each mistake is a
//! 400 envelope naming the parameter, and the opaque cursors they hand out.
//!
//! A cursor is the base64url of the position of a page's last item (see
//! `store::listing`): a message's number, or a session's or task's time and
//! id, behind a letter naming the listing, so one listing's cursor is
//! refused by another. It names no owner: the store always filters on the
//! caller, so a cursor edited by hand can skip or repeat the caller's own
//! items but never reach another principal's. Clients must treat cursors
//! as opaque; their form may change.

use std::time::{Duration, SystemTime};

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::error::ApiError;
use super::openapi::Operation;
use crate::session;
use crate::store::{SessionPosition, TaskPosition, TaskStatus};

/// Items a page holds when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most a page holds: a page is one read of the store, kept bounded.
pub const MAX_LIMIT: usize = 1000;
/// The longest cursor accepted; those handed out are far shorter.
const MAX_CURSOR_CHARS: usize = 512;

/// The query parameters as sent, all text, so that a wrong one is
/// explained here rather than by the query decoder.
#[derive(Debug, Default, Deserialize)]
struct Params {
    limit: Option<String>,
    cursor: Option<String>,
    status: Option<String>,
}

/// The paging parameters of a listing request, as an extractor: `limit`
/// checked (1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent); `cursor`
/// and `status` kept as sent, for the handler to read as its listing's.
#[derive(Debug)]
pub struct PageQuery {
    pub limit: usize,
    cursor: Option<String>,
    status: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<Params>::try_from_uri(&parts.uri).map_err(|rejection| {
            ApiError::invalid_argument(format!("the query string could not be read: {}", rejection.body_text()))
        })?;
        PageQuery::from_params(params)
    }
}

impl PageQuery {
    /// A page of `limit` items after `cursor`, for a listing whose request
    /// is not a query string (A2A's `ListTasks`).
    pub fn new(limit: usize, cursor: Option<String>) -> PageQuery {
        PageQuery {
            limit: limit.clamp(1, MAX_LIMIT),
            cursor,
            status: None,
        }
    }

    fn from_params(params: Params) -> Result<PageQuery, ApiError> {
        let limit = match params.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_argument(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT} (it was {text:?}); omit it for {DEFAULT_LIMIT}"
                    ))
                })?,
        };
        Ok(PageQuery {
            limit,
            cursor: params.cursor,
            status: params.status,
        })
    }

    /// The messages' cursor: the number of the last message read, 0 for
    /// the start.
    pub fn after_message(&self) -> Result<u64, ApiError> {
        match self.cursor_text(MESSAGES)? {
            None => Ok(0),
            Some(rest) => rest.parse().map_err(|_| bad_cursor()),
        }
    }

    /// The sessions' cursor: where the previous page ended.
    pub fn after_session(&self) -> Result<Option<SessionPosition>, ApiError> {
        let Some(rest) = self.cursor_text(SESSIONS)? else {
            return Ok(None);
        };
        let (updated_at, id) = time_and_id(&rest)?;
        Ok(Some(SessionPosition { updated_at, id }))
    }

    /// The tasks' cursor: where the previous page ended.
    pub fn after_task(&self) -> Result<Option<TaskPosition>, ApiError> {
        let Some(rest) = self.cursor_text(TASKS)? else {
            return Ok(None);
        };
        let (created_at, task_id) = time_and_id(&rest)?;
        Ok(Some(TaskPosition { created_at, task_id }))
    }

    /// The `status` filter of a task listing, if given.
    pub fn status(&self) -> Result<Option<TaskStatus>, ApiError> {
        self.status
            .as_deref()
            .map(|name| {
                TaskStatus::from_name(name).ok_or_else(|| {
                    ApiError::invalid_argument(format!(
                        "status must be one of queued, running, completed, failed or cancelled (it was {name:?}); \
                         omit it to list every task"
                    ))
                })
            })
            .transpose()
    }

    /// The cursor decoded, past its listing's letter; an error when it is
    /// not one this listing handed out.
    fn cursor_text(&self, kind: char) -> Result<Option<String>, ApiError> {
        let Some(cursor) = self.cursor.as_deref() else {
            return Ok(None);
        };
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(bad_cursor());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
        let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(k), Some(':')) if k == kind => Ok(Some(chars.as_str().to_string())),
            _ => Err(bad_cursor()),
        }
    }
}

const MESSAGES: char = 'm';
const SESSIONS: char = 's';
const TASKS: char = 't';

fn bad_cursor() -> ApiError {
    ApiError::invalid_argument(
        "cursor is not one this listing handed out: pass the next_cursor of the previous page as it was, \
         or omit cursor for the first page",
    )
}

/// `NANOS:ID`, as [`encode_time_and_id`] writes it.
fn time_and_id(rest: &str) -> Result<(SystemTime, String), ApiError> {
    let (nanos, id) = rest.split_once(':').ok_or_else(bad_cursor)?;
    let nanos: u64 = nanos.parse().map_err(|_| bad_cursor())?;
    if !session::is_safe_id(id) {
        return Err(bad_cursor());
    }
    Ok((SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos), id.to_string()))
}

fn encode(kind: char, rest: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{rest}"))
}

fn encode_time_and_id(kind: char, at: SystemTime, id: &str) -> String {
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    encode(kind, &format!("{nanos}:{id}"))
}

/// The cursor of the page after the message numbered `seq`.
pub fn message_cursor(seq: u64) -> String {
    encode(MESSAGES, &seq.to_string())
}

/// The cursor of the page after the session at `position`.
pub fn session_cursor(position: &SessionPosition) -> String {
    encode_time_and_id(SESSIONS, position.updated_at, &position.id)
}

/// The cursor of the page after the task at `position`.
pub fn task_cursor(position: &TaskPosition) -> String {
    encode_time_and_id(TASKS, position.created_at, &position.task_id)
}

/// `op` with the paging parameters documented, and the 400 they can get.
pub fn paged(op: Operation) -> Operation {
    op.query_param(
        "limit",
        "items on the page, 1 to 1000 (100 when omitted)",
        serde_json::json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
    )
    .query_param(
        "cursor",
        "the next_cursor of the previous page, as it was; omit it for the first page",
        serde_json::json!({"type": "string"}),
    )
    .error(400, "limit or cursor is not valid (the message says which)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, cursor: Option<String>, status: Option<&str>) -> Result<PageQuery, ApiError> {
        PageQuery::from_params(Params {
            limit: limit.map(str::to_string),
            cursor,
            status: status.map(str::to_string),
        })
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(query(None, None, None).expect("default").limit, DEFAULT_LIMIT);
        assert_eq!(query(Some("1000"), None, None).expect("max").limit, 1000);
        for bad in ["0", "1001", "-1", "ten", "", "1.5", "99999999999999999999999"] {
            let err = query(Some(bad), None, None).expect_err(bad);
            assert_eq!((err.status.as_u16(), err.code), (400, "invalid_argument"), "{bad}");
            assert!(err.message.starts_with("limit must be"), "{}", err.message);
        }
    }

    #[test]
    fn cursors_read_back_as_written_and_only_in_their_listing() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_780_000_000, 123_456_789);
        let session = SessionPosition {
            updated_at: at,
            id: "s-1".into(),
        };
        let task = TaskPosition {
            created_at: at,
            task_id: "0b7c6f1e-3f1a".into(),
        };
        let page = |cursor: String| query(None, Some(cursor), None).expect("query");
        assert_eq!(page(message_cursor(42)).after_message().expect("message"), 42);
        assert_eq!(
            page(session_cursor(&session)).after_session().expect("session"),
            Some(session.clone())
        );
        assert_eq!(page(task_cursor(&task)).after_task().expect("task"), Some(task.clone()));
        assert_eq!(
            query(None, None, None).expect("first").after_session().expect("none"),
            None
        );
        // One listing's cursor is not another's.
        assert!(page(session_cursor(&session)).after_task().is_err());
        assert!(page(task_cursor(&task)).after_message().is_err());
        for bad in [
            "%%%",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("s:12:../x"),
            &URL_SAFE_NO_PAD.encode("s:x:id"),
            &URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            &"A".repeat(600),
        ] {
            let err = page(bad.to_string()).after_session().expect_err(bad);
            assert_eq!((err.status.as_u16(), err.code), (400, "invalid_argument"), "{bad}");
            assert!(err.message.starts_with("cursor is not"), "{}", err.message);
        }
    }

    /// What the query decoder itself refuses is a 400 envelope too.
    #[tokio::test]
    async fn an_unreadable_query_string_is_a_400() {
        for uri in ["/x?limit=1&limit=2", "/x?cursor=a&cursor=b"] {
            let (mut parts, ()) = axum::http::Request::builder()
                .uri(uri)
                .body(())
                .expect("request")
                .into_parts();
            let err = PageQuery::from_request_parts(&mut parts, &()).await.expect_err(uri);
            assert_eq!((err.status.as_u16(), err.code), (400, "invalid_argument"), "{uri}");
            assert!(
                err.message.starts_with("the query string could not be read"),
                "{}",
                err.message
            );
        }
        // Bytes that are not UTF-8 are read as U+FFFD, which no cursor holds.
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/x?cursor=%FF")
            .body(())
            .expect("request")
            .into_parts();
        let page = PageQuery::from_request_parts(&mut parts, &()).await.expect("read");
        assert!(page.after_session().is_err());
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/x?limit=5&other=1")
            .body(())
            .expect("request")
            .into_parts();
        let page = PageQuery::from_request_parts(&mut parts, &())
            .await
            .expect("unknown ones are ignored");
        assert_eq!(page.limit, 5);
    }

    #[test]
    fn statuses_are_named_exactly() {
        assert_eq!(
            query(None, None, Some("running")).expect("q").status().expect("status"),
            Some(TaskStatus::Running)
        );
        assert_eq!(query(None, None, None).expect("q").status().expect("none"), None);
        let err = query(None, None, Some("Running"))
            .expect("q")
            .status()
            .expect_err("case");
        assert!(err.message.starts_with("status must be"), "{}", err.message);
    }
}
