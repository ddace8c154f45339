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
///
/// Written digit by digit rather than through `time`'s format descriptions,
/// which cost ten times as much: a chat turn formats the times of the 22
/// messages it reads and writes. The text is the same as `time` writes
/// (the fraction truncated, a time before 1970 counted back from it), and a
/// year past 9999, which `time` cannot hold, is written whole instead of
/// panicking.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let (seconds, millis) = seconds_and_millis(t);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400) as u32);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    if year < 0 {
        out.push('-');
    }
    let year = year.unsigned_abs();
    if year < 10_000 {
        push_digits(&mut out, year as u32, 4);
    } else {
        out.push_str(&year.to_string());
    }
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push('T');
    push_digits(&mut out, second_of_day / 3600, 2);
    out.push(':');
    push_digits(&mut out, second_of_day / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, second_of_day % 60, 2);
    out.push('.');
    push_digits(&mut out, millis, 3);
    out.push('Z');
    out
}

/// The whole seconds since 1970 and the milliseconds past them, floored as
/// `time` does (1 ns before 1970 is -1 s and 999 ms), in 64 bits: 128-bit
/// division is a call into the compiler's runtime.
fn seconds_and_millis(t: SystemTime) -> (i64, u32) {
    let whole = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => (whole(after.as_secs()), after.subsec_millis()),
        Err(before) => {
            let before = before.duration();
            let seconds = -whole(before.as_secs());
            match before.subsec_nanos().div_ceil(1_000_000) {
                0 => (seconds, 0),
                1000 => (seconds - 1, 0),
                up => (seconds - 1, 1000 - up),
            }
        }
    }
}

/// `n`'s last `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`): eras of 400 years,
/// each of 146,097 days, with years starting on 1 March so that the leap
/// day ends them.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `rfc3339` wrote before it was written by hand.
    fn with_time(t: SystemTime) -> String {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        time::OffsetDateTime::from(t).format(&format).expect("formats")
    }

    fn at(seconds: i64, nanos: u32) -> SystemTime {
        let whole = Duration::from_secs(seconds.unsigned_abs());
        let t = if seconds < 0 {
            SystemTime::UNIX_EPOCH - whole
        } else {
            SystemTime::UNIX_EPOCH + whole
        };
        t + Duration::from_nanos(u64::from(nanos))
    }

    #[test]
    fn rfc3339_writes_what_the_time_crate_writes() {
        // Years 1 and 9999, 1900 and 2100 (not leap years), 2000 (one),
        // the epoch and the instants around it, midnights and leap days.
        let edges = [
            (0, 0),
            (0, 1),
            (0, 999_999),
            (0, 1_000_000),
            (-1, 0),
            (-1, 999_999_999),
            (-1, 999_000_001),
            (-2, 500_000),
            (-2, 1_000_000),
            (-62_135_596_800, 0),
            (253_402_300_799, 999_999_999),
            (951_782_400, 0),
            (951_868_799, 999_000_000),
            (-2_203_891_200, 0),
            (-2_208_988_800, 0),
            (4_107_456_000, 0),
            (4_107_542_399, 0),
            (1_764_547_200, 123_456_789),
            (-377_705_116_800, 0),
        ];
        for (seconds, nanos) in edges {
            let t = at(seconds, nanos);
            assert_eq!(rfc3339(t), with_time(t), "{seconds} s {nanos} ns");
        }
        // And instants spread over years -9999 to 9999, by a fixed
        // pseudo-random walk.
        let (low, high) = (-377_705_116_800_i64, 253_402_300_799_i64);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let seconds = low + (state >> 11) as i64 % (high - low);
            let nanos = (state % 1_000_000_000) as u32;
            let t = at(seconds, nanos);
            assert_eq!(rfc3339(t), with_time(t), "{seconds} s {nanos} ns");
        }
    }

    #[test]
    fn a_year_beyond_9999_either_way_is_written_whole() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(i64::MAX as u64);
        assert_eq!(rfc3339(t), "292278994-08-17T07:12:55.807Z");
        assert_eq!(rfc3339(at(253_402_300_800, 0)), "10000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(-377_705_116_801, 0)), "-10000-12-31T23:59:59.000Z");
        assert!(rfc3339(at(-i64::MAX, 1)).ends_with("T08:29:53.000Z"));
    }
}
