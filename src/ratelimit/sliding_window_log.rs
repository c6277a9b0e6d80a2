//! Sliding window log: exactly `limit` requests in any trailing `window`.
//!
//! Why it exists: it is the only algorithm here with no approximation at all — no window
//! edges (fixed window), no "evenly spread" assumption (counter), no burst-plus-rate
//! envelope (buckets). Pick it when a limit is a promise ("at most 5 password attempts in any
//! 15 minutes") and `limit` is small. It pays with memory: one timestamp per admitted request
//! still in the window, which is why config caps `limit` at 10 000.
//!
//! Encoding (tag `0x21`): the oldest entry as a u64 of Unix **milliseconds**, then each
//! following entry as a LEB128 varint delta in milliseconds. Precision is 1 ms: a request at
//! `now` is logged at `⌈now⌉ms`, never earlier, so an entry never leaves the window before its
//! request really did — the `≤ limit in every trailing window` bound holds at nanosecond
//! precision; the cost is that an entry may count up to 1 ms longer. Deltas between entries
//! in one window are below `window`, so a burst costs 1 byte per request and a 24-hour window
//! at most 4 bytes per request; [`max_state_bytes`] gives the bound.
//!
//! Entries that left the window are dropped on every write, and only the newest `limit` are
//! ever kept (older ones cannot change a decision), so a lowered limit shrinks the state.
//! If the wall clock steps back, the log keeps its newest entry as "now" until real time
//! catches up (new entries are logged no earlier than it): memory stays bounded and nothing
//! already logged is forgotten early.
//!
//! Headers: quota comes back when the oldest logged request leaves the trailing window, so
//! that is Reset (IETF `t`) and, on a rejection, Retry-After. Logged at the next
//! millisecond, an entry may leave up to 1 ms more than a window after `now`; Reset and `t`
//! then say exactly one window (`t = w`, not `w + 1`) while Retry-After keeps the exact wait
//! (see [`super::within_one_window`]).

use super::codec::TAG_SLIDING_WINDOW_LOG;
use super::codec::{payload_any_len, push_varint, read_u64, read_varint, varint_len};
use super::{within_one_window, Decision, Evaluation, Params};
use crate::time::{UnixNanos, NANOS_PER_MILLI};

/// The largest encoding a log of `params.limit` entries can have.
pub fn max_state_bytes(params: &Params) -> usize {
    let per_entry = varint_len(params.window_ns.div_ceil(NANOS_PER_MILLI).saturating_add(1));
    let limit = usize::try_from(params.limit).unwrap_or(usize::MAX);
    if limit == 0 {
        return 0;
    }
    (limit - 1).saturating_mul(per_entry).saturating_add(9)
}

/// The logged instants, oldest first, in Unix ms; `None` if undecodable.
fn decode(state: &[u8]) -> Option<Vec<u64>> {
    let p = payload_any_len(state, TAG_SLIDING_WINDOW_LOG)?;
    let mut last = read_u64(p, 0)?;
    let mut entries = vec![last];
    let mut rest = p.get(8..)?;
    while !rest.is_empty() {
        let (delta, used) = read_varint(rest)?;
        last = last.checked_add(delta)?;
        entries.push(last);
        rest = rest.get(used..)?;
    }
    Some(entries)
}

fn encode(entries: &[u64]) -> Vec<u8> {
    let Some((&first, _)) = entries.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(9 + entries.len());
    out.push(TAG_SLIDING_WINDOW_LOG);
    out.extend_from_slice(&first.to_le_bytes());
    for pair in entries.windows(2) {
        if let [a, b] = pair {
            push_varint(&mut out, b.saturating_sub(*a));
        }
    }
    out
}

/// The instant (ns) at which an entry logged at `ms` leaves the window.
fn expiry(ms: u64, window: u64) -> UnixNanos {
    ms.saturating_mul(NANOS_PER_MILLI).saturating_add(window)
}

