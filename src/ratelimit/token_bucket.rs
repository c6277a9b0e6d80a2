//! Token bucket: a steady rate with room for bursts.
//!
//! Why it exists: most APIs want "on average `limit` per `window`, but let a client that has
//! been quiet send a burst". The bucket holds up to `burst` tokens, refills continuously at
//! `limit / window` and starts full; each request takes one token. Pick it for general API
//! limits (it is Envoy's local rate limit's model): O(1)
//! memory (17 bytes), smooth, and over any interval `t` it admits at most
//! `burst + limit · t / window`.
//!
//! It is computed as GCRA (see [`super::gcra`]): instead of a token count and a last-refill
//! time, the state is the instant at which the bucket will be full again. That is the same
//! bucket without a refill step, so continuous refill loses no fractional token (3 per second
//! is exactly one token each 333 333 333.3̅ ns, forever).
//!
//! Headers: `X-RateLimit-Limit` is `burst` (so Remaining ≤ Limit), Remaining is the tokens
//! left, and Reset (IETF `t`) is when the next token arrives — the instant from which one
//! more request than Remaining goes through. That is never more than one emission interval
//! (`window / limit`) away, so `t ≤ w`. On a rejection Remaining is 0 and the next token is
//! exactly when a retry is admitted: Retry-After = `t`, and X-RateLimit-Reset names the same
//! instant. A full bucket (only after a refund) gets no more tokens: Reset is "now", `t = 0`.
//! `max_delay` is ignored: shaping is the leaky bucket's job.

use super::gcra::{self, Bucket};
use super::{Evaluation, Params};
use crate::time::UnixNanos;

/// Encoded state size in bytes.
pub const STATE_BYTES: usize = gcra::STATE_BYTES;

/// Take one token if there is one.
pub fn evaluate(params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    gcra::evaluate(Bucket::Token, params, state, now)
}

