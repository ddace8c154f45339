//! Pages and listings on SQLite, each one range of an index read on a
//! reader connection, with one row more than the page to tell whether
//! another follows:
//!
//! - a session's messages after a sequence number: the primary key
//!   `(session_id, seq)` from that number on;
//! - a principal's sessions, last written first: `sessions_by_owner`
//!   `(owner, updated_at DESC, id DESC)`, from the cursor's position on;
//! - a principal's tasks, newest first: `tasks_by_owner` or, with a status,
//!   `tasks_by_owner_status`.
//!
//! A position is compared as `(time, key) < (its time, its key)`, written
//! as a range on the time (`<=`) and a filter on the ties, so the index
//! serves the range. Times are the milliseconds the rows hold.

use rusqlite::params;
use rusqlite::types::Value;

use super::sessions::row_to_message;
use super::tasks::{CREATED_AT_COLUMN, TASK_COLUMNS, row_to_task};
use super::usage::{TOTAL_COLUMNS, row_totals};
use super::{SqliteStore, from_millis, millis};
use crate::owned;
use crate::store::{
    Page, SessionPosition, SessionSummary, StoreError, StoredMessage, TaskPosition, TaskRecord, TaskStatus, Totals,
    rfc3339,
};

/// `limit + 1` as SQLite binds it: the extra row says that more follow.
fn read_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1).saturating_add(1)
}

impl SqliteStore {
    pub(super) async fn messages_page_now(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Page<StoredMessage, u64>, StoreError> {
        if limit == 0 {
            return Ok(Page::of(Vec::new(), 0, |m: &StoredMessage| m.seq));
        }
        let session_id = session_id.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT seq, role, content, created_at FROM messages
                     WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![session_id, after, read_limit(limit)], row_to_message)?
                .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(Page::of(rows, limit, |m| m.seq))
    }

