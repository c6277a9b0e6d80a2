//! Property tests: for every algorithm, over random limits and request sequences (fake
//! clock), the rate-limit headers agree with each other and with
//! draft-ietf-httpapi-ratelimit-headers: `t ≤ w`, `Retry-After ≥ t` and ≥ 1,
//! `X-RateLimit-Reset` names the instant `t` names, and that instant is exact — a request
//! sent then is admitted, one sent a nanosecond earlier is not.

use super::algorithm::evaluate;
use super::headers::rate_limit_headers;
use super::proptests::{instants, params, times, ALGORITHMS};
use super::{Decision, Evaluation, Params};
use crate::config::{Algorithm, RateLimitHeaders};
use crate::time::{UnixNanos, NANOS_PER_SEC as S};
use proptest::prelude::*;

/// What the headers of one evaluation say, as numbers.
#[derive(Debug)]
struct Said {
    t: u64,
    w: Option<u64>,
    reset_unix_s: u64,
    retry_after: Option<u64>,
}

fn said(p: &Params, e: &Evaluation, now: UnixNanos) -> Said {
    let rejected = e.decision == Decision::Reject;
    let h = rate_limit_headers(RateLimitHeaders::Both, "p", p.window_ns, e, rejected, now);
    let get = |name: &str| {
        h.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let param = |field: &str, key: &str| {
        field
            .split(';')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Said {
        t: param(&get("ratelimit"), "t").unwrap_or(u64::MAX),
        w: param(&get("ratelimit-policy"), "w"),
        reset_unix_s: get("x-ratelimit-reset").parse().unwrap_or(0),
        retry_after: get("retry-after").parse().ok(),
    }
}

/// How many requests in a row are admitted at once (not held) at `at`, up to `max`.
fn admitted_at_once(p: &Params, state: &[u8], at: UnixNanos, max: u64) -> u64 {
    let mut state = state.to_vec();
    for n in 0..max {
        let e = evaluate(p, &state, at);
        match (e.decision, e.new_state) {
            (Decision::Admit, Some(s)) => state = s,
            _ => return n,
        }
    }
    max
}

/// Whether `reset_at` may have been held to one window after `now` (the precision shave).
fn maybe_shaved(p: &Params, e: &Evaluation, now: UnixNanos) -> bool {
    matches!(
        p.algorithm,
        Algorithm::SlidingWindowLog | Algorithm::SlidingWindowCounter
    ) && e.reset_at == now.saturating_add(p.window_ns)
}

fn check(p: &Params, state: &[u8], e: &Evaluation, now: UnixNanos) -> Result<(), TestCaseError> {
    let s = said(p, e, now);
    let shaping = p.algorithm == Algorithm::LeakyBucket && p.max_delay_ns > 0;
    prop_assert!(e.reset_at >= now, "reset {} before now {}", e.reset_at, now);

    // t ≤ w (whole-second windows), or ≤ the window rounded up; a shaper adds what it holds.
    let horizon = if shaping {
        p.window_ns + p.max_delay_ns
    } else {
        p.window_ns
    };
    prop_assert!(s.t <= horizon.div_ceil(S), "t={} over {} ns", s.t, horizon);
    prop_assert_eq!(s.w.is_some(), p.window_ns.is_multiple_of(S));
    if let (Some(w), false) = (s.w, shaping) {
        prop_assert!(s.t <= w, "t={} > w={}", s.t, w);
    }

    // X-RateLimit-Reset and now + t both name reset_at: not earlier, less than 1 s later.
    let reset_ns = u128::from(s.reset_unix_s) * u128::from(S);
    let t_at = u128::from(now) + u128::from(s.t) * u128::from(S);
    for at in [reset_ns, t_at] {
        prop_assert!(at >= u128::from(e.reset_at) && at < u128::from(e.reset_at) + u128::from(S));
    }

    if e.decision == Decision::Reject {
        let ra = s.retry_after.unwrap_or(0);
        prop_assert!(ra >= 1 && ra >= s.t, "Retry-After {} with t={}", ra, s.t);
        prop_assert!(ra * S >= e.retry_after_ns);
        // Retrying when told is admitted at once; the instant behind it is exact.
        prop_assert_eq!(evaluate(p, state, now + ra * S).decision, Decision::Admit);
        prop_assert_eq!(
            evaluate(p, state, now + e.retry_after_ns).decision,
            Decision::Admit
        );
        prop_assert!(evaluate(p, state, now + e.retry_after_ns - 1).decision != Decision::Admit);
        if e.retry_after_ns == e.reset_at - now {
            prop_assert_eq!(ra, s.t, "Retry-After and t differ without a shave");
        } else {
            prop_assert!(maybe_shaved(p, e, now), "reset and retry differ");
        }
    } else {
        prop_assert!(s.retry_after.is_none());
    }

    // At reset_at one more request than Remaining goes through at once; a nanosecond
    // earlier it does not.
    if e.reset_at > now && !maybe_shaved(p, e, now) {
        let want = e.remaining + 1;
        prop_assert_eq!(admitted_at_once(p, state, e.reset_at, want), want);
        prop_assert!(admitted_at_once(p, state, e.reset_at - 1, want) < want);
        if e.remaining == 0 {
            prop_assert_eq!(evaluate(p, state, now + s.t * S).decision, Decision::Admit);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_algorithm_says_one_instant_in_t_reset_and_retry_after_and_admits_then(
        p in proptest::sample::select(ALGORITHMS.to_vec()).prop_flat_map(params),
        (start, gaps) in instants(),
    ) {
        let mut state = Vec::new();
        for now in times(p.window_ns, start, &gaps) {
            let e = evaluate(&p, &state, now);
            if let Some(s) = &e.new_state {
                state.clone_from(s);
            }
            check(&p, &state, &e, now)?;
        }
    }
}

#[test]
fn sixty_second_log_says_t_60_not_61_for_a_request_between_milliseconds() {
    let p = Params {
        algorithm: Algorithm::SlidingWindowLog,
        limit: 2,
        window_ns: 60 * S,
        burst: 2,
        max_delay_ns: 0,
    };
    let now = 1_700_000_000 * S + 500_000; // half a millisecond past
    let e = evaluate(&p, &[], now);
    let s = said(&p, &e, now);
    assert_eq!((s.t, s.w), (60, Some(60)));
    let state = e.new_state.unwrap_or_default();
    let again = evaluate(&p, &state, now);
    let state = again.new_state.unwrap_or_default();
    let r = evaluate(&p, &state, now);
    let s = said(&p, &r, now);
    assert_eq!(r.decision, Decision::Reject);
    // The entry counts until ⌈now⌉ms + 60 s: t is held to w, Retry-After is exact.
    assert_eq!((s.t, s.retry_after), (60, Some(61)));
}
