//! Sliding window counter: the fixed window's memory with most of the log's smoothness.
//!
//! Why it exists: the fixed window lets `2 × limit` through across a window edge, and the
//! exact log costs one timestamp per request. This keeps two counts — the previous aligned
//! window's and the current one's (25 bytes) — and admits while
//!
//! ```text
//! previous · (1 − elapsed / window) + current < limit
//! ```
//!
//! i.e. it assumes the previous window's requests were spread evenly and counts the part of
//! them that still lies inside the trailing window. Pick it for per-client API limits where
//! edges matter but memory does too (Cloudflare's and nginx's choice). It is an estimate:
//! the trailing-window count can exceed `limit` when the previous window's traffic was
//! bunched at its end, but no aligned window ever admits more than `limit`.
//!
//! All arithmetic is integer (u128): `previous · (window − elapsed) + current · window <
//! limit · window`. State: tag `0x31`, current window start (u64 ns), previous, current
//! (u64 each). A clock that steps back into an earlier window keeps the stored window.
//!
//! Headers: Reset (IETF `t`) is the earliest instant at which one more request than
//! Remaining fits, solved from the inequality above (the previous window's weight keeps
//! falling, so that is usually well before the window ends); on a rejection it is the retry
//! instant, and Retry-After says the same. It is never more than one window away: the
//! integer boundary can fall 1 ns into the next window, which Reset and `t` leave out
//! (see [`super::within_one_window`]).

use super::codec::{decode_u64s, encode_u64s, u64s_state_bytes, TAG_SLIDING_WINDOW_COUNTER};
use super::{aligned, within_one_window, Decision, Evaluation, Params};
use crate::time::UnixNanos;

/// Encoded state size in bytes.
pub const STATE_BYTES: usize = u64s_state_bytes(3);

/// The two counts as seen from one aligned window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    start: UnixNanos,
    prev: u64,
    curr: u64,
}

fn decode(state: &[u8]) -> Option<Counts> {
    let [start, prev, curr] = decode_u64s(state, TAG_SLIDING_WINDOW_COUNTER)?;
    Some(Counts { start, prev, curr })
}

fn encode(c: Counts) -> Vec<u8> {
    encode_u64s(TAG_SLIDING_WINDOW_COUNTER, &[c.start, c.prev, c.curr])
}

/// The counts as of the aligned window that contains `now`.
fn current(window: u64, state: &[u8], now: UnixNanos) -> Counts {
    let start = aligned::start_containing(now, window);
    match decode(state) {
        Some(c) if aligned::still_counts(c.start, start) => c,
        Some(c) if aligned::is_next(c.start, start, window) => Counts {
            start,
            prev: c.curr,
            curr: 0,
        },
        _ => Counts {
            start,
            prev: 0,
            curr: 0,
        },
    }
}

/// Whether one more request is admitted `elapsed` into a window holding `c`.
fn admits(c: Counts, limit: u64, window: u64, elapsed: u64) -> bool {
    let w = u128::from(window);
    let weighted = (u128::from(c.prev) * u128::from(window.saturating_sub(elapsed)))
        .saturating_add(u128::from(c.curr) * w);
    weighted < u128::from(limit) * w
}

/// The earliest offset into the window of `c` at which it admits one request, if any:
/// the smallest `e` with `prev · (window − e) < (limit − curr) · window`.
fn earliest_offset(c: Counts, limit: u64, window: u64) -> Option<u64> {
    let room = u128::from(limit.checked_sub(c.curr).filter(|r| *r > 0)?) * u128::from(window);
    if c.prev == 0 {
        return Some(0);
    }
    // prev · (window − e) ≤ room − 1  ⇔  window − e ≤ (room − 1) / prev.
    let slack = (room - 1) / u128::from(c.prev);
    let e = u128::from(window).saturating_sub(slack);
    u64::try_from(e).ok().filter(|e| *e < window)
}

/// The earliest instant ≥ `now` at which `k` (≥ 1) requests would all be admitted at once,
/// with no other request in between: `k = 1` is the retry instant of a rejected request,
/// `k = remaining + 1` the instant the next unit of quota comes back. `None` if never
/// (`k > limit`).
fn room_for(c: Counts, k: u64, limit: u64, window: u64, now: UnixNanos) -> Option<UnixNanos> {
    if limit == 0 {
        // Admits nothing, ever; say "one window" like the other algorithms.
        return Some(now.saturating_add(window));
    }
    if k == 0 || k > limit {
        return None;
    }
    // At most three windows: this one, the next (previous = current), the one after (empty,
    // where `k ≤ limit` fits at once). `k` requests fit when the first `k − 1` of them,
    // counted as current, still leave room for one more.
    let mut c = c;
    for _ in 0..3 {
        let with = Counts {
            curr: c.curr.saturating_add(k - 1),
            ..c
        };
        if let Some(e) = earliest_offset(with, limit, window) {
            return Some(c.start.saturating_add(e).max(now));
        }
        c = Counts {
            start: aligned::end(c.start, window),
            prev: c.curr,
            curr: 0,
        };
    }
    Some(c.start.max(now))
}

