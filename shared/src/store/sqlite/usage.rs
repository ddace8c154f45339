//! Usage on SQLite (migrations 8 and 9): a session row's own columns hold its
//! totals, and `usage_days` a row per `(owner, day, model)`. Both are added
//! to inside the write that stores what they count (an append, a finish),
//! on the writer thread under the file's write lock: processes sharing the
//! file take turns, so every addition lands exactly once.

use async_trait::async_trait;
use std::sync::LazyLock;

use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};

use super::SqliteStore;
use crate::owned;
use crate::store::usage::{MAX_USAGE_RECORDS, TOTAL_FIELDS};
use crate::store::{Charge, DayUsage, StoreError, Totals, UsageStore};

/// The total columns, in the order of `Totals::fields`, on the session row
/// and the day row alike (migrations 8 and 9).
pub(super) const TOTAL_COLUMNS: &str = "input_tokens, output_tokens, cached_tokens, thinking_tokens, model_calls, \
     cost_pico, unpriced_calls, requests, cache_hits, saved_pico, unpriced_hits";

/// The totals in the [`TOTAL_FIELDS`] columns from `first` on (as
/// [`TOTAL_COLUMNS`]).
pub(super) fn row_totals(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    let mut values = [0i64; TOTAL_FIELDS];
    for (i, value) in values.iter_mut().enumerate() {
        *value = row.get(first + i)?;
    }
    Ok(Totals::from_fields(values))
}

/// `column = column + ?N, ...` for every total, the first bound as `?first`.
fn additions(first: usize) -> String {
    Totals::default()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{column} = {column} + ?{}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the totals (`?2` on) to the session row `?1`.
static CHARGE_SESSION: LazyLock<String> =
    LazyLock::new(|| format!("UPDATE sessions SET {} WHERE id = ?1", additions(2)));

/// Creates or adds to the day row `(?1, ?2, ?3)` the totals (`?4` on).
static CHARGE_DAY: LazyLock<String> = LazyLock::new(|| {
    let values = (4..4 + TOTAL_FIELDS)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO usage_days (owner, day, model, {TOTAL_COLUMNS}) VALUES (?1, ?2, ?3, {values})
         ON CONFLICT (owner, day, model) DO UPDATE SET {}",
        additions(4)
    )
});

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
    conn.prepare_cached(&CHARGE_SESSION)?.execute(params_from_iter(
        std::iter::once(Value::from(session_id.to_string())).chain(add.into_iter().map(Value::from)),
    ))?;
    charge_day(conn, owner, charge)
}

/// Adds `charge` to `owner`'s row for its day and model, creating it: one
/// upsert, part of the caller's write.
pub(super) fn charge_day(conn: &Connection, owner: &str, charge: &Charge) -> rusqlite::Result<()> {
    let add = charge.totals().fields().map(|(_, v)| v);
    let keys = [owner, &charge.day, &charge.model].map(|key| Value::from(key.to_string()));
    conn.prepare_cached(&CHARGE_DAY)?.execute(params_from_iter(
        keys.into_iter().chain(add.into_iter().map(Value::from)),
    ))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_are_the_totals_fields_in_order() {
        let fields: Vec<&str> = Totals::default().fields().iter().map(|(name, _)| *name).collect();
        let columns: Vec<&str> = TOTAL_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(columns, fields);
    }
}
