//! Rate-limit response headers: `X-RateLimit-*` (Reset in Unix seconds) and/or the IETF
//! draft-ietf-httpapi-ratelimit-headers-10 fields `RateLimit-Policy: "name";q=100;w=60` and
//! `RateLimit: "name";r=97;t=42`.
//!
//! One instant behind three headers. Every algorithm reports [`Evaluation::reset_at`]: when
//! more quota comes back — the instant from which one more request than Remaining would be
//! admitted at once, if nothing else came in between. Then:
//!
//! - `t` (IETF: "seconds until additional quota is made available") is `reset_at − now` in
//!   whole seconds, rounded up; 0 when no more quota will come back (a full bucket).
//! - `X-RateLimit-Reset` is `reset_at` in Unix seconds, rounded up: the same instant.
//! - `Retry-After` (rejections only) is the exact wait until a retry is admitted, in whole
//!   seconds rounded up, at least 1 and never below `t` (the draft: Retry-After should not
//!   point earlier than `t`). On a rejection Remaining is 0, so the next unit of quota *is*
//!   the retry instant and Retry-After equals `t` — except in the sub-millisecond cases
//!   [`super::within_one_window`] describes, where `t` is held to `w` and Retry-After says
//!   `w + 1`.
//!
//! Per algorithm that instant is: fixed window — the end of the window; sliding window
//! log — when the oldest logged request leaves the trailing window; sliding window
//! counter — when the weighted count has dropped by one more request; token bucket — the
//! next token; leaky bucket — the next drained interval (the module docs have the details).
//! Without a reload that lowered a limit or a clock that stepped back, `t ≤ w` for all of
//! them except a shaping leaky bucket, whose `t` also covers the requests it already holds.
//!
//! `w` is whole seconds or nothing: the draft allows no sub-second precision and makes `w`
//! optional, so a window that is not a whole number of seconds (`500ms`, `1500ms`) gets a
//! `RateLimit-Policy` without `w` rather than a rounded one that would misstate the rate
//! (`500ms` as `w=1` claims half the real rate). `t` stays whole seconds, rounded up: a
//! client that waits it is never early.

use crate::config::RateLimitHeaders;
use crate::header_names::{
    RATELIMIT, RATELIMIT_POLICY, RETRY_AFTER, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
};
use crate::time::{retry_after_seconds, UnixNanos, NANOS_PER_SEC};

use super::Evaluation;

/// Headers describing `evaluation` of limit `name` (window `window_ns`) at `now`.
/// `rejected` adds `Retry-After`.
pub fn rate_limit_headers(
    style: RateLimitHeaders,
    name: &str,
    window_ns: u64,
    evaluation: &Evaluation,
    rejected: bool,
    now: UnixNanos,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(5);
    let reset_in_s = evaluation
        .reset_at
        .saturating_sub(now)
        .div_ceil(NANOS_PER_SEC);
    if matches!(style, RateLimitHeaders::XRateLimit | RateLimitHeaders::Both) {
        // `to_string` of an integer skips the formatter: digits from a table, straight into a
        // `String` of the right size.
        out.push((X_RATELIMIT_LIMIT.into(), evaluation.limit.to_string()));
        out.push((
            X_RATELIMIT_REMAINING.into(),
            evaluation.remaining.to_string(),
        ));
        out.push((
            X_RATELIMIT_RESET.into(),
            evaluation.reset_at.div_ceil(NANOS_PER_SEC).to_string(),
        ));
    }
    if matches!(style, RateLimitHeaders::Ietf | RateLimitHeaders::Both) {
        let policy = match whole_seconds(window_ns) {
            Some(w) => format!("\"{name}\";q={};w={w}", evaluation.limit),
            None => format!("\"{name}\";q={}", evaluation.limit),
        };
        out.push((RATELIMIT_POLICY.into(), policy));
        out.push((
            RATELIMIT.into(),
            format!("\"{name}\";r={};t={reset_in_s}", evaluation.remaining),
        ));
    }
    if rejected {
        let retry_after = retry_after_seconds(evaluation.retry_after_ns).max(reset_in_s);
        out.push((RETRY_AFTER.into(), retry_after.to_string()));
    }
    out
}

