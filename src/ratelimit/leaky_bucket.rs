//! Leaky bucket: a constant outflow, either policed (excess rejected) or shaped (excess held).
//!
//! Why it exists: some upstreams cannot take bursts at all — a payment processor that allows
//! 10 calls a second, a legacy service with one thread. A leaky bucket lets requests out at
//! most once per emission interval `T = window / limit`, with a tolerance of `burst − 1`
//! intervals. Pick it to protect such an upstream; pick the token bucket to be fair to
//! clients. O(1) memory (17 bytes).
//!
//! It is GCRA (see [`super::gcra`]), state = the theoretical arrival time (TAT):
//! - **police** (`max_delay` = 0): admit iff `now ≥ TAT − τ`, else reject. This admits
//!   exactly what a token bucket of the same rate and burst admits.
//! - **shape** (`max_delay` > 0): a request that would be rejected is instead held until
//!   `TAT − τ` (`Decision::Delay`) if that is at most `max_delay` away, and counted as if it
//!   had arrived then, so held requests leave exactly `T` apart (to the nanosecond: release
//!   instants are rounded up, never early). Further out, it is rejected.
//!
//! Headers: Limit is `burst` and Remaining counts the requests that would be admitted right
//! now *without being held*, so Remaining ≤ Limit even when shaping (a held request leaves
//! Remaining at 0): what a client expects, and what the IETF `RateLimit` field requires
//! (`r ≤ q`). Reset (IETF `t`) is when one more request than Remaining would go through
//! without being held: the next drained interval. Retry-After on a rejection is that same
//! instant, for the police and the shaper alike. A shaper could take a retry up to
//! `max_delay` earlier and hold it — but it would release it at that same instant, so
//! saying "come back then" loses the client nothing and keeps Retry-After ≥ `t`, as the
//! IETF draft asks. Policing, `t` is at most one interval away (`t ≤ w`); shaping, it also
//! covers the requests already held, so it can exceed `w` by up to `max_delay`.

use super::gcra::{self, Bucket};
use super::{Evaluation, Params};
use crate::time::UnixNanos;

/// Encoded state size in bytes.
pub const STATE_BYTES: usize = gcra::STATE_BYTES;

/// Admit, hold (shaping) or reject one request.
pub fn evaluate(params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    gcra::evaluate(Bucket::Leaky, params, state, now)
}

