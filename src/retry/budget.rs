//! The retry budget: retries may add at most a fixed fraction of load to a struggling upstream.
//!
//! # Why budgets and not only max retries?
//!
//! `max_retries` bounds one request, not the system. When an upstream fails, *every* request
//! fails, and with `max_retries: 3` every client sends four requests where it used to send one:
//! the thundering herd — 1,000 clients, a failure, 2,000 requests, a worse failure — only
//! now multiplied by four, and again by four at every layer that retries. Jitter spreads the
//! herd out in time; only a budget caps its size. As in finagle and tower's `TpsBudget`, each
//! original request deposits `ratio` of a retry, and each retry withdraws one; a floor of
//! `min_per_second` retries keeps low-traffic upstreams retryable. Under a total outage the
//! extra load is therefore at most `ratio` of the traffic plus the floor, instead of
//! `max_retries` times the traffic.
//!
//! # Shared state
//!
//! The budget is shared by every worker VM of one Envoy, so it is a small byte state that the
//! caller reads, passes here, and compare-and-swaps back (re-running on conflict; both
//! functions are pure). The window is [`WINDOW`] (10 s) cut into 1 s buckets of
//! (deposits, withdrawals), see [`crate::window`]. Encoding, [`STATE_LEN`] = 97 bytes:
//! `[0]` version = 1, then the window (bucket width, head bucket, 10 × (u32, u32)), little-endian.
//! Bytes that do not decode — empty, another version, wrong length or width — are a fresh,
//! empty budget: a budget that forgets is harmless, one that panics is not.

use std::time::Duration;

use crate::config::RetryBudget;
use crate::time::{UnixNanos, NANOS_PER_SEC};
use crate::window::{Window, ENCODED_LEN};

/// How far back deposits and withdrawals count.
pub const WINDOW: Duration = Duration::from_secs(10);
const WINDOW_SECS: u64 = 10;
const VERSION: u8 = 1;
/// Encoded size in bytes.
pub const STATE_LEN: usize = 1 + ENCODED_LEN;

/// Records one original (non-retry) request. Returns the new state to write.
pub fn deposit(state: &[u8], now: UnixNanos) -> Vec<u8> {
    let mut w = decode(state);
    w.add(now, 1, 0);
    encode(&w)
}

/// Takes one retry from the budget if there is one. Returns whether the retry may go ahead and,
/// when it may, the new state to write (`None`: nothing to write).
pub fn try_withdraw(cfg: &RetryBudget, state: &[u8], now: UnixNanos) -> (bool, Option<Vec<u8>>) {
    let mut w = decode(state);
    w.advance(now);
    if balance_of(cfg, &w) < 1 {
        return (false, None);
    }
    w.add(now, 0, 1);
    (true, Some(encode(&w)))
}

/// Retries the budget would allow right now (for metrics and tests).
pub fn balance(cfg: &RetryBudget, state: &[u8], now: UnixNanos) -> i64 {
    let mut w = decode(state);
    w.advance(now);
    balance_of(cfg, &w)
}

fn balance_of(cfg: &RetryBudget, w: &Window) -> i64 {
    let (deposits, withdrawals) = w.totals();
    // `as` from f64 saturates (NaN → 0): a nonsense ratio cannot panic here.
    let earned = (cfg.ratio.max(0.0) * deposits as f64).floor() as i64;
    let reserve = i64::from(cfg.min_per_second).saturating_mul(WINDOW_SECS as i64);
    earned
        .saturating_add(reserve)
        .saturating_sub(i64::try_from(withdrawals).unwrap_or(i64::MAX))
}

fn decode(state: &[u8]) -> Window {
    match state.split_first() {
        Some((&VERSION, rest)) if rest.len() == ENCODED_LEN => Window::decode(rest)
            .filter(|w| w.width_ns() == NANOS_PER_SEC)
            .unwrap_or_else(|| Window::new(NANOS_PER_SEC)),
        _ => Window::new(NANOS_PER_SEC),
    }
}

fn encode(w: &Window) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATE_LEN);
    out.push(VERSION);
    w.encode_into(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;
    const T0: u64 = 1_700_000_000 * SEC;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            ratio,
            min_per_second,
        }
    }

    #[test]
    fn empty_budget_allows_only_the_reserve() {
        let cfg = budget(0.2, 1);
        let mut state = Vec::new();
        let mut allowed = 0;
        for _ in 0..20 {
            let (ok, next) = try_withdraw(&cfg, &state, T0);
            if let Some(next) = next {
                state = next;
            }
            allowed += u32::from(ok);
        }
        assert_eq!(allowed, 10, "min_per_second · 10 s");
    }

    #[test]
    fn deposits_earn_ratio_retries() {
        let cfg = budget(0.5, 0);
        let mut state = Vec::new();
        for _ in 0..4 {
            state = deposit(&state, T0);
        }
        assert_eq!(balance(&cfg, &state, T0), 2);
        let (ok, next) = try_withdraw(&cfg, &state, T0);
        assert!(ok);
        let state = next.unwrap();
        assert_eq!(balance(&cfg, &state, T0), 1);
    }

    #[test]
    fn deposits_expire_after_the_window() {
        let cfg = budget(1.0, 0);
        let state = deposit(&[], T0);
        assert_eq!(balance(&cfg, &state, T0 + 9 * SEC), 1);
        assert_eq!(balance(&cfg, &state, T0 + 10 * SEC), 0);
        assert!(!try_withdraw(&cfg, &state, T0 + 10 * SEC).0);
    }

    #[test]
    fn refused_withdrawal_writes_nothing() {
        assert_eq!(try_withdraw(&budget(0.2, 0), &[], T0), (false, None));
    }

    #[test]
    fn garbage_state_is_a_fresh_budget() {
        let cfg = budget(0.0, 1);
        for bad in [
            vec![],
            vec![9; STATE_LEN],
            vec![1; 5],
            vec![1; STATE_LEN + 1],
        ] {
            assert_eq!(balance(&cfg, &bad, T0), 10);
        }
        assert_eq!(deposit(&[0xff; 300], T0).len(), STATE_LEN);
    }

    #[test]
    fn outage_retries_stay_within_ratio_of_requests_plus_floor() {
        // 1000 requests/s for 60 s, every attempt failing, each request wanting 3 retries.
        let cfg = budget(0.2, 10);
        let (rps, secs, wanted) = (1_000u64, 60u64, 3);
        let mut state = Vec::new();
        let mut retries = 0u64;
        for i in 0..rps * secs {
            let now = T0 + i * (SEC / rps);
            state = deposit(&state, now);
            for _ in 0..wanted {
                let (ok, next) = try_withdraw(&cfg, &state, now);
                if let Some(next) = next {
                    state = next;
                }
                retries += u64::from(ok);
            }
        }
        let bound = (cfg.ratio * (rps * secs) as f64) as u64 + u64::from(cfg.min_per_second) * secs;
        assert!(retries <= bound, "{retries} > {bound}");
        // And the budget is not needlessly stingy: most of the allowance is used.
        assert!(retries >= bound * 9 / 10, "{retries} ≪ {bound}");
        assert!(retries < rps * secs * wanted / 10);
    }
}
