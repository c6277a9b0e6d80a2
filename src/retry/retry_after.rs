//! Reading the upstream's own "come back later" hint.
//!
//! A `429` or `503` often says when the upstream will be ready: `Retry-After` (RFC 9110 §10.2.3:
//! delta-seconds or an HTTP-date) or the de-facto `X-RateLimit-Reset` (Unix seconds, or seconds
//! from now on some APIs). Waiting exactly that long beats any backoff guess, so with
//! `respect_retry_after` it replaces the backoff delay. Everything here is hand-written (no date
//! crate in a wasm filter) and total: a value that does not parse is ignored, never an error.
//!
//! HTTP-dates are accepted in all three forms a recipient must accept (RFC 9110 §5.6.7):
//! IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and
//! asctime `Sun Nov  6 08:49:37 1994`.

use crate::time::{UnixNanos, NANOS_PER_SEC};

/// `X-RateLimit-Reset` values below this are seconds from now, larger ones Unix seconds.
pub const UNIX_SECONDS_THRESHOLD: u64 = 1_000_000_000;

/// Nanoseconds to wait according to a `Retry-After` value (0 for a date in the past).
pub fn parse_retry_after(value: &str, now: UnixNanos) -> Option<u64> {
    let v = value.trim();
    if let Some(secs) = parse_digits(v) {
        return Some(secs.saturating_mul(NANOS_PER_SEC));
    }
    let at = parse_http_date(v)?;
    Some(at.saturating_mul(NANOS_PER_SEC).saturating_sub(now))
}

/// Nanoseconds to wait according to an `X-RateLimit-Reset` value: values below
/// [`UNIX_SECONDS_THRESHOLD`] are delta seconds, others a Unix time in seconds.
pub fn parse_rate_limit_reset(value: &str, now: UnixNanos) -> Option<u64> {
    let secs = parse_digits(value.trim())?;
    let ns = secs.saturating_mul(NANOS_PER_SEC);
    if secs < UNIX_SECONDS_THRESHOLD {
        Some(ns)
    } else {
        Some(ns.saturating_sub(now))
    }
}

/// Unix seconds of an HTTP-date, or `None` if it is not one.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, day, mon, year, time, "GMT"] if wd.ends_with(',') && year.len() == 4 => {
            build(parse_digits(year)?, month(mon)?, parse_day(day)?, time)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, date, time, "GMT"] if wd.ends_with(',') => {
            let mut it = date.split('-');
            let (d, m, y) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || y.len() != 2 {
                return None;
            }
            let yy = parse_digits(y)?;
            // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
            let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
            build(year, month(m)?, parse_day(d)?, time)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_wd, mon, day, time, year] if year.len() == 4 => {
            build(parse_digits(year)?, month(mon)?, parse_day(day)?, time)
        }
        _ => None,
    }
}

fn build(year: u64, month: u64, day: u64, time: &str) -> Option<u64> {
    let mut it = time.split(':');
    let (h, m, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s) = (parse_digits(h)?, parse_digits(m)?, parse_digits(s)?);
    // 60 is a leap second, allowed by the grammar.
    if year < 1970 || h > 23 || m > 59 || s > 60 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

fn parse_day(d: &str) -> Option<u64> {
    if d.is_empty() || d.len() > 2 {
        return None;
    }
    parse_digits(d).filter(|d| *d >= 1)
}

fn month(m: &str) -> Option<u64> {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    NAMES.iter().position(|n| *n == m).map(|i| i as u64 + 1)
}

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// A non-empty run of ASCII digits that fits in a `u64`.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06T08:49:37Z, the RFC's example date.
    const RFC_EXAMPLE: u64 = 784_111_777;
    const SEC: u64 = NANOS_PER_SEC;

    #[test]
    fn delta_seconds_are_read_as_a_wait() {
        assert_eq!(parse_retry_after("120", 5), Some(120 * SEC));
        assert_eq!(parse_retry_after(" 0 ", 5), Some(0));
    }

    #[test]
    fn all_three_http_date_forms_parse_to_the_same_instant() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(RFC_EXAMPLE)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(RFC_EXAMPLE)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(RFC_EXAMPLE)
        );
    }

    #[test]
    fn http_date_is_a_wait_from_now() {
        let now = (RFC_EXAMPLE - 30) * SEC;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(30 * SEC)
        );
        let later = (RFC_EXAMPLE + 30) * SEC;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(0)
        );
    }

    #[test]
    fn leap_years_and_epoch_are_right() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_http_date("Fri, 01 Jan 2100 00:00:00 GMT"),
            Some(4_102_444_800)
        );
        assert_eq!(parse_http_date("Thu, 29 Feb 2023 12:00:00 GMT"), None);
    }

    #[test]
    fn garbage_is_ignored() {
        for bad in [
            "",
            "soon",
            "-5",
            "1.5",
            "99999999999999999999999",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1969 00:00:00 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49 1994",
            "\u{1F600}",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn rate_limit_reset_small_values_are_deltas_large_are_unix_seconds() {
        let now = 1_700_000_000 * SEC;
        assert_eq!(parse_rate_limit_reset("30", now), Some(30 * SEC));
        assert_eq!(parse_rate_limit_reset("1700000045", now), Some(45 * SEC));
        assert_eq!(parse_rate_limit_reset("1600000000", now), Some(0));
        assert_eq!(parse_rate_limit_reset("30s", now), None);
    }
}
