//! [`MemoryStore`] on SQLite: one `memories` row per session and
//! normalised key (trimmed, lower case), so that keys differing only in case
//! are one fact, with the key kept as last written.
//!
//! Remembering is one upsert on the writer thread: a new fact takes the
//! session's next `seq` (its largest plus one) in the same statement, which
//! orders facts as they were first told even within one millisecond; a
//! known one keeps its `seq` and changes its value.

use std::time::SystemTime;

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, from_millis, millis};
use crate::store::{MemoryEntry, MemoryStore, StoreError, rfc3339};

/// Memory keys compare without case or surrounding space.
fn normalise_key(key: &str) -> String {
    key.trim().to_lowercase()
}

fn row_to_memory(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryEntry> {
    Ok(MemoryEntry {
        key: row.get(0)?,
        value: row.get(1)?,
        updated_at: rfc3339(from_millis(row.get(2)?)),
    })
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn remember(&self, session_id: &str, key: &str, value: &str) -> Result<MemoryEntry, StoreError> {
        let (session_id, key, value) = (session_id.to_string(), key.trim().to_string(), value.to_string());
        self.write(move |conn| {
            let now = SystemTime::now();
            conn.execute(
                // `seq` orders a session's facts as they were first told (two
                // facts in one millisecond would tie on a timestamp).
                "INSERT INTO memories (session_id, key_norm, key, value, seq, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM memories WHERE session_id = ?1), ?5, ?5)
                 ON CONFLICT (session_id, key_norm) DO UPDATE SET key = ?3, value = ?4, updated_at = ?5",
                params![session_id, normalise_key(&key), key, value, millis(now)],
            )?;
            Ok(MemoryEntry {
                key,
                value,
                updated_at: rfc3339(now),
            })
        })
        .await
    }

    async fn recall(&self, session_id: &str, key: Option<&str>, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        let session_id = session_id.to_string();
        let key = key.map(normalise_key);
        self.read(move |conn| match key {
            Some(key) => {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, value, updated_at FROM memories WHERE session_id = ?1 AND key_norm = ?2",
                )?;
                stmt.query_map(params![session_id, key], row_to_memory)?.collect()
            }
            None => {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, value, updated_at FROM memories WHERE session_id = ?1 ORDER BY seq LIMIT ?2",
                )?;
                stmt.query_map(params![session_id, limit as i64], row_to_memory)?
                    .collect()
            }
        })
        .await
    }
}