/// The entries that still count at `now`, and the instant they are judged at (`now`, or the
/// newest entry's if the clock stepped back).
fn live(state: &[u8], window: u64, now: UnixNanos) -> (Vec<u64>, UnixNanos) {
    let entries = decode(state).unwrap_or_default();
    let now_ms = now.div_ceil(NANOS_PER_MILLI);
    let reference = match entries.last() {
        Some(&newest) if newest > now_ms => newest.saturating_mul(NANOS_PER_MILLI),
        _ => now,
    };
    let gone = entries.partition_point(|&e| expiry(e, window) <= reference);
    (
        entries.get(gone..).map(<[u64]>::to_vec).unwrap_or_default(),
        reference,
    )
}

/// Admit if fewer than `limit` logged requests are still inside the trailing window.
pub fn evaluate(params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    let window = params.window_ns.max(1);
    let (mut entries, reference) = live(state, window, now);
    let limit = usize::try_from(params.limit).unwrap_or(usize::MAX);
    let admitted = entries.len() < limit;
    if admitted {
        let newest = entries
            .last()
            .copied()
            .unwrap_or(0)
            .max(now.div_ceil(NANOS_PER_MILLI));
        entries.push(newest);
    }
    let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    let oldest_expiry = entries.first().map_or(reference, |&e| expiry(e, window));
    // More quota comes back when the oldest entry leaves; when the limit was lowered, more
    // than one entry may have to leave first.
    let retry_at = entries
        .len()
        .checked_sub(limit)
        .and_then(|i| entries.get(i))
        .map_or(oldest_expiry, |&e| expiry(e, window));
    Evaluation {
        decision: Decision::admit_if(admitted),
        new_state: admitted.then(|| encode(&entries)),
        at_rest_at: entries.last().map_or(now, |&e| expiry(e, window)),
        limit: params.limit,
        remaining: params.limit.saturating_sub(count),
        reset_at: if limit == 0 {
            now.saturating_add(window)
        } else {
            within_one_window(retry_at, now, window, NANOS_PER_MILLI)
        },
        retry_after_ns: if admitted {
            0
        } else if limit == 0 {
            window
        } else {
            retry_at.saturating_sub(now).max(1)
        },
    }
}

