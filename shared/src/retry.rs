//! The pieces every retry loop in the crate shares: exponential backoff with
//! a cap and jitter, `Retry-After` parsing, and error chains for messages.
//!
//! Model calls ([`crate::llm::retry`]), webhook deliveries
//! ([`crate::webhook`]) and Firestore compare-and-set commits each retry
//! with their own constants and their own rules for what is worth another
//! try; those stay with them. What they had each written for themselves
//! (three jitter functions with three sources of randomness, two
//! `Retry-After` parsers that disagreed on HTTP dates, several loops over
//! `Error::source`) is here once, so a fix reaches every site.

use std::error::Error;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

/// How a backoff spreads the wait below its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    /// Half fixed, half random: the wait is in [ceiling / 2, ceiling]. For
    /// retries after a refusal, where coming back too soon is refused again.
    Equal,
    /// Wholly random: the wait is in [0, ceiling]. For writers that
    /// collided, which only need to stop colliding.
    Full,
}

/// Exponential backoff: retry number `n` (0 for the first retry) waits up to
/// `first * 2^n`, at most `max`, spread by [`Jitter`] so that many clients
/// refused together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, max: Duration, jitter: Jitter) -> Self {
        Backoff { first, max, jitter }
    }

    /// The longest wait before retry `retry` (from 0): `first * 2^retry`,
    /// at most `max`.
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        self.first.saturating_mul(1u32 << retry.min(31)).min(self.max)
    }

    /// The shortest and the longest wait before retry `retry` (from 0).
    pub(crate) fn bounds(&self, retry: u32) -> (Duration, Duration) {
        let ceiling = self.ceiling(retry);
        match self.jitter {
            Jitter::Equal => (ceiling / 2, ceiling),
            Jitter::Full => (Duration::ZERO, ceiling),
        }
    }

    /// The wait before retry `retry` (from 0), with fresh randomness.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        self.delay_at(retry, unit_random())
    }

    /// The wait before retry `retry` (from 0) for a given draw `unit` in
    /// [0, 1] (clamped; NaN counts as 0): `lower + (upper - lower) * unit`
    /// of [`Self::bounds`].
    pub(crate) fn delay_at(&self, retry: u32, unit: f64) -> Duration {
        let (lower, upper) = self.bounds(retry);
        let unit = if unit.is_nan() { 0.0 } else { unit.clamp(0.0, 1.0) };
        let span = upper - lower;
        // `mul_f64` would panic where the product rounds past `Duration::MAX`.
        let part = Duration::try_from_secs_f64(span.as_secs_f64() * unit).unwrap_or(span);
        lower.saturating_add(part).min(upper)
    }
}

/// A number in [0, 1) that differs from call to call. Not cryptographic: it
/// only spreads retries. The standard library's hasher keys are random per
/// process (so instances started together still differ) and change with
/// every `RandomState`, which is all jitter needs.
pub(crate) fn unit_random() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A `Retry-After` value (RFC 9110 section 10.2.3): delay seconds, or an
/// HTTP date, where a date in the past means "now". Fractional seconds are
/// accepted (some proxies send them); a negative or unreadable value is
/// `None`, so the caller falls back to its backoff. At most `cap`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds_to_duration(seconds).map(|wait| wait.min(cap));
    }
    let date = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = date - time::OffsetDateTime::from(now);
    Some(if wait.is_positive() {
        wait.unsigned_abs().min(cap)
    } else {
        Duration::ZERO
    })
}

/// The `Retry-After` header of a response, read now, at most `cap`.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now(), cap))
}

/// A number of seconds as a duration: `None` when negative or not finite,
/// at most a billion seconds (so a silly hint cannot overflow a deadline).
pub(crate) fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

/// `err` and then each of its causes, outermost first.
pub(crate) fn causes<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |err: &&'a (dyn Error + 'static)| (*err).source())
}