    pub(super) async fn list_sessions_now(
        &self,
        owner: &str,
        after: Option<&SessionPosition>,
        limit: usize,
    ) -> Result<Page<SessionSummary, SessionPosition>, StoreError> {
        let key_owner = owned::key_owner(owner);
        let after = after.map(|p| (millis(p.updated_at), owned::session_key(owner, &p.id)));
        let rows = self
            .read(move |conn| {
                type Row = (String, i64, i64, i64, Totals);
                let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Row> {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row_totals(row, 4)?))
                };
                let columns = format!("SELECT id, next_seq, created_at, updated_at, {TOTAL_COLUMNS} FROM sessions");
                let columns = columns.as_str();
                match after {
                    None => conn
                        .prepare_cached(&format!(
                            "{columns} WHERE owner = ?1 ORDER BY updated_at DESC, id DESC LIMIT ?2"
                        ))?
                        .query_map(params![key_owner, read_limit(limit)], read)?
                        .collect::<Result<Vec<_>, _>>(),
                    Some((updated_at, key)) => conn
                        .prepare_cached(&format!(
                            "{columns} WHERE owner = ?1 AND updated_at <= ?2 AND (updated_at < ?2 OR id < ?3)
                             ORDER BY updated_at DESC, id DESC LIMIT ?4"
                        ))?
                        .query_map(params![key_owner, updated_at, key, read_limit(limit)], read)?
                        .collect::<Result<Vec<_>, _>>(),
                }
            })
            .await?;
        let listed: Vec<(SessionSummary, i64)> = rows
            .into_iter()
            .map(|(key, next_seq, created_at, updated_at, usage)| {
                let summary = SessionSummary {
                    id: owned::split_key(&key).1.to_string(),
                    message_count: u64::try_from(next_seq - 1).unwrap_or(0),
                    created_at: rfc3339(from_millis(created_at)),
                    updated_at: rfc3339(from_millis(updated_at)),
                    usage,
                };
                (summary, updated_at)
            })
            .collect();
        let page = Page::of(listed, limit, |(s, updated_at)| SessionPosition {
            updated_at: from_millis(*updated_at),
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
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE owner = ?1");
        let mut values = vec![Value::from(owner.to_string())];
        if let Some(status) = status {
            values.push(Value::from(status.as_str().to_string()));
            sql.push_str(&format!(" AND status = ?{}", values.len()));
        }
        if let Some(after) = after {
            values.push(Value::from(millis(after.created_at)));
            let at = values.len();
            values.push(Value::from(after.task_id.clone()));
            let id = values.len();
            sql.push_str(&format!(
                " AND created_at <= ?{at} AND (created_at < ?{at} OR id < ?{id})"
            ));
        }
        values.push(Value::from(read_limit(limit)));
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ?{}", values.len()));
        let rows = self
            .read(move |conn| {
                conn.prepare_cached(&sql)?
                    .query_map(rusqlite::params_from_iter(values), |row| {
                        Ok((row_to_task(row)?, row.get::<_, i64>(CREATED_AT_COLUMN)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let page = Page::of(rows, limit, |(task, created_at)| TaskPosition {
            created_at: from_millis(*created_at),
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
    use rusqlite::Connection;

    use super::super::MIGRATIONS;
    use super::*;
    use crate::llm::Role;
    use crate::store::{NewMessage, SessionStore, TaskStore};

    /// Sessions stored before owners were kept get theirs from their keys.
    #[tokio::test]
    async fn migration_6_takes_each_sessions_owner_from_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v5.db");
        let conn = Connection::open(&path).expect("open");
        for (i, sql) in MIGRATIONS.iter().take(5).enumerate() {
            conn.execute_batch(sql)
                .unwrap_or_else(|e| panic!("migration {}: {e}", i + 1));
        }
        conn.pragma_update(None, "user_version", 5).expect("version 5");
        let keys = [
            owned::session_key("anonymous", "old"),
            owned::session_key("key:alice", "old"),
            owned::session_key("firebase:a~b/c", "x"),
        ];
        for (i, key) in keys.iter().enumerate() {
            conn.execute(
                "INSERT INTO sessions (id, created_at, updated_at, next_seq) VALUES (?1, ?2, ?2, 3)",
                params![key, 1000 + i as i64],
            )
            .expect("a session of version 5");
        }
        drop(conn);
        let store = SqliteStore::open(&path).await.expect("migrates");
        for (owner, id) in [("anonymous", "old"), ("key:alice", "old"), ("firebase:a~b/c", "x")] {
            let page = store.list_sessions(owner, None, 10).await.expect("list");
            let ids: Vec<_> = page.items.iter().map(|s| (s.id.as_str(), s.message_count)).collect();
            assert_eq!(ids, [(id, 2)], "{owner}");
        }
    }

    /// Each listing is a search of its index, never a scan of the table
    /// nor a sort.
    #[tokio::test]
    async fn listings_read_their_index_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("plan.db")).await.expect("open");
        let turn = [NewMessage {
            role: Role::User,
            content: "q".into(),
        }];
        store.append("key:a~s", &turn).await.expect("append");
        assert_eq!(store.list_tasks("key:a", None, None, 1).await.expect("tasks").items, []);
        let plans = store
            .read(|conn| {
                let plan = |sql: &str| -> rusqlite::Result<String> {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?.join("; "))
                };
                Ok([
                    plan("SELECT id FROM sessions WHERE owner = 'a' AND updated_at <= 5 AND (updated_at < 5 OR id < 'x') ORDER BY updated_at DESC, id DESC LIMIT 3")?,
                    plan("SELECT id FROM tasks WHERE owner = 'a' ORDER BY created_at DESC, id DESC LIMIT 3")?,
                    plan("SELECT id FROM tasks WHERE owner = 'a' AND status = 'queued' AND created_at <= 5 AND (created_at < 5 OR id < 'x') ORDER BY created_at DESC, id DESC LIMIT 3")?,
                ])
            })
            .await
            .expect("plans");
        for plan in plans {
            let searched = plan.starts_with("SEARCH") && plan.contains("_by_owner");
            assert!(searched && !plan.contains("TEMP B-TREE"), "{plan}");
        }
    }
}