/// Gives back the admitted (or held) request's interval, if nothing else came since.
pub fn refund(
    params: &Params,
    state: &[u8],
    admitted: &Evaluation,
    _now: UnixNanos,
) -> Option<Vec<u8>> {
    gcra::refund(Bucket::Leaky, params, state, admitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algorithm;
    use crate::ratelimit::Decision;
    use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as S};

    fn params(limit: u64, burst: u64, max_delay_ns: u64) -> Params {
        Params {
            algorithm: Algorithm::LeakyBucket,
            limit,
            window_ns: S,
            burst,
            max_delay_ns,
        }
    }

    fn go(p: &Params, state: &mut Vec<u8>, now: UnixNanos) -> Evaluation {
        let e = evaluate(p, state, now);
        if let Some(s) = &e.new_state {
            state.clone_from(s);
        }
        e
    }

    const T0: u64 = 1_700_000_000 * S;

    #[test]
    fn police_spaces_requests_one_emission_interval_apart() {
        let p = params(10, 1, 0);
        let mut st = Vec::new();
        assert_eq!(go(&p, &mut st, T0).decision, Decision::Admit);
        let early = go(&p, &mut st, T0 + 99 * MS);
        assert_eq!(
            (early.decision, early.retry_after_ns),
            (Decision::Reject, MS)
        );
        assert_eq!(go(&p, &mut st, T0 + 100 * MS).decision, Decision::Admit);
        assert_eq!(go(&p, &mut st, T0 + 199 * MS).decision, Decision::Reject);
    }

    #[test]
    fn police_admits_exactly_burst_at_one_instant() {
        let p = params(10, 3, 0);
        let mut st = Vec::new();
        let d: Vec<Decision> = (0..4).map(|_| go(&p, &mut st, T0).decision).collect();
        assert_eq!(
            d,
            vec![
                Decision::Admit,
                Decision::Admit,
                Decision::Admit,
                Decision::Reject
            ]
        );
        // Rejected: the next request conforms (Reset = retry instant) one interval later.
        let r = evaluate(&p, &st, T0);
        assert_eq!((r.reset_at, r.retry_after_ns), (T0 + 100 * MS, 100 * MS));
    }

    #[test]
    fn shaper_holds_excess_requests_spaced_by_the_interval() {
        let p = params(10, 1, 250 * MS);
        let mut st = Vec::new();
        let d: Vec<Decision> = (0..3).map(|_| go(&p, &mut st, T0).decision).collect();
        assert_eq!(
            d,
            vec![
                Decision::Admit,
                Decision::Delay {
                    until: T0 + 100 * MS
                },
                Decision::Delay {
                    until: T0 + 200 * MS
                },
            ]
        );
    }

    #[test]
    fn shaper_rejects_beyond_max_delay_and_says_when_to_retry() {
        let p = params(10, 1, 250 * MS);
        let mut st = Vec::new();
        for _ in 0..3 {
            go(&p, &mut st, T0);
        }
        let r = go(&p, &mut st, T0);
        assert_eq!(r.decision, Decision::Reject);
        // It would be held 300 ms; at most 250 ms is allowed. A retry 50 ms later would be
        // held until 300 ms, so "come back in 300 ms" releases it no later.
        assert_eq!(r.retry_after_ns, 300 * MS);
        assert_eq!(r.reset_at, T0 + 300 * MS);
        assert_eq!(
            evaluate(&p, &st, T0 + 50 * MS).decision,
            Decision::Delay {
                until: T0 + 300 * MS
            }
        );
        assert_eq!(go(&p, &mut st, T0 + 300 * MS).decision, Decision::Admit);
    }

    #[test]
    fn shaper_rounds_release_instants_up_to_the_nanosecond() {
        // T = 1/3 s: releases at ⌈k/3 s⌉, never before.
        let p = params(3, 1, S);
        let mut st = Vec::new();
        let until: Vec<Decision> = (0..3).map(|_| go(&p, &mut st, T0).decision).collect();
        assert_eq!(
            until[1],
            Decision::Delay {
                until: T0 + 333_333_334
            }
        );
        assert_eq!(
            until[2],
            Decision::Delay {
                until: T0 + 666_666_667
            }
        );
    }

    #[test]
    fn remaining_counts_only_requests_that_would_not_be_held() {
        // Burst of 2: after the first, one more goes through at once; the two a 250 ms
        // shaper could still hold (100 ms, 200 ms) are not "remaining".
        let p = params(10, 2, 250 * MS);
        let first = evaluate(&p, &[], T0);
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert_eq!(evaluate(&params(10, 2, 0), &[], T0).remaining, 1);
        let mut st = first.new_state.unwrap_or_default();
        let second = go(&p, &mut st, T0);
        assert_eq!((second.decision, second.remaining), (Decision::Admit, 0));
        let held = go(&p, &mut st, T0);
        assert!(matches!(held.decision, Decision::Delay { .. }));
        assert_eq!(held.remaining, 0);
    }

    #[test]
    fn remaining_never_exceeds_limit_however_long_the_shaper_may_hold() {
        // Up to 10 s of holding at 10/s is 100 held requests; Limit (burst) is still 1.
        let p = params(10, 1, 10 * S);
        let mut st = Vec::new();
        for _ in 0..50 {
            let e = go(&p, &mut st, T0);
            assert!(e.remaining <= e.limit, "{} > {}", e.remaining, e.limit);
        }
    }

    #[test]
    fn refund_of_a_held_request_frees_its_slot() {
        let p = params(10, 1, 250 * MS);
        let mut st = Vec::new();
        go(&p, &mut st, T0);
        let before = st.clone();
        let held = go(&p, &mut st, T0);
        assert!(matches!(held.decision, Decision::Delay { .. }));
        assert_eq!(refund(&p, &st, &held, T0), Some(before));
    }
}