/// An error with its causes, joined by ": " ("error sending request:
/// connection refused"): reqwest's own message alone rarely says what went
/// wrong. A cause whose text is already in the message is left out, since
/// many errors repeat their source's text.
pub(crate) fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    for cause in causes(err).skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_grows_per_attempt_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30), Jitter::Equal);
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(8), Duration::from_millis(25_600));
        assert_eq!(b.ceiling(9), Duration::from_secs(30));
        for retry in [40, 1000, u32::MAX] {
            assert_eq!(b.ceiling(retry), Duration::from_secs(30), "retry {retry}");
        }
        for retry in 0..40 {
            assert!(b.ceiling(retry) <= b.ceiling(retry + 1), "retry {retry}");
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX, Jitter::Equal);
        assert_eq!(huge.ceiling(5), Duration::MAX);
        assert!(huge.delay(5) >= Duration::MAX / 2);
        let huge_full = Backoff {
            jitter: Jitter::Full,
            ..huge
        };
        assert_eq!(huge_full.delay_at(5, 1.0), Duration::MAX);
        let zero = Backoff::new(Duration::ZERO, Duration::from_secs(1), Jitter::Full);
        assert_eq!(zero.delay(3), Duration::ZERO);
    }

    #[test]
    fn jitter_draws_stay_within_the_bounds() {
        let first = Duration::from_millis(20);
        let max = Duration::from_secs(1);
        let equal = Backoff::new(first, max, Jitter::Equal);
        let full = Backoff::new(first, max, Jitter::Full);
        for retry in 0..40 {
            let ceiling = equal.ceiling(retry);
            assert_eq!(equal.bounds(retry), (ceiling / 2, ceiling));
            assert_eq!(full.bounds(retry), (Duration::ZERO, ceiling));
            for backoff in [equal, full] {
                let (lower, upper) = backoff.bounds(retry);
                for _ in 0..200 {
                    let d = backoff.delay(retry);
                    assert!(
                        lower <= d && d <= upper,
                        "retry {retry}: {d:?} not in [{lower:?}, {upper:?}]"
                    );
                }
            }
        }
        let samples: std::collections::HashSet<Duration> = (0..50).map(|_| full.delay(5)).collect();
        assert!(samples.len() > 1, "jitter varies");
    }

    #[test]
    fn a_given_draw_maps_onto_the_bounds() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30), Jitter::Equal);
        assert_eq!(b.delay_at(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay_at(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay_at(2, 0.5), Duration::from_millis(300));
        assert_eq!(b.delay_at(0, -3.0), Duration::from_millis(50));
        assert_eq!(b.delay_at(0, 7.0), Duration::from_millis(100));
        assert_eq!(b.delay_at(0, f64::NAN), Duration::from_millis(50));
        let f = Backoff {
            jitter: Jitter::Full,
            ..b
        };
        assert_eq!(f.delay_at(1, 0.0), Duration::ZERO);
        assert_eq!(f.delay_at(1, 0.25), Duration::from_millis(50));
    }

    #[test]
    fn unit_random_is_in_the_unit_interval() {
        for _ in 0..1000 {
            let unit = unit_random();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("0", now, HOUR), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 3 ", now, HOUR), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("1.5", now, HOUR), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-5", now, HOUR), None);
        assert_eq!(parse_retry_after("-0.5", now, HOUR), None);
        assert_eq!(parse_retry_after("NaN", now, HOUR), None);
        assert_eq!(parse_retry_after("inf", now, HOUR), None);
        assert_eq!(parse_retry_after("", now, HOUR), None);
        assert_eq!(parse_retry_after("soon", now, HOUR), None);
        assert_eq!(parse_retry_after("5 seconds", now, HOUR), None);
        // Huge values are capped, never an overflow.
        assert_eq!(parse_retry_after("7200", now, HOUR), Some(HOUR));
        assert_eq!(parse_retry_after("99999999999999999999999", now, HOUR), Some(HOUR));
        assert_eq!(
            parse_retry_after("1e300", now, Duration::MAX),
            Some(Duration::from_secs(1_000_000_000))
        );
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now, HOUR),
            Some(Duration::from_secs(10))
        );
        // In the past: now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now, HOUR),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now, HOUR),
            Some(Duration::ZERO)
        );
        // Far ahead: capped.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 09:27:50 GMT", now, HOUR),
            Some(HOUR)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now, Duration::from_secs(60)),
            Some(Duration::from_secs(60))
        );
        // Not a date.
        assert_eq!(parse_retry_after("Wed, 32 Oct 2015 07:28:00 GMT", now, HOUR), None);
        assert_eq!(parse_retry_after("2015-10-21T07:28:00Z", now, HOUR), None);
    }

    #[test]
    fn retry_after_from_headers() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, HOUR), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, HOUR), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers, Duration::from_secs(2)),
            Some(Duration::from_secs(2))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers, HOUR), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("later"));
        assert_eq!(retry_after(&headers, HOUR), None);
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn error_chains_join_causes_once() {
        let err = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer(
                    "Connect",
                    Some(Box::new(Layer("connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&err),
            "error sending request: client error (Connect): connection refused"
        );
        assert_eq!(causes(&err).count(), 4);
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
