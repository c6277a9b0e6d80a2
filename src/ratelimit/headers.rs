//! Rate-limit response headers (SPEC §3): `X-RateLimit-*` (the seed's format, Reset in Unix
//! seconds) and/or the IETF draft-ietf-httpapi-ratelimit-headers-10 fields
//! `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=97;t=42`.

use crate::config::RateLimitHeaders;
use crate::header_names::{RETRY_AFTER, X_RATELIMIT_RESET};
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
        out.push(("x-ratelimit-limit".into(), evaluation.limit.to_string()));
        out.push((
            "x-ratelimit-remaining".into(),
            evaluation.remaining.to_string(),
        ));
        out.push((
            X_RATELIMIT_RESET.into(),
            evaluation.reset_at.div_ceil(NANOS_PER_SEC).to_string(),
        ));
    }
    if matches!(style, RateLimitHeaders::Ietf | RateLimitHeaders::Both) {
        let window_s = window_ns.div_ceil(NANOS_PER_SEC).max(1);
        out.push((
            "ratelimit-policy".into(),
            format!("\"{name}\";q={};w={window_s}", evaluation.limit),
        ));
        out.push((
            "ratelimit".into(),
            format!("\"{name}\";r={};t={reset_in_s}", evaluation.remaining),
        ));
    }
    if rejected {
        out.push((
            RETRY_AFTER.into(),
            retry_after_seconds(evaluation.retry_after_ns).to_string(),
        ));
    }
    out
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
    fn none_style_adds_only_retry_after_on_rejection() {
        let e = eval(0, 5 * NANOS_PER_SEC, 1);
        assert!(rate_limit_headers(RateLimitHeaders::None, "a", 1, &e, false, 0).is_empty());
        assert_eq!(
            rate_limit_headers(RateLimitHeaders::None, "a", 1, &e, true, 0),
            vec![("retry-after".into(), "1".into())]
        );
    }
}
