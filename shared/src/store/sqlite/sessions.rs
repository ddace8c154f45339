//! [`SessionStore`] on SQLite: a `sessions` row per session holds the
//! counter (`next_seq`) that numbers its messages, and each message is a
//! `messages` row under the primary key `(session_id, seq)`.
//!
//! An append reserves its sequence numbers with one upsert of the session
//! row and inserts its messages in the same write: on the writer thread,
//! under the file's write lock, so a turn is stored whole or not at all and
//! never interleaves with another, whichever process appends. `recent` is
//! one backwards range scan of the primary key with a limit, so it costs
//! O(limit) however long the session; `messages` checks the session and
//! reads its rows in one read transaction, so the two agree. A charged
//! append adds what the turn spent to the row's totals in the same write
//! (`usage`).

use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::usage::{SESSION_UPSERT, charge_day};
use super::{SqliteStore, from_millis, millis, run};
use crate::llm::Role;
use crate::owned;
use crate::store::{
    Charge, NewMessage, Page, SessionPosition, SessionStore, SessionSummary, StoreError, StoredMessage, Totals, rfc3339,
};

/// The history read: the last `?2` messages of session `?1`, newest first.
const RECENT: &str =
    "SELECT seq, role, content, created_at FROM messages WHERE session_id = ?1 ORDER BY seq DESC LIMIT ?2";

fn role_from(s: &str) -> Role {
    if s == "model" { Role::Model } else { Role::User }
}

pub(super) fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        seq: row.get::<_, i64>(0)? as u64,
        // Read in place: a String per row only to compare it.
        role: role_from(row.get_ref(1)?.as_str()?),
        content: row.get(2)?,
        created_at: rfc3339(from_millis(row.get(3)?)),
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn append_charged(
        &self,
        session_id: &str,
        messages: &[NewMessage],
        charge: Option<&Charge>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let session_id = session_id.to_string();
        let owner = owned::split_key(&session_id).0;
        let messages = messages.to_vec();
        let charge = charge.cloned();
        self.write(move |conn| {
            let now = SystemTime::now();
            let now_ms = millis(now);
            let n = messages.len() as i64;
            // Reserve n sequence numbers in the session row; the writer
            // thread and the file's write lock make the reservation atomic.
            // The turn's totals are added in the same statement: in the
            // same write, they count exactly the turns stored.
            let totals = charge.as_ref().map(Charge::sum).unwrap_or_default();
            let first: i64 = conn.prepare_cached(&SESSION_UPSERT)?.query_row(
                params_from_iter(
                    [
                        Value::from(session_id.clone()),
                        Value::from(now_ms),
                        Value::from(n),
                        Value::from(owner.to_string()),
                    ]
                    .into_iter()
                    .chain(totals.fields().map(|(_, v)| Value::from(v))),
                ),
                |r| r.get(0),
            )?;
            let mut stored = Vec::with_capacity(messages.len());
            {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO messages (session_id, seq, role, content, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (i, m) in messages.into_iter().enumerate() {
                    let seq = first + i as i64;
                    insert.execute(params![session_id, seq, m.role.as_str(), m.content, now_ms])?;
                    stored.push(StoredMessage {
                        seq: seq as u64,
                        role: m.role,
                        content: m.content,
                        created_at: rfc3339(now),
                    });
                }
            }
            // And the owner's day, in the same write too.
            if let Some(charge) = &charge {
                charge_day(conn, &owner, charge)?;
            }
            Ok(stored)
        })
        .await
    }

    async fn totals(&self, session_id: &str) -> Result<Option<Totals>, StoreError> {
        self.session_totals(session_id).await
    }

    async fn recent(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let session_id = session_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(RECENT)?;
            let mut rows: Vec<StoredMessage> = stmt
                .query_map(params![session_id, limit as i64], row_to_message)?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            Ok(rows)
        })
        .await
    }

    async fn messages(&self, session_id: &str) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let session_id = session_id.to_string();
        self.read(move |conn| {
            // One read transaction, so the existence check and the rows agree.
            run(conn, "BEGIN")?;
            let result = (|| {
                let exists = conn
                    .query_row("SELECT 1 FROM sessions WHERE id = ?1", [&session_id], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    return Ok(None);
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, role, content, created_at FROM messages WHERE session_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map([&session_id], row_to_message)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(rows))
            })();
            run(conn, "COMMIT")?;
            result
        })
        .await
    }

    async fn delete(&self, session_id: &str) -> Result<bool, StoreError> {
        let session_id = session_id.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM messages WHERE session_id = ?1", [&session_id])?;
            let deleted = conn.execute("DELETE FROM sessions WHERE id = ?1", [&session_id])?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn messages_page(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Page<StoredMessage, u64>, StoreError> {
        self.messages_page_now(session_id, after, limit).await
    }

    async fn list_sessions(
        &self,
        owner: &str,
        after: Option<&SessionPosition>,
        limit: usize,
    ) -> Result<Page<SessionSummary, SessionPosition>, StoreError> {
        self.list_sessions_now(owner, after, limit).await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// A turn's history read reuses its compiled statement: SQLite compiles
    /// it again only when a bound value may change its plan, which a
    /// connection with the planner's stability guarantee rules out.
    #[tokio::test]
    async fn the_history_read_is_compiled_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("h.db")).await.expect("open");
        for (session, limit) in [("a", 20), ("b", 2), ("a", 20), ("b", 20)] {
            let turn = [NewMessage {
                role: Role::User,
                content: "q".into(),
            }];
            store.append(session, &turn).await.expect("append");
            store.recent(session, limit).await.expect("recent");
        }
        let recompiled = store
            .read(|conn| Ok(conn.prepare_cached(RECENT)?.get_status(StatementStatus::RePrepare)))
            .await
            .expect("status");
        assert_eq!(recompiled, 0);
    }
}
