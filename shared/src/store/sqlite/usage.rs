//! Usage on SQLite (migration 8): a session row's own columns hold its
//! totals, and `usage_days` a row per `(owner, day, model)`. Both are added
//! to inside the write that stores what they count (an append, a finish),
//! on the writer thread under the file's write lock: processes sharing the
//! file take turns, so every addition lands exactly once.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::owned;
use crate::store::{Charge, DayUsage, StoreError, Totals, UsageStore, usage::MAX_USAGE_RECORDS};

/// The total columns, in the order of `Totals::fields`, on the session row
/// and the day row alike.
pub(super) const TOTAL_COLUMNS: &str =
    "input_tokens, output_tokens, cached_tokens, thinking_tokens, model_calls, cost_pico, unpriced_calls";

/// The totals in the 7 columns from `first` on (as [`TOTAL_COLUMNS`]).
pub(super) fn row_totals(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    let mut values = [0i64; 7];
    for (i, value) in values.iter_mut().enumerate() {
        *value = row.get(first + i)?;
    }
    Ok(Totals::from_fields(values))
}

/// Adds `charge` to the session row `session_id` (which the same write
/// created or updated) and to its owner's day row: part of the caller's
/// write, so of its atomic step.
pub(super) fn charge_session(
    conn: &Connection,
    session_id: &str,
    owner: &str,
    charge: &Charge,
) -> rusqlite::Result<()> {
    let add = charge.totals().fields().map(|(_, v)| v);
    conn.prepare_cached(
        "UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3,
            cached_tokens = cached_tokens + ?4, thinking_tokens = thinking_tokens + ?5,
            model_calls = model_calls + ?6, cost_pico = cost_pico + ?7, unpriced_calls = unpriced_calls + ?8
         WHERE id = ?1",
    )?
    .execute(params![
        session_id, add[0], add[1], add[2], add[3], add[4], add[5], add[6]
    ])?;
    charge_day(conn, owner, charge)
}

/// Adds `charge` to `owner`'s row for its day and model, creating it: one
/// upsert, part of the caller's write.
pub(super) fn charge_day(conn: &Connection, owner: &str, charge: &Charge) -> rusqlite::Result<()> {
    let add = charge.totals().fields().map(|(_, v)| v);
    conn.prepare_cached(&format!(
        "INSERT INTO usage_days (owner, day, model, {TOTAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (owner, day, model) DO UPDATE SET
            input_tokens = input_tokens + ?4, output_tokens = output_tokens + ?5,
            cached_tokens = cached_tokens + ?6, thinking_tokens = thinking_tokens + ?7,
            model_calls = model_calls + ?8, cost_pico = cost_pico + ?9, unpriced_calls = unpriced_calls + ?10"
    ))?
    .execute(params![
        owner,
        charge.day,
        charge.model,
        add[0],
        add[1],
        add[2],
        add[3],
        add[4],
        add[5],
        add[6]
    ])?;
    Ok(())
}

impl SqliteStore {
    pub(super) async fn session_totals(&self, session_id: &str) -> Result<Option<Totals>, StoreError> {
        let session_id = session_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {TOTAL_COLUMNS} FROM sessions WHERE id = ?1"))?;
            let mut rows = stmt.query_map([&session_id], |row| row_totals(row, 0))?;
            rows.next().transpose()
        })
        .await
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn usage(&self, owner: &str, from: &str, to: &str) -> Result<Vec<DayUsage>, StoreError> {
        let (owner, from, to) = (owned::key_owner(owner), from.to_string(), to.to_string());
        self.read(move |conn| {
            // One range of the primary key `(owner, day, model)`.
            conn.prepare_cached(&format!(
                "SELECT day, model, {TOTAL_COLUMNS} FROM usage_days
                 WHERE owner = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, model LIMIT ?4"
            ))?
            .query_map(params![owner, from, to, MAX_USAGE_RECORDS as i64], |row| {
                Ok(DayUsage {
                    date: row.get(0)?,
                    model: row.get(1)?,
                    totals: row_totals(row, 2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .await
    }
}
