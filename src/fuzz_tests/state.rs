//! The rate-limit and breaker states levee keeps in shared data, fed garbage and bit-flipped
//! valid encodings (the other stored records: [`super::stored_records`]).
//!
//! Random bytes mostly die at the first version or tag check, so each target also starts from
//! states the real code wrote and mutates them (a flipped bit, an extreme u64 over a field, a
//! truncation): those pass the cheap checks and reach the arithmetic. Beyond "no panic", the
//! decoded-then-encoded form must be stable, and a state must never block its key forever:
//! whatever sequence of requests wrote it, with the wall clock stepping back and forth,
//! enough real time later the key admits again (no stuck limit, no stuck breaker).

use proptest::prelude::*;

use super::{cases, interesting_u64, mutate_bytes};
use crate::breaker::{self, Admission};
use crate::config::{self, Algorithm, BreakerConfig};
use crate::random::{RandomSource, SplitMix64};
use crate::ratelimit::algorithm::{evaluate, max_state_bytes, refund};
use crate::ratelimit::{Decision, Params};
use crate::time::NANOS_PER_SEC as SEC;

const T0: u64 = 1_700_000_000 * SEC;

const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::FixedWindow,
    Algorithm::SlidingWindowLog,
    Algorithm::SlidingWindowCounter,
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket,
];

fn params() -> impl Strategy<Value = Params> {
    (
        0usize..5,
        1u64..=50,
        prop_oneof![
            Just(1_000_000u64),
            Just(SEC),
            Just(60 * SEC),
            Just(86_400 * SEC)
        ],
        1u64..=50,
        0u64..=4,
    )
        .prop_map(|(a, limit, window_ns, burst, delay)| {
            let algorithm = ALGORITHMS[a];
            Params {
                algorithm,
                limit,
                window_ns,
                burst,
                max_delay_ns: if algorithm == Algorithm::LeakyBucket {
                    delay * (window_ns / limit)
                } else {
                    0
                },
            }
        })
}

/// A state the algorithm itself wrote, after a few requests around `T0`.
fn written_state(p: &Params, rng: &mut SplitMix64) -> Vec<u8> {
    let mut state = Vec::new();
    let mut now = T0 + rng.below(p.window_ns);
    for _ in 0..rng.below(3 * p.limit + 2) {
        now += rng.below(p.window_ns / p.limit.max(1) + 1);
        if let Some(s) = evaluate(p, &state, now).new_state {
            state = s;
        }
    }
    state
}

/// The promises of one evaluation, whatever the state it started from.
fn check_evaluation(p: &Params, state: &[u8], now: u64) -> Result<(), TestCaseError> {
    let e = evaluate(p, state, now);
    match e.decision {
        Decision::Reject => {
            prop_assert!(e.new_state.is_none(), "a rejection wrote state");
            prop_assert!(e.retry_after_ns > 0, "rejected with Retry-After 0");
        }
        Decision::Admit => prop_assert!(e.new_state.is_some()),
        Decision::Delay { until } => {
            prop_assert!(e.new_state.is_some());
            prop_assert!(
                until.saturating_sub(now) <= p.max_delay_ns,
                "held {} ns > max_delay {}",
                until.saturating_sub(now),
                p.max_delay_ns
            );
        }
    }
    if let Some(s) = &e.new_state {
        prop_assert!(
            s.len() <= max_state_bytes(p),
            "{} > bound {}",
            s.len(),
            max_state_bytes(p)
        );
        // What it wrote reads back (a second evaluation on it never panics either).
        let _ = evaluate(p, s, now);
        let _ = refund(p, s, &e, now);
    }
    // Remaining never exceeds the Limit it is reported with, shaping included (IETF r ≤ q).
    prop_assert!(
        e.remaining <= e.limit,
        "remaining {} > limit {}",
        e.remaining,
        e.limit
    );
    let _ = refund(p, state, &e, now);
    Ok(())
}

fn breaker_cfg(rate: bool, half_open_max_in_flight: u32) -> BreakerConfig {
    let cb = if rate {
        serde_json::json!({ "failure_threshold": 3, "reset_timeout": "1s", "half_open_successes": 2,
            "half_open_max_in_flight": half_open_max_in_flight,
            "failure_rate": { "threshold": 0.5, "minimum_calls": 4, "window": "10s" } })
    } else {
        serde_json::json!({ "failure_threshold": 3, "reset_timeout": "1s", "half_open_successes": 2,
            "half_open_max_in_flight": half_open_max_in_flight })
    };
    let doc = serde_json::json!({ "upstreams": { "u": { "circuit_breaker": cb } } });
    config::parse(doc.to_string().as_bytes())
        .ok()
        .and_then(|c| c.upstreams.into_iter().next())
        .and_then(|u| u.circuit_breaker)
        .expect("the fixed test config must parse")
}

