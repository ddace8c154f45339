//! Usage on SQLite (migrations 8 and 9): a session row's own columns hold its
//! totals, and `usage_days` a row per `(owner, day, model)`. Both are added
//! to inside the write that stores what they count (an append, a finish),
//! on the writer thread under the file's write lock: processes sharing the
//! file take turns, so every addition lands exactly once.
//!
//! A turn's session totals ride in the append's own upsert of the session
//! row ([`SESSION_UPSERT`]). Its day charge is deferred to the end of the
//! writer's group commit ([`charge_day`]): the batch's charges are summed
//! per `(owner, day, model)` and upserted once each, just before `COMMIT`,
//! in the same transaction. With many turns of one principal in a batch,
//! that is one upsert of one row instead of one per turn, on the one
//! thread that bounds throughput. A write that fails gives back its
//! deferred charges with its savepoint (`writer`).

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

/// Creates the session row `?1` (created and updated at `?2`, owned by
/// `?4`) or updates it, reserving `?3` sequence numbers and adding the
/// totals (`?5` on); returns the first number reserved.
pub(super) static SESSION_UPSERT: LazyLock<String> = LazyLock::new(|| {
    let values = (5..5 + TOTAL_FIELDS)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO sessions (id, created_at, updated_at, next_seq, owner, {TOTAL_COLUMNS})
         VALUES (?1, ?2, ?2, ?3 + 1, ?4, {values})
         ON CONFLICT (id) DO UPDATE SET next_seq = next_seq + ?3, updated_at = ?2, {}
         RETURNING next_seq - ?3",
        additions(5)
    )
});

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

/// Adds `charge` to `owner`'s row for its day and model, creating it, as
/// part of the caller's write: deferred to the end of the writer's group
/// commit when there is one (see the module's doc), else upserted now.
pub(super) fn charge_day(conn: &Connection, owner: &str, charge: &Charge) -> rusqlite::Result<()> {
    for (model, totals) in charge.day_rows() {
        let day = DayKey {
            owner: owner.to_string(),
            day: charge.day.clone(),
            model: model.to_string(),
        };
        if let Some((day, totals)) = super::writer::defer_day_charge(day, totals) {
            upsert_day(conn, &day, &totals)?;
        }
    }
    Ok(())
}

/// Which day row a charge adds to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DayKey {
    pub(super) owner: String,
    pub(super) day: String,
    pub(super) model: String,
}

/// One upsert of a day row: the sum of a batch's charges to it.
pub(super) fn upsert_day(conn: &Connection, day: &DayKey, totals: &Totals) -> rusqlite::Result<()> {
    let add = totals.fields().map(|(_, v)| v);
    let keys = [&day.owner, &day.day, &day.model].map(|key| Value::from(key.clone()));
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