/// Puts the admitted request's token back, if nothing else took one since.
pub fn refund(
    params: &Params,
    state: &[u8],
    admitted: &Evaluation,
    _now: UnixNanos,
) -> Option<Vec<u8>> {
    gcra::refund(Bucket::Token, params, state, admitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algorithm;
    use crate::ratelimit::Decision;
    use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as S};

    fn params(limit: u64, window_ns: u64, burst: u64) -> Params {
        Params {
            algorithm: Algorithm::TokenBucket,
            limit,
            window_ns,
            burst,
            max_delay_ns: 0,
        }
    }

    fn take(p: &Params, state: &mut Vec<u8>, now: UnixNanos) -> Evaluation {
        let e = evaluate(p, state, now);
        if let Some(s) = &e.new_state {
            state.clone_from(s);
        }
        e
    }

    const T0: u64 = 1_700_000_000 * S;

    #[test]
    fn starts_full_and_admits_exactly_burst_at_one_instant() {
        let p = params(2, S, 5);
        let mut st = Vec::new();
        let remaining: Vec<u64> = (0..5).map(|_| take(&p, &mut st, T0).remaining).collect();
        assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
        let r = take(&p, &mut st, T0);
        assert_eq!(r.decision, Decision::Reject);
        assert_eq!(r.new_state, None);
        assert_eq!(r.retry_after_ns, 500 * MS);
        assert_eq!(r.reset_at, T0 + 500 * MS);
    }

    #[test]
    fn refills_one_token_each_third_of_a_second_without_drift() {
        let p = params(3, S, 3);
        let mut st = Vec::new();
        for _ in 0..3 {
            take(&p, &mut st, T0);
        }
        // One token after exactly 1/3 s = 333 333 333.3̅ ns: not at ...333, at ...334.
        let early = take(&p, &mut st, T0 + 333_333_333);
        assert_eq!(
            (early.decision, early.retry_after_ns),
            (Decision::Reject, 1)
        );
        assert_eq!(
            take(&p, &mut st, T0 + 333_333_334).decision,
            Decision::Admit
        );
        assert_eq!(
            take(&p, &mut st, T0 + 666_666_666).decision,
            Decision::Reject
        );
        assert_eq!(
            take(&p, &mut st, T0 + 666_666_667).decision,
            Decision::Admit
        );
        assert_eq!(take(&p, &mut st, T0 + S - 1).decision, Decision::Reject);
        assert_eq!(take(&p, &mut st, T0 + S).decision, Decision::Admit);
    }

    #[test]
    fn does_not_lose_fractional_tokens_when_polled_often() {
        // Polled every millisecond, a naive refill adds ⌊0.003⌋ = 0 tokens each time.
        let p = params(3, S, 3);
        let mut st = Vec::new();
        for _ in 0..3 {
            take(&p, &mut st, T0);
        }
        let admitted = (1..=10_000)
            .filter(|ms| take(&p, &mut st, T0 + ms * MS).decision == Decision::Admit)
            .count();
        assert_eq!(admitted, 30);
    }

    #[test]
    fn reset_is_when_the_next_token_arrives_and_at_rest_when_the_bucket_is_full() {
        let p = params(3, S, 3);
        let mut st = Vec::new();
        for _ in 0..3 {
            take(&p, &mut st, T0);
        }
        let e = take(&p, &mut st, T0 + 333_333_334);
        // The next token 2/3 s after T0, the bucket full again 4/3 s after, rounded up.
        assert_eq!(e.remaining, 0);
        assert_eq!(e.reset_at, T0 + 666_666_667);
        assert_eq!(e.at_rest_at, T0 + 1_333_333_334);
        // From a full bucket: two tokens left, Reset is when the third is back (1/3 s).
        let two = take(&p, &mut st, T0 + 2 * S);
        assert_eq!((two.remaining, two.reset_at), (2, T0 + 2 * S + 333_333_334));
        // A bucket left alone long enough is full.
        assert_eq!(take(&p, &mut st, T0 + 10 * S).remaining, 2);
    }

    #[test]
    fn two_per_minute_third_request_is_told_thirty_seconds_everywhere() {
        let p = params(2, 60 * S, 2);
        let mut st = Vec::new();
        take(&p, &mut st, T0);
        take(&p, &mut st, T0);
        let r = take(&p, &mut st, T0);
        assert_eq!(r.decision, Decision::Reject);
        assert_eq!((r.reset_at, r.retry_after_ns), (T0 + 30 * S, 30 * S));
        assert_eq!(
            take(&p, &mut st, T0 + 30 * S - 1).decision,
            Decision::Reject
        );
        assert_eq!(take(&p, &mut st, T0 + 30 * S).decision, Decision::Admit);
    }

    #[test]
    fn refund_restores_the_token_exactly() {
        let p = params(3, S, 3);
        let mut st = Vec::new();
        take(&p, &mut st, T0);
        let before = st.clone();
        let e = take(&p, &mut st, T0 + 100);
        assert_eq!(refund(&p, &st, &e, T0 + 200), Some(before.clone()));
        // Someone else took a token since: the refund is skipped rather than guessed.
        let mut other = st.clone();
        take(&p, &mut other, T0 + 300);
        assert_eq!(refund(&p, &other, &e, T0 + 300), None);
        // From a full bucket: refunding yields a state as good as empty.
        let first = evaluate(&p, &[], T0);
        let back =
            refund(&p, first.new_state.as_deref().unwrap_or(&[]), &first, T0).unwrap_or_default();
        assert_eq!(evaluate(&p, &back, T0).remaining, 2);
    }

    #[test]
    fn survives_extreme_instants_and_rates() {
        let p = params(1_000_000_000, 24 * 3600 * S, 1_000_000_000);
        let e = evaluate(&p, &[], u64::MAX);
        assert_eq!(e.decision, Decision::Admit);
        assert_eq!(e.remaining, 999_999_999);
        let slow = params(1, 24 * 3600 * S, 1);
        let mut st = Vec::new();
        assert_eq!(take(&slow, &mut st, u64::MAX - 1).decision, Decision::Admit);
        // The TAT saturates at the end of time instead of wrapping.
        assert_eq!(
            take(&slow, &mut st, u64::MAX - 1).decision,
            Decision::Reject
        );
        assert_eq!(
            evaluate(&params(0, S, 1), &[], T0).decision,
            Decision::Reject
        );
    }
}
