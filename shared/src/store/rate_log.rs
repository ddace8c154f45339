//! The sliding log both stores keep per rate-limit key: the times of the
//! last admissions, at most the limit's number of them.
//!
//! A request at `t` is admitted iff fewer than `max` admissions lie in
//! `(t - window, t]`; it is then recorded. So no interval of the window's
//! length ever holds more than `max` admissions, wherever it starts: unlike
//! fixed windows (which admit up to twice the limit across a boundary) or
//! GCRA (which admits a burst and then a steady rate, more than `max` in
//! some intervals). Admissions that have left the window are dropped, so a
//! log holds at most `max` times and an idle key's log empties itself.
//!
//! Stored as bytes: each time as 8 little-endian bytes of milliseconds since
//! the Unix epoch, oldest first. [`MAX_LIMIT`] keeps that under 80 KB, far
//! below a Firestore document's 1 MiB. The stores read the log, call
//! `decide` and write its answer back atomically (SQLite in the writer's
//! transaction, Firestore in a commit conditioned on the document's update
//! time); a refused request writes nothing.
//!
//! Instances compare their own clocks' times: across machines the limit is
//! exact up to their clock skew (milliseconds on Cloud Run).

use std::time::{Duration, SystemTime};

use super::Admission;
use crate::config::RateLimit;

/// The largest `max` a rate limit may have: its log is 8 bytes a request.
pub const MAX_LIMIT: u64 = 10_000;

/// What to do with one request, given its key's stored log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub admission: Admission,
    /// The log to store when admitted (`None`: refused, write nothing).
    pub log: Option<Vec<u8>>,
    /// When the stored log will hold nothing live: the key may then be
    /// deleted (Firestore TTL, SQLite sweep) without changing any answer.
    pub expire_at: SystemTime,
}

/// Decides a request at `now` against `stored` (a log as written by this
/// module; a trailing partial time is ignored, an empty slice is a new key).
pub(crate) fn decide(stored: &[u8], limit: RateLimit, now: SystemTime) -> Decision {
    let now_ms = millis(now);
    let window_ms = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX).max(1);
    let since = now_ms.saturating_sub(window_ms);
    let mut live: Vec<i64> = stored
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(i64::from_le_bytes))
        .filter(|&t| t > since)
        .collect();
    // Sorted already unless instances' clocks disagree; sorting keeps the
    // answers below right either way.
    live.sort_unstable();
    let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
    let leaves = |t: i64| at(t.saturating_add(window_ms));
    if live.len() < max {
        live.push(now_ms);
        live.sort_unstable();
        let log = live.iter().flat_map(|t| t.to_le_bytes()).collect();
        let newest = live.last().copied().unwrap_or(now_ms);
        Decision {
            admission: Admission {
                admitted: true,
                remaining: (max - live.len()) as u64,
                resets_at: leaves(live[0]),
            },
            log: Some(log),
            expire_at: leaves(newest),
        }
    } else {
        // A place frees when the oldest of the `max` newest leaves (more than
        // `max` are live only after the limit was lowered).
        let oldest_counted = live
            .len()
            .checked_sub(max.max(1))
            .and_then(|i| live.get(i))
            .copied()
            .unwrap_or(now_ms);
        let newest = live.last().copied().unwrap_or(now_ms);
        Decision {
            admission: Admission {
                admitted: false,
                remaining: 0,
                resets_at: leaves(oldest_counted),
            },
            log: None,
            expire_at: leaves(newest),
        }
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn at(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u64, secs: u64) -> RateLimit {
        RateLimit {
            max,
            window: Duration::from_secs(secs),
        }
    }

    /// Runs requests at the given milliseconds through one log.
    fn run(limit: RateLimit, times_ms: &[u64]) -> Vec<Admission> {
        let mut log = Vec::new();
        times_ms
            .iter()
            .map(|&ms| {
                let d = decide(&log, limit, SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                if let Some(new) = d.log {
                    log = new;
                }
                d.admission
            })
            .collect()
    }

    #[test]
    fn admits_the_limit_in_any_window_and_frees_places_as_they_leave() {
        let answers = run(
            limit(3, 10),
            &[1_000, 2_000, 3_000, 9_000, 10_999, 11_000, 11_500, 12_000],
        );
        let admitted: Vec<bool> = answers.iter().map(|a| a.admitted).collect();
        assert_eq!(admitted, [true, true, true, false, false, true, false, true]);
        assert_eq!(answers[0].remaining, 2);
        assert_eq!(answers[2].remaining, 0);
        let t = |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(
            answers[0].resets_at,
            t(11_000),
            "the oldest leaves a window after it came"
        );
        assert_eq!(answers[3].resets_at, t(11_000), "a refusal says when the oldest leaves");
        assert_eq!(answers[5].resets_at, t(12_000));
    }

    #[test]
    fn a_burst_across_a_clock_boundary_gets_no_more_than_the_limit() {
        // Fixed 60 s windows would admit 5 at 59.9 s and 5 more at 60.0 s.
        let mut times = vec![59_900; 5];
        times.extend([60_000; 5]);
        let admitted = run(limit(5, 60), &times).iter().filter(|a| a.admitted).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn refusals_write_nothing_and_old_times_are_dropped() {
        let l = limit(1, 1);
        let first = decide(&[], l, SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        let log = first.log.expect("admitted");
        assert_eq!(log.len(), 8);
        let refused = decide(&log, l, SystemTime::UNIX_EPOCH + Duration::from_millis(100_500));
        assert_eq!((refused.admission.admitted, refused.log), (false, None));
        let later = decide(&log, l, SystemTime::UNIX_EPOCH + Duration::from_secs(500));
        assert_eq!(later.log.map(|l| l.len()), Some(8), "the old time left the log");
        assert_eq!(later.expire_at, SystemTime::UNIX_EPOCH + Duration::from_secs(501));
    }

    #[test]
    fn a_lowered_limit_refuses_until_enough_have_left() {
        let log = run(limit(4, 10), &[0, 1_000, 2_000, 3_000]);
        assert!(log.iter().all(|a| a.admitted));
        let mut stored = Vec::new();
        for ms in [0u64, 1_000, 2_000, 3_000] {
            stored.extend((ms as i64).to_le_bytes());
        }
        let d = decide(
            &stored,
            limit(2, 10),
            SystemTime::UNIX_EPOCH + Duration::from_millis(4_000),
        );
        assert!(!d.admission.admitted);
        assert_eq!(
            d.admission.resets_at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(12_000),
            "two must leave before one of two places frees"
        );
        assert!(
            decide(&stored[..5], limit(2, 10), SystemTime::UNIX_EPOCH)
                .admission
                .admitted
        );
    }
}