/// Admit if the weighted count stays under `limit`.
pub fn evaluate(params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    let window = aligned::length(params);
    let c = current(window, state, now);
    let elapsed = now.saturating_sub(c.start);
    let end = aligned::end(c.start, window);
    let admitted = admits(c, params.limit, window, elapsed);
    let after = if admitted {
        Counts {
            curr: c.curr + 1,
            ..c
        }
    } else {
        c
    };
    // Further admissions possible now: limit − current − ⌊prev · (window − elapsed) / window⌋.
    let carried =
        u128::from(after.prev) * u128::from(window.saturating_sub(elapsed)) / u128::from(window);
    let remaining = u128::from(params.limit)
        .saturating_sub(u128::from(after.curr))
        .saturating_sub(carried);
    let at_rest_at = if after.curr > 0 {
        end.saturating_add(window)
    } else if after.prev > 0 {
        end
    } else {
        now
    };
    let remaining = u64::try_from(remaining).unwrap_or(u64::MAX);
    let next = room_for(
        after,
        remaining.saturating_add(1),
        params.limit,
        window,
        now,
    );
    let reset_at = next.map_or(now, |at| within_one_window(at, now, window, 1));
    Evaluation {
        decision: Decision::admit_if(admitted),
        new_state: admitted.then(|| encode(after)),
        at_rest_at,
        limit: params.limit,
        remaining,
        reset_at,
        retry_after_ns: if admitted {
            0
        } else {
            next.unwrap_or(reset_at).saturating_sub(now).max(1)
        },
    }
}

