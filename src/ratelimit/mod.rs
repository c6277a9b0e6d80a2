//! Rate limiting: five algorithms as pure state machines over byte-encoded state.
//!
//! Each algorithm takes the key's current state (empty = never seen / at rest) and `now`,
//! and returns an [`Evaluation`]: the decision, the state to write back if the request is
//! admitted, and what the rate-limit headers should say. Nothing here reads a clock or
//! touches shared data; `engine.rs` runs the read-compute-CAS loop over the slot tables.

pub mod algorithm;
mod aligned;
pub mod codec;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod fixed_window;
mod gcra;
pub mod headers;
pub mod leaky_bucket;
pub mod sliding_window_counter;
pub mod sliding_window_log;
pub mod token_bucket;

#[cfg(test)]
mod proptests;

use crate::config::Algorithm;
use crate::time::UnixNanos;

/// The numbers an algorithm needs, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub algorithm: Algorithm,
    pub limit: u64,
    pub window_ns: u64,
    /// token_bucket / leaky_bucket capacity.
    pub burst: u64,
    /// leaky_bucket shaping: 0 = police.
    pub max_delay_ns: u64,
}

/// What to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through now.
    Admit,
    /// Let it through at `until` (leaky-bucket shaping); the state already counts it.
    Delay { until: UnixNanos },
    /// Over the limit; nothing was consumed.
    Reject,
}

impl Decision {
    /// `Admit` or `Reject`: the answer of an algorithm that never holds a request.
    pub fn admit_if(admitted: bool) -> Self {
        if admitted {
            Self::Admit
        } else {
            Self::Reject
        }
    }
}

/// One evaluation of one limit for one key at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    /// The state to CAS back when the decision is Admit/Delay (`None` on Reject).
    pub new_state: Option<Vec<u8>>,
    /// After the write (or unchanged state on reject): the instant from which this key's
    /// state is equivalent to empty — its slot may then be reused without losing anything.
    pub at_rest_at: UnixNanos,
    /// `X-RateLimit-Limit`.
    pub limit: u64,
    /// `X-RateLimit-Remaining` after this request.
    pub remaining: u64,
    /// `X-RateLimit-Reset` as an instant (SPEC §3 table, per algorithm).
    pub reset_at: UnixNanos,
    /// On Reject: how long until a request would be admitted (`Retry-After`, SPEC §3).
    pub retry_after_ns: u64,
}
