//! Property tests: for random request sequences (non-decreasing instants, many of them equal),
//! what each algorithm admits stays inside the bound documented for it; a refund is
//! indistinguishable from the request never having come; and no state bytes, however
//! mangled, make an algorithm panic.

use super::algorithm::{evaluate, max_state_bytes, refund};
use super::{Decision, Evaluation, Params};
use crate::config::Algorithm;
use crate::time::{UnixNanos, NANOS_PER_MILLI};
use proptest::prelude::*;

const WINDOWS: [u64; 6] = [
    1_000,
    1_000_000,
    999_999_937,
    1_000_000_000,
    60_000_000_000,
    86_400_000_000_000,
];

pub(super) const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::FixedWindow,
    Algorithm::SlidingWindowLog,
    Algorithm::SlidingWindowCounter,
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket,
];

pub(super) fn params(algorithm: Algorithm) -> impl Strategy<Value = Params> {
    (
        1u64..=12,
        proptest::sample::select(&WINDOWS[..]),
        1u64..=12,
        0u64..=4,
    )
        .prop_map(move |(limit, window_ns, burst, delay_intervals)| Params {
            algorithm,
            limit,
            window_ns,
            burst,
            // Shaping only where asked for; up to four emission intervals.
            max_delay_ns: if algorithm == Algorithm::LeakyBucket {
                delay_intervals * (window_ns / limit)
            } else {
                0
            },
        })
}

/// Request instants: a random start, then gaps in units of the window (so every window size
/// sees the same mix), a third of them zero.
pub(super) fn instants() -> impl Strategy<Value = (UnixNanos, Vec<(u64, u64)>)> {
    let gap = prop_oneof![
        3 => Just((0u64, 1u64)),
        4 => (1u64..=1_000, Just(2_000u64)),
        2 => (1u64..=3_000, Just(1_000u64)),
    ];
    (0u64..(1 << 62), proptest::collection::vec(gap, 1..160))
}

pub(super) fn times(window: u64, start: UnixNanos, gaps: &[(u64, u64)]) -> Vec<UnixNanos> {
    let mut now = start;
    gaps.iter()
        .map(|&(num, den)| {
            let step = u128::from(window) * u128::from(num) / u128::from(den);
            now = now.saturating_add(u64::try_from(step).unwrap_or(u64::MAX));
            now
        })
        .collect()
}

/// Runs the sequence; returns each evaluation with its instant.
fn run(p: &Params, at: &[UnixNanos]) -> Vec<(UnixNanos, Evaluation)> {
    let mut state = Vec::new();
    at.iter()
        .map(|&now| {
            let e = evaluate(p, &state, now);
            if let Some(s) = &e.new_state {
                assert!(s.len() <= max_state_bytes(p), "{} > bound", s.len());
                state.clone_from(s);
            }
            (now, e)
        })
        .collect()
}

fn admitted(evals: &[(UnixNanos, Evaluation)]) -> Vec<UnixNanos> {
    evals
        .iter()
        .filter(|(_, e)| e.decision == Decision::Admit)
        .map(|(t, _)| *t)
        .collect()
}

/// ≤ `limit` admissions in each window aligned to the epoch.
fn check_aligned(p: &Params, admitted: &[UnixNanos]) {
    let mut counts = std::collections::HashMap::new();
    for t in admitted {
        *counts.entry(t / p.window_ns).or_insert(0u64) += 1;
    }
    for (w, n) in counts {
        assert!(n <= p.limit, "window {w}: {n} > {}", p.limit);
    }
}

