//! The times the stores keep and the API shows: RFC 3339 text in UTC to
//! the millisecond, and the whole seconds and milliseconds the backends
//! store.

use std::time::{Duration, SystemTime};

use super::StoreError;

/// Seconds since the Unix epoch, saturating at 0 for a clock before 1970.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with millisecond precision, as every timestamp in the API.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

/// `t` without its fraction of a millisecond.
pub(crate) fn whole_millis(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => t
            .checked_sub(Duration::from_nanos(u64::from(d.subsec_nanos() % 1_000_000)))
            .unwrap_or(t),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// The time of a task event: its `created_at` when given, else now.
pub(crate) fn event_time(created_at: &str) -> Result<SystemTime, StoreError> {
    if created_at.is_empty() {
        return Ok(whole_millis(SystemTime::now()));
    }
    time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .map(|t| whole_millis(SystemTime::from(t)))
        .map_err(|e| StoreError::Internal(format!("an event's created_at {created_at:?} is not RFC 3339: {e}")))
}