/// The IETF `w`: the window in seconds if it is a whole, non-zero number of them.
fn whole_seconds(window_ns: u64) -> Option<u64> {
    (window_ns >= NANOS_PER_SEC && window_ns.is_multiple_of(NANOS_PER_SEC))
        .then_some(window_ns / NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ratelimit::Decision;

    fn eval(remaining: u64, reset_at: u64, retry_after_ns: u64) -> Evaluation {
        Evaluation {
            decision: Decision::Reject,
            new_state: None,
            at_rest_at: reset_at,
            limit: 10,
            remaining,
            reset_at,
            retry_after_ns,
        }
    }

    #[test]
    fn x_ratelimit_reset_is_unix_seconds_and_retry_after_rounds_up() {
        let now = 1_700_000_000 * NANOS_PER_SEC;
        let e = eval(0, now + 1_500_000_000, 1_200_000_000);
        let h = rate_limit_headers(
            RateLimitHeaders::XRateLimit,
            "a",
            60 * NANOS_PER_SEC,
            &e,
            true,
            now,
        );
        assert!(h.contains(&("x-ratelimit-limit".into(), "10".into())));
        assert!(h.contains(&("x-ratelimit-remaining".into(), "0".into())));
        assert!(h.contains(&("x-ratelimit-reset".into(), "1700000002".into())));
        assert!(h.contains(&("retry-after".into(), "2".into())));
        assert!(!h.iter().any(|(k, _)| k == "ratelimit"));
    }

    #[test]
    fn ietf_fields_follow_draft_10() {
        let now = 1_000 * NANOS_PER_SEC;
        let e = eval(7, now + 42 * NANOS_PER_SEC, 0);
        let h = rate_limit_headers(
            RateLimitHeaders::Ietf,
            "per-user",
            60 * NANOS_PER_SEC,
            &e,
            false,
            now,
        );
        assert_eq!(
            h,
            vec![
                ("ratelimit-policy".into(), "\"per-user\";q=10;w=60".into()),
                ("ratelimit".into(), "\"per-user\";r=7;t=42".into()),
            ]
        );
    }

    #[test]
    fn a_window_that_is_not_whole_seconds_gets_no_w_rather_than_a_rounded_one() {
        let e = eval(3, 1_000_000_000, 0);
        for (window, policy) in [
            (500 * crate::time::NANOS_PER_MILLI, "\"a\";q=10"),
            (1_500 * crate::time::NANOS_PER_MILLI, "\"a\";q=10"),
            (2 * NANOS_PER_SEC, "\"a\";q=10;w=2"),
        ] {
            let h = rate_limit_headers(RateLimitHeaders::Ietf, "a", window, &e, false, 0);
            assert_eq!(h[0], ("ratelimit-policy".into(), policy.into()), "{window}");
            assert_eq!(h[1], ("ratelimit".into(), "\"a\";r=3;t=1".into()));
        }
    }

    #[test]
    fn retry_after_is_never_earlier_than_t() {
        // An evaluation whose exact wait is shorter than its reset instant (cannot come from
        // the algorithms, which the property tests prove): Retry-After still covers `t`.
        let now = 1_000 * NANOS_PER_SEC;
        let e = eval(0, now + 30 * NANOS_PER_SEC, 5 * NANOS_PER_SEC);
        let h = rate_limit_headers(
            RateLimitHeaders::Both,
            "a",
            60 * NANOS_PER_SEC,
            &e,
            true,
            now,
        );
        assert!(h.contains(&("ratelimit".into(), "\"a\";r=0;t=30".into())));
        assert!(h.contains(&("retry-after".into(), "30".into())));
        assert!(h.contains(&("x-ratelimit-reset".into(), "1030".into())));
    }

    #[test]
    fn none_style_adds_only_retry_after_on_rejection() {
        let e = eval(0, 1, 1);
        assert!(rate_limit_headers(RateLimitHeaders::None, "a", 1, &e, false, 0).is_empty());
        assert_eq!(
            rate_limit_headers(RateLimitHeaders::None, "a", 1, &e, true, 0),
            vec![("retry-after".into(), "1".into())]
        );
    }
}