/// A breaker state written by real admits and records at instants that wander back and forth.
fn breaker_history(cfg: &BreakerConfig, rng: &mut SplitMix64, steps: u64) -> (Vec<u8>, u64) {
    let mut state = Vec::new();
    let mut latest = T0;
    for _ in 0..steps {
        // The wall clock may step back up to 5 s (NTP) as well as forward.
        let now = (latest + rng.below(3 * SEC)).saturating_sub(rng.below(5 * SEC) * rng.below(2));
        latest = latest.max(now);
        let admit = breaker::admit(cfg, &state, now, SEC);
        if let Some(s) = admit.new_state {
            state = s;
        }
        if let Some(ticket) = admit.admission.ticket() {
            let failed = rng.below(3) != 0;
            let at = now + rng.below(SEC);
            latest = latest.max(at);
            if let Some(s) = breaker::record(cfg, &state, ticket, failed, at).new_state {
                state = s;
            }
        }
    }
    (state, latest)
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn rate_limit_algorithms_keep_their_promises_on_any_state(
        p in params(),
        seed in any::<u64>(),
        rounds in 0u32..6,
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
        now_offset in prop_oneof![Just(0u64), 0u64..(10 * 86_400 * SEC)],
        back in any::<bool>(),
    ) {
        let mut rng = SplitMix64::seeded(seed);
        let mut state = if rng.below(4) == 0 { garbage } else { written_state(&p, &mut rng) };
        mutate_bytes(&mut state, &mut rng, rounds);
        let now = if back { T0.saturating_sub(now_offset) } else { T0.saturating_add(now_offset) };
        check_evaluation(&p, &state, now)?;
        // Any instant before the year 2262 (at u64::MAX ns the window end saturates).
        check_evaluation(&p, &state, interesting_u64(&mut rng).min(i64::MAX as u64))?;
    }

    #[test]
    fn no_rate_limit_state_written_by_requests_blocks_a_key_for_long(
        p in params(),
        seed in any::<u64>(),
        n in 1u64..120,
    ) {
        // Requests at instants that wander (the wall clock steps back up to two windows).
        let mut rng = SplitMix64::seeded(seed);
        let mut state = Vec::new();
        let mut latest = T0;
        for _ in 0..n {
            let jitter = rng.below(2 * p.window_ns);
            let now = if rng.below(3) == 0 { latest.saturating_sub(jitter) } else { latest + jitter / 4 };
            latest = latest.max(now);
            if let Some(s) = evaluate(&p, &state, now).new_state {
                state = s;
            }
        }
        // Long enough for any algorithm to refill completely.
        let refill = p.window_ns.saturating_mul(p.burst.div_ceil(p.limit) + 2);
        let later = latest + refill + p.max_delay_ns;
        let e = evaluate(&p, &state, later);
        prop_assert_eq!(e.decision, Decision::Admit, "{:?} at +{} ns", p.algorithm, refill);
    }

    #[test]
    fn breaker_transitions_never_panic_on_any_state(
        seed in any::<u64>(),
        rounds in 0u32..6,
        rate in any::<bool>(),
        in_flight in 1u32..4,
        garbage in proptest::collection::vec(any::<u8>(), 0..160),
        epoch in any::<u32>(),
        probe in proptest::option::of(any::<u32>()),
    ) {
        let cfg = breaker_cfg(rate, in_flight);
        let mut rng = SplitMix64::seeded(seed);
        let (mut state, _) = if rng.below(4) == 0 { (garbage, T0) } else { breaker_history(&cfg, &mut rng, 20) };
        mutate_bytes(&mut state, &mut rng, rounds);
        let now = interesting_u64(&mut rng);
        let _ = breaker::state_of(&cfg, &state, now);
        let admit = breaker::admit(&cfg, &state, now, interesting_u64(&mut rng));
        if let Admission::Reject { retry_after_ns } = admit.admission {
            prop_assert!(retry_after_ns > 0);
        }
        for s in admit.new_state.iter() {
            // What it writes decodes to itself.
            let decoded = breaker::state::State::decode(&cfg, s);
            prop_assert_eq!(&decoded.encode(), s);
        }
        let ticket = breaker::Ticket { epoch, probe };
        let _ = breaker::record(&cfg, &state, ticket, rng.below(2) == 0, now);
        if let Some(t) = admit.admission.ticket() {
            let _ = breaker::record(&cfg, &state, t, true, now);
        }
    }

    #[test]
    fn no_breaker_stays_open_once_its_upstream_recovers(
        seed in any::<u64>(),
        rate in any::<bool>(),
        in_flight in 1u32..4,
        steps in 1u64..60,
    ) {
        let cfg = breaker_cfg(rate, in_flight);
        let mut rng = SplitMix64::seeded(seed);
        let (mut state, latest) = breaker_history(&cfg, &mut rng, steps);
        // reset_timeout (1 s), every lease (1 s) and the failure-rate window (10 s) have
        // passed; the upstream now succeeds.
        let mut now = latest + 13 * SEC;
        for _ in 0..10 {
            let admit = breaker::admit(&cfg, &state, now, SEC);
            if let Some(s) = admit.new_state {
                state = s;
            }
            let ticket = admit.admission.ticket();
            prop_assert!(ticket.is_some(), "still refusing at +{} ns: {:?}", now - latest, admit.admission);
            if let Some(t) = ticket {
                if let Some(s) = breaker::record(&cfg, &state, t, false, now).new_state {
                    state = s;
                }
            }
            now += 1_000;
        }
        prop_assert_eq!(breaker::state_of(&cfg, &state, now), breaker::BreakerState::Closed);
    }
}
