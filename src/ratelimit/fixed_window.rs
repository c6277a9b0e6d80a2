//! Fixed window: at most `limit` requests per window, windows aligned to the Unix epoch.
//!
//! Why it exists: it is the cheapest limit there is — one counter and the window it belongs
//! to (17 bytes) — and the easiest to explain ("100 per minute, the minute starts at :00").
//! Pick it for high-cardinality keys under a tight memory budget. Its known weakness is the
//! edge: `limit` requests at the end of one window and `limit` more at the start of the next
//! pass within moments of each other. If that matters, use the sliding window counter (same
//! memory, smoothed edges) or the log (exact, more memory).
//!
//! Windows are aligned to the epoch (see [`super::aligned`]: every worker agrees on them, and a
//! header can say when one ends).
//!
//! State: tag `0x11`, window start (u64 ns), count (u64). If Envoy's wall clock steps back
//! into an earlier window, the stored (later) window keeps counting until it has ended:
//! a clock step never hands out a fresh allowance.
//!
//! Headers: quota comes back only when the window ends, so Reset (IETF `t`) and, on a
//! rejection, Retry-After all name the end of the window; `t ≤ w` because the window
//! started at or before `now`.

use super::codec::{decode_u64s, encode_u64s, u64s_state_bytes, TAG_FIXED_WINDOW};
use super::{aligned, Decision, Evaluation, Params};
use crate::time::UnixNanos;

/// Encoded state size in bytes.
pub const STATE_BYTES: usize = u64s_state_bytes(2);

/// One window's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: UnixNanos,
    count: u64,
}

fn decode(state: &[u8]) -> Option<Window> {
    let [start, count] = decode_u64s(state, TAG_FIXED_WINDOW)?;
    Some(Window { start, count })
}

fn encode(w: Window) -> Vec<u8> {
    encode_u64s(TAG_FIXED_WINDOW, &[w.start, w.count])
}

/// The window that counts at `now`, given what is stored.
fn current(length: u64, state: &[u8], now: UnixNanos) -> Window {
    let start = aligned::start_containing(now, length);
    match decode(state) {
        Some(stored) if aligned::still_counts(stored.start, start) => stored,
        _ => Window { start, count: 0 },
    }
}

/// Admit if fewer than `limit` requests were admitted in the current window.
pub fn evaluate(params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    let length = aligned::length(params);
    let w = current(length, state, now);
    let end = aligned::end(w.start, length);
    let admitted = w.count < params.limit;
    let count = if admitted { w.count + 1 } else { w.count };
    Evaluation {
        decision: Decision::admit_if(admitted),
        new_state: admitted.then(|| {
            encode(Window {
                start: w.start,
                count,
            })
        }),
        at_rest_at: if count == 0 { now } else { end },
        limit: params.limit,
        remaining: params.limit.saturating_sub(count),
        reset_at: end,
        retry_after_ns: if admitted { 0 } else { end.saturating_sub(now) },
    }
}

/// Takes the admitted request back out of its window's count, if that window is still the
/// one stored. A later window no longer holds the request, so there is nothing to undo.
pub fn refund(
    _params: &Params,
    state: &[u8],
    admitted: &Evaluation,
    _now: UnixNanos,
) -> Option<Vec<u8>> {
    let written = decode(admitted.new_state.as_deref()?)?;
    let stored = decode(state)?;
    if stored.start != written.start || stored.count == 0 {
        return None;
    }
    Some(encode(Window {
        start: stored.start,
        count: stored.count - 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algorithm;
    use crate::time::NANOS_PER_SEC as S;

    fn params(limit: u64, window_ns: u64) -> Params {
        Params {
            algorithm: Algorithm::FixedWindow,
            limit,
            window_ns,
            burst: limit,
            max_delay_ns: 0,
        }
    }

    /// Runs `n` requests at `now`, threading the state; returns the admitted count.
    fn run(p: &Params, state: &mut Vec<u8>, now: UnixNanos, n: u64) -> u64 {
        let mut admitted = 0;
        for _ in 0..n {
            let e = evaluate(p, state, now);
            if let Some(s) = e.new_state {
                *state = s;
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn admits_exactly_limit_at_one_instant_then_rejects() {
        let p = params(5, 60 * S);
        let mut st = Vec::new();
        assert_eq!(run(&p, &mut st, 1_000 * S, 8), 5);
    }

    #[test]
    fn window_boundary_resets_the_count() {
        let p = params(2, 60 * S);
        let mut st = Vec::new();
        assert_eq!(run(&p, &mut st, 119 * S, 3), 2);
        assert_eq!(run(&p, &mut st, 120 * S - 1, 1), 0);
        assert_eq!(run(&p, &mut st, 120 * S, 3), 2);
    }

    #[test]
    fn reports_remaining_reset_and_retry_after_at_window_end() {
        let p = params(2, 60 * S);
        let now = 130 * S;
        let first = evaluate(&p, &[], now);
        assert_eq!(
            (first.remaining, first.reset_at, first.at_rest_at),
            (1, 180 * S, 180 * S)
        );
        let st = first.new_state.unwrap_or_default();
        let second = evaluate(&p, &st, now);
        let st = second.new_state.unwrap_or_default();
        assert_eq!(second.remaining, 0);
        let third = evaluate(&p, &st, now);
        assert_eq!(third.decision, Decision::Reject);
        assert_eq!(third.new_state, None);
        assert_eq!(third.retry_after_ns, 50 * S);
        assert_eq!(third.reset_at, 180 * S);
    }

    #[test]
    fn clock_stepping_back_keeps_the_later_window() {
        let p = params(1, 60 * S);
        let st = evaluate(&p, &[], 125 * S).new_state.unwrap_or_default();
        let back = evaluate(&p, &st, 100 * S);
        assert_eq!(back.decision, Decision::Reject);
        assert_eq!(back.reset_at, 180 * S);
    }

    #[test]
    fn refund_restores_the_count() {
        let p = params(2, 60 * S);
        let a = evaluate(&p, &[], 10 * S);
        let st = a.new_state.clone().unwrap_or_default();
        let b = evaluate(&p, &st, 11 * S);
        let st2 = b.new_state.clone().unwrap_or_default();
        assert_eq!(refund(&p, &st2, &b, 12 * S), Some(st));
        // After the window ended there is nothing to give back.
        assert_eq!(
            refund(
                &p,
                &evaluate(&p, &st2, 61 * S).new_state.unwrap_or_default(),
                &b,
                61 * S
            ),
            None
        );
    }

    #[test]
    fn survives_extreme_instants_and_windows() {
        let p = params(1, 24 * 3600 * S);
        let e = evaluate(&p, &[], u64::MAX);
        assert_eq!(e.decision, Decision::Admit);
        assert_eq!(e.reset_at, u64::MAX);
        let z = evaluate(&params(1, 0), &[], 5);
        assert_eq!(z.decision, Decision::Admit);
    }
}