/// For sorted release instants: over any `[r_i, r_j]`, at most `burst + rate · (r_j − r_i)`
/// (`slack_ns` absorbs rounding release instants up to whole nanoseconds).
fn check_envelope(p: &Params, r: &[UnixNanos], slack_ns: u64) {
    let (l, w, b) = (
        u128::from(p.limit),
        u128::from(p.window_ns),
        u128::from(p.burst),
    );
    for i in 0..r.len() {
        for j in i..r.len() {
            let n = (j - i + 1) as u128;
            let span = u128::from(r[j] - r[i] + slack_ns);
            assert!(
                n.saturating_sub(b) * w <= l * span,
                "{n} in {span} ns (limit {} / {} ns, burst {b})",
                p.limit,
                p.window_ns
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn fixed_window_admits_at_most_limit_per_aligned_window_and_rejects_only_when_full(
        p in params(Algorithm::FixedWindow), (start, gaps) in instants()
    ) {
        let evals = run(&p, &times(p.window_ns, start, &gaps));
        let ok = admitted(&evals);
        check_aligned(&p, &ok);
        for (now, e) in &evals {
            if e.decision == Decision::Reject {
                let same = ok.iter().filter(|t| **t / p.window_ns == now / p.window_ns).count();
                prop_assert_eq!(same as u64, p.limit);
            }
        }
    }

    #[test]
    fn sliding_window_log_admits_at_most_limit_in_every_trailing_window(
        p in params(Algorithm::SlidingWindowLog), (start, gaps) in instants()
    ) {
        let evals = run(&p, &times(p.window_ns, start, &gaps));
        let ok = admitted(&evals);
        let limit = p.limit as usize;
        for pair in ok.windows(limit + 1) {
            prop_assert!(pair[limit] - pair[0] >= p.window_ns);
        }
        // And rejects only when `limit` were admitted within the window (+1 ms precision).
        for (now, e) in &evals {
            if e.decision == Decision::Reject {
                let from = now.saturating_sub(p.window_ns + NANOS_PER_MILLI);
                let recent = ok.iter().filter(|t| **t > from && **t <= *now).count();
                prop_assert!(recent >= limit);
            }
        }
    }

    #[test]
    fn sliding_window_counter_admits_at_most_limit_per_aligned_window(
        p in params(Algorithm::SlidingWindowCounter), (start, gaps) in instants()
    ) {
        let evals = run(&p, &times(p.window_ns, start, &gaps));
        check_aligned(&p, &admitted(&evals));
    }

    #[test]
    fn token_bucket_admits_at_most_burst_plus_rate_times_interval(
        p in params(Algorithm::TokenBucket), (start, gaps) in instants()
    ) {
        let evals = run(&p, &times(p.window_ns, start, &gaps));
        let ok = admitted(&evals);
        check_envelope(&p, &ok, 0);
        // A rejection is justified: one more would break the envelope over some interval.
        let (l, w, b) = (u128::from(p.limit), u128::from(p.window_ns), u128::from(p.burst));
        for (now, e) in &evals {
            if e.decision == Decision::Reject {
                let before: Vec<_> = ok.iter().filter(|t| **t <= *now).collect();
                let tight = (0..before.len()).any(|i| {
                    let n = (before.len() - i + 1) as u128;
                    n.saturating_sub(b) * w > l * u128::from(now - before[i])
                });
                prop_assert!(tight, "rejected at {} with room left", now);
            }
        }
    }

    #[test]
    fn leaky_bucket_police_admits_like_a_token_bucket(
        p in params(Algorithm::LeakyBucket), (start, gaps) in instants()
    ) {
        let p = Params { max_delay_ns: 0, ..p };
        let at = times(p.window_ns, start, &gaps);
        let evals = run(&p, &at);
        check_envelope(&p, &admitted(&evals), 0);
        let tb = run(&Params { algorithm: Algorithm::TokenBucket, ..p }, &at);
        let same = evals.iter().zip(&tb).all(|((_, a), (_, b))| a.decision == b.decision);
        prop_assert!(same);
    }

    #[test]
    fn leaky_bucket_shaper_spaces_releases_and_holds_at_most_max_delay(
        p in params(Algorithm::LeakyBucket), (start, gaps) in instants()
    ) {
        let evals = run(&p, &times(p.window_ns, start, &gaps));
        let mut releases = Vec::new();
        for (now, e) in &evals {
            match e.decision {
                Decision::Admit => releases.push(*now),
                Decision::Delay { until } => {
                    prop_assert!(until > *now && until - now <= p.max_delay_ns);
                    releases.push(until);
                }
                Decision::Reject => {}
            }
        }
        prop_assert!(releases.windows(2).all(|r| r[0] <= r[1]));
        // Release instants are rounded up to whole ns: exact when T is a whole number.
        let slack = u64::from(p.window_ns % p.limit != 0);
        check_envelope(&p, &releases, slack);
    }

    #[test]
    fn remaining_never_exceeds_limit_and_is_what_the_same_instant_still_admits_at_once(
        p in proptest::sample::select(ALGORITHMS.to_vec()).prop_flat_map(params),
        (start, gaps) in instants(),
    ) {
        // Shaping included: `params` gives a leaky bucket up to four intervals of max_delay.
        let mut state = Vec::new();
        for now in times(p.window_ns, start, &gaps) {
            let e = evaluate(&p, &state, now);
            prop_assert!(e.remaining <= e.limit, "remaining {} > limit {}", e.remaining, e.limit);
            if let Some(s) = &e.new_state {
                state.clone_from(s);
            }
            // Exactly `remaining` more requests at this instant are admitted without delay.
            let mut probe = state.clone();
            for k in 0..=e.remaining {
                let next = evaluate(&p, &probe, now);
                prop_assert_eq!(
                    next.decision == Decision::Admit,
                    k < e.remaining,
                    "request {} of {} remaining at {}", k + 1, e.remaining, now
                );
                match next.new_state {
                    Some(s) if next.decision == Decision::Admit => probe = s,
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn refund_is_as_if_the_request_never_came(
        p in proptest::sample::select(ALGORITHMS.to_vec()).prop_flat_map(params),
        (start, gaps) in instants(),
        split in 0usize..160,
    ) {
        let at = times(p.window_ns, start, &gaps);
        let split = split.min(at.len() - 1);
        let mut before = Vec::new();
        for &now in &at[..split] {
            if let Some(s) = evaluate(&p, &before, now).new_state {
                before = s;
            }
        }
        let e = evaluate(&p, &before, at[split]);
        let Some(written) = e.new_state.clone() else { return Ok(()) };
        let restored = refund(&p, &written, &e, at[split]);
        prop_assert!(restored.is_some());
        let restored = restored.unwrap_or_default();
        let (mut a, mut b) = (before, restored);
        for &now in &at[split..] {
            let (ea, eb) = (evaluate(&p, &a, now), evaluate(&p, &b, now));
            prop_assert_eq!(
                (ea.decision, ea.remaining, ea.retry_after_ns, ea.reset_at),
                (eb.decision, eb.remaining, eb.retry_after_ns, eb.reset_at)
            );
            if let (Some(x), Some(y)) = (ea.new_state, eb.new_state) {
                a = x;
                b = y;
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_state_params_or_instants(
        tag in proptest::sample::select(vec![0x11u8, 0x21, 0x31, 0x41, 0x51, 0, 0xff]),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        limit in prop_oneof![Just(0u64), Just(1), Just(1_000_000_000), any::<u64>()],
        window_ns in prop_oneof![Just(0u64), Just(1), Just(86_400_000_000_000), any::<u64>()],
        burst in prop_oneof![Just(0u64), Just(1), any::<u64>()],
        max_delay_ns in prop_oneof![Just(0u64), any::<u64>()],
        now in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
    ) {
        let mut state = vec![tag];
        state.extend(body);
        for algorithm in ALGORITHMS {
            let p = Params { algorithm, limit, window_ns, burst, max_delay_ns };
            let e = evaluate(&p, &state, now);
            let _ = refund(&p, &state, &e, now);
            let _ = max_state_bytes(&p);
            if let Some(s) = &e.new_state {
                let again = evaluate(&p, s, now);
                let _ = refund(&p, s, &e, now);
                let _ = refund(&p, s, &again, now);
            }
        }
    }
}
