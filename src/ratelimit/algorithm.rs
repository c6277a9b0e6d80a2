//! One door to the five algorithms: pick by [`Params::algorithm`].
//!
//! Every algorithm is a pure function of `(params, state bytes, now)`: it never reads a clock
//! or touches shared data, so the engine can run it inside a read-compute-CAS loop as many
//! times as conflicts demand. An empty state means "never seen, or at rest"; a state that does
//! not decode (another algorithm's, a future layout, garbage) is read as empty too — it can
//! make a limit forget, never make a request fail.

use super::{fixed_window, leaky_bucket, sliding_window_counter, sliding_window_log, token_bucket};
use super::{Evaluation, Params};
use crate::config::Algorithm;
use crate::time::UnixNanos;

/// Decides one request at `now`. On Admit / Delay, `new_state` is what to CAS back.
pub fn evaluate(params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    match params.algorithm {
        Algorithm::FixedWindow => fixed_window::evaluate(params, state, now),
        Algorithm::SlidingWindowLog => sliding_window_log::evaluate(params, state, now),
        Algorithm::SlidingWindowCounter => sliding_window_counter::evaluate(params, state, now),
        Algorithm::TokenBucket => token_bucket::evaluate(params, state, now),
        Algorithm::LeakyBucket => leaky_bucket::evaluate(params, state, now),
    }
}

/// Undoes one admission (`admitted` is the evaluation that admitted it) against the key's
/// current `state`: the state to CAS back, or `None` when there is nothing (safe) to undo.
///
/// Used when a later limit rejects a request that an earlier one already counted. Exact when
/// `state` is still the one `admitted` wrote; when other requests wrote since, the window
/// algorithms still undo exactly (they find the request's own count or log entry), while the
/// buckets give nothing back rather than risk handing out a token twice.
pub fn refund(
    params: &Params,
    state: &[u8],
    admitted: &Evaluation,
    now: UnixNanos,
) -> Option<Vec<u8>> {
    match params.algorithm {
        Algorithm::FixedWindow => fixed_window::refund(params, state, admitted, now),
        Algorithm::SlidingWindowLog => sliding_window_log::refund(params, state, admitted, now),
        Algorithm::SlidingWindowCounter => {
            sliding_window_counter::refund(params, state, admitted, now)
        }
        Algorithm::TokenBucket => token_bucket::refund(params, state, admitted, now),
        Algorithm::LeakyBucket => leaky_bucket::refund(params, state, admitted, now),
    }
}

/// The largest state an algorithm writes for these params (for the configured memory bound).
pub fn max_state_bytes(params: &Params) -> usize {
    match params.algorithm {
        Algorithm::FixedWindow => fixed_window::STATE_BYTES,
        Algorithm::SlidingWindowLog => sliding_window_log::max_state_bytes(params),
        Algorithm::SlidingWindowCounter => sliding_window_counter::STATE_BYTES,
        Algorithm::TokenBucket => token_bucket::STATE_BYTES,
        Algorithm::LeakyBucket => leaky_bucket::STATE_BYTES,
    }
}