/// Takes the admitted request back out of whichever count holds it now: the current
/// window's, or the previous one's if the window has since moved on by one.
pub fn refund(
    params: &Params,
    state: &[u8],
    admitted: &Evaluation,
    _now: UnixNanos,
) -> Option<Vec<u8>> {
    let window = aligned::length(params);
    let written = decode(admitted.new_state.as_deref()?)?;
    let stored = decode(state)?;
    if stored.start == written.start && stored.curr > 0 {
        Some(encode(Counts {
            curr: stored.curr - 1,
            ..stored
        }))
    } else if aligned::is_next(written.start, stored.start, window) && stored.prev > 0 {
        Some(encode(Counts {
            prev: stored.prev - 1,
            ..stored
        }))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algorithm;
    use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as S};

    fn params(limit: u64, window_ns: u64) -> Params {
        Params {
            algorithm: Algorithm::SlidingWindowCounter,
            limit,
            window_ns,
            burst: limit,
            max_delay_ns: 0,
        }
    }

    fn run(p: &Params, state: &mut Vec<u8>, now: UnixNanos, n: u64) -> u64 {
        let mut admitted = 0;
        for _ in 0..n {
            if let Some(s) = evaluate(p, state, now).new_state {
                *state = s;
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn admits_exactly_limit_at_one_instant_then_rejects() {
        let p = params(10, 10 * S);
        let mut st = Vec::new();
        assert_eq!(run(&p, &mut st, 100 * S, 15), 10);
    }

    #[test]
    fn weights_the_previous_window_by_the_part_still_trailing() {
        // 10 in the previous window, 30% into this one: 10 · 0.7 = 7 still count, 3 fit.
        let p = params(10, 10 * S);
        let mut st = Vec::new();
        assert_eq!(run(&p, &mut st, 100 * S, 10), 10);
        let now = 113 * S;
        assert_eq!(evaluate(&p, &st, now).remaining, 2);
        assert_eq!(run(&p, &mut st, now, 10), 3);
        // 50% in: 5 carried + 3 current = 8, two more.
        assert_eq!(run(&p, &mut st, 115 * S, 10), 2);
    }

    #[test]
    fn retry_after_solves_for_the_weighted_count() {
        // 10 in the previous window, 3 now at 30%: 7 + 3 = 10. Admits once
        // 10 · (1 − e) + 3 < 10, i.e. e > 0.3 → one nanosecond later.
        let p = params(10, 10 * S);
        let mut st = Vec::new();
        run(&p, &mut st, 100 * S, 10);
        run(&p, &mut st, 113 * S, 3);
        let r = evaluate(&p, &st, 113 * S);
        assert_eq!(r.decision, Decision::Reject);
        assert_eq!(r.retry_after_ns, 1);
        assert_eq!(r.reset_at, 113 * S + 1);
        // 20 with limit 10 in the window: wait for the next one, and then 10·(1−e) < 10.
        let p = params(10, 10 * S);
        let mut st = encode(Counts {
            start: 100 * S,
            prev: 0,
            curr: 10,
        });
        let r = evaluate(&p, &st, 104 * S);
        assert_eq!(r.retry_after_ns, 6 * S + 1);
        assert_eq!(run(&p, &mut st, 110 * S, 1), 0);
        assert_eq!(run(&p, &mut st, 110 * S + 1, 1), 1);
    }

    #[test]
    fn reset_is_when_one_more_fits_and_never_more_than_a_window_away() {
        let p = params(10, 10 * S);
        let mut st = encode(Counts {
            start: 110 * S,
            prev: 10,
            curr: 1,
        });
        // 45% in: the previous 10 weigh 5.5, so 5.5 + 2 leaves room for 3 more (⌊5.5⌋ = 5
        // carried). A 4th fits once the weight drops below 5: just after 115 s.
        let e = evaluate(&p, &st, 114 * S + 500 * MS);
        assert_eq!((e.decision, e.remaining), (Decision::Admit, 3));
        assert_eq!(e.reset_at, 115 * S + 1);
        // Full exactly at a window's start: the exact retry lies 1 ns into the next window;
        // Reset stays one window ahead (t = w), the retry wait stays exact.
        st = Vec::new();
        run(&p, &mut st, 200 * S, 10);
        let r = evaluate(&p, &st, 200 * S);
        assert_eq!(r.decision, Decision::Reject);
        assert_eq!((r.reset_at, r.retry_after_ns), (210 * S, 10 * S + 1));
        assert_eq!(evaluate(&p, &st, 210 * S).decision, Decision::Reject);
        assert_eq!(evaluate(&p, &st, 210 * S + 1).decision, Decision::Admit);
    }

    #[test]
    fn retry_after_skips_a_window_when_current_is_far_over() {
        // The limit was lowered: 50 now counted against a limit of 10 → two windows away.
        let p = params(10, 10 * S);
        let st = encode(Counts {
            start: 100 * S,
            prev: 0,
            curr: 50,
        });
        let r = evaluate(&p, &st, 104 * S);
        // Next window: 50·(1 − e) < 10 ⇔ e > 0.8 → 118 s + 1 ns.
        assert_eq!(r.retry_after_ns, 14 * S + 1);
        let st = encode(Counts {
            start: 100 * S,
            prev: 0,
            curr: 200_000_000_000,
        });
        assert_eq!(evaluate(&p, &st, 104 * S).retry_after_ns, 16 * S);
    }

    #[test]
    fn forgets_everything_after_two_windows() {
        let p = params(3, 10 * S);
        let mut st = Vec::new();
        run(&p, &mut st, 100 * S, 3);
        let e = evaluate(&p, &st, 100 * S);
        assert_eq!(e.at_rest_at, 120 * S);
        assert_eq!(run(&p, &mut st, 120 * S, 5), 3);
    }

    #[test]
    fn refund_follows_the_request_into_the_previous_window() {
        let p = params(10, 10 * S);
        let a = evaluate(&p, &[], 105 * S);
        let st = a.new_state.clone().unwrap_or_default();
        assert_eq!(
            refund(&p, &st, &a, 105 * S).and_then(|s| decode(&s)),
            decode(&encode(Counts {
                start: 100 * S,
                prev: 0,
                curr: 0
            }))
        );
        let moved = evaluate(&p, &st, 111 * S).new_state.unwrap_or_default();
        let back = refund(&p, &moved, &a, 111 * S).and_then(|s| decode(&s));
        assert_eq!(
            back,
            Some(Counts {
                start: 110 * S,
                prev: 0,
                curr: 1
            })
        );
        let gone = evaluate(&p, &moved, 125 * S).new_state.unwrap_or_default();
        assert_eq!(refund(&p, &gone, &a, 125 * S), None);
    }

    #[test]
    fn survives_extreme_instants_and_limits() {
        let p = params(1_000_000_000, 24 * 3600 * S);
        let e = evaluate(&p, &[], u64::MAX);
        assert_eq!(e.decision, Decision::Admit);
        assert_eq!(e.remaining, 999_999_999);
        let full = encode(Counts {
            start: u64::MAX - 5,
            prev: u64::MAX,
            curr: u64::MAX,
        });
        assert_eq!(evaluate(&p, &full, u64::MAX).decision, Decision::Reject);
        assert_eq!(evaluate(&params(0, 1), &[], 7).decision, Decision::Reject);
    }
}