/// Removes the admitted request's entry (the newest one it wrote) wherever it now is.
pub fn refund(
    _params: &Params,
    state: &[u8],
    admitted: &Evaluation,
    _now: UnixNanos,
) -> Option<Vec<u8>> {
    let ours = *decode(admitted.new_state.as_deref()?)?.last()?;
    let mut entries = decode(state)?;
    let at = entries.iter().rposition(|&e| e == ours)?;
    entries.remove(at);
    Some(encode(&entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algorithm;
    use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as S};

    fn params(limit: u64, window_ns: u64) -> Params {
        Params {
            algorithm: Algorithm::SlidingWindowLog,
            limit,
            window_ns,
            burst: limit,
            max_delay_ns: 0,
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
    fn admits_exactly_limit_at_one_instant_in_one_byte_each() {
        let p = params(100, 60 * S);
        let mut st = Vec::new();
        let admitted = (0..120)
            .filter(|_| go(&p, &mut st, T0).decision == Decision::Admit)
            .count();
        assert_eq!(admitted, 100);
        assert_eq!(st.len(), 9 + 99);
    }

    #[test]
    fn admits_again_exactly_when_the_oldest_entry_leaves_the_trailing_window() {
        let p = params(3, 10 * S);
        let mut st = Vec::new();
        for at in [0, 4, 8] {
            assert_eq!(go(&p, &mut st, T0 + at * S).decision, Decision::Admit);
        }
        let r = go(&p, &mut st, T0 + 9 * S);
        assert_eq!(r.decision, Decision::Reject);
        assert_eq!((r.reset_at, r.retry_after_ns), (T0 + 10 * S, S));
        assert_eq!(go(&p, &mut st, T0 + 10 * S - 1).decision, Decision::Reject);
        let a = go(&p, &mut st, T0 + 10 * S);
        assert_eq!(
            (a.decision, a.remaining, a.reset_at),
            (Decision::Admit, 0, T0 + 14 * S)
        );
        assert_eq!(a.at_rest_at, T0 + 20 * S);
        assert_eq!(go(&p, &mut st, T0 + 14 * S - 1).decision, Decision::Reject);
        assert_eq!(go(&p, &mut st, T0 + 14 * S).decision, Decision::Admit);
    }

    #[test]
    fn logs_sub_millisecond_requests_at_the_next_millisecond() {
        let p = params(1, S);
        let mut st = Vec::new();
        go(&p, &mut st, T0 + 300_000);
        // Counted until ⌈T0 + 0.3 ms⌉ + 1 s: never shorter than the real window.
        assert_eq!(go(&p, &mut st, T0 + S + 300_000).decision, Decision::Reject);
        assert_eq!(go(&p, &mut st, T0 + S + MS).decision, Decision::Admit);
    }

    #[test]
    fn a_lowered_limit_waits_for_enough_entries_to_leave() {
        let mut st = Vec::new();
        for at in 0..5 {
            go(&params(5, 10 * S), &mut st, T0 + at * S);
        }
        let r = evaluate(&params(2, 10 * S), &st, T0 + 5 * S);
        assert_eq!(r.decision, Decision::Reject);
        // Entries at 0..4 s; a request fits once only one remains: when the 3 s one leaves.
        assert_eq!(r.retry_after_ns, 8 * S);
        // The next write keeps at most the newest `limit` entries.
        let mut st2 = st.clone();
        assert_eq!(
            go(&params(2, 10 * S), &mut st2, T0 + 13 * S).decision,
            Decision::Admit
        );
        assert_eq!(decode(&st2).map(|e| e.len()), Some(2));
    }

    #[test]
    fn stays_within_max_state_bytes_over_a_full_day() {
        let p = params(10_000, 24 * 3600 * S);
        assert_eq!(max_state_bytes(&p), 9 + 9_999 * 4);
        // 9 999 entries spread over the day, then one more admitted request.
        let spread: Vec<u64> = (0..9_999).map(|i| T0 / MS + i * 8_640).collect();
        let mut st = encode(&spread);
        let now = T0 + 9_999 * 8_640 * MS;
        assert_eq!(go(&p, &mut st, now).decision, Decision::Admit);
        assert!(st.len() <= max_state_bytes(&p));
        assert_eq!(
            evaluate(&p, &st, T0 + 24 * 3600 * S - 1).decision,
            Decision::Reject
        );
    }

    #[test]
    fn refund_removes_exactly_its_own_entry() {
        let p = params(3, 10 * S);
        let mut st = Vec::new();
        go(&p, &mut st, T0);
        let before = st.clone();
        let e = go(&p, &mut st, T0 + S);
        assert_eq!(refund(&p, &st, &e, T0 + S), Some(before));
        // Even after a later request was logged.
        go(&p, &mut st, T0 + 2 * S);
        let back = refund(&p, &st, &e, T0 + 2 * S).unwrap_or_default();
        assert_eq!(decode(&back), Some(vec![T0 / MS, T0 / MS + 2_000]));
    }

    #[test]
    fn a_clock_step_back_forgets_nothing() {
        let p = params(2, 10 * S);
        let mut st = Vec::new();
        go(&p, &mut st, T0 + 100 * S);
        go(&p, &mut st, T0 + 100 * S);
        assert_eq!(go(&p, &mut st, T0).decision, Decision::Reject);
        assert_eq!(go(&p, &mut st, T0 + 110 * S).decision, Decision::Admit);
    }

    #[test]
    fn garbage_state_reads_as_empty() {
        let p = params(2, S);
        for junk in [
            &[0x21u8][..],
            &[0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x80],
            &[0x21, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 5],
        ] {
            assert_eq!(evaluate(&p, junk, T0).remaining, 1);
        }
    }
}
