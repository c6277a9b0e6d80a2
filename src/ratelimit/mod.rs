//! Rate limiting: five algorithms as pure state machines over byte-encoded state.
//!
//! Each algorithm takes the key's current state (empty = never seen / at rest) and `now`,
//! and returns an [`Evaluation`]: the decision, the state to write back if the request is
//! admitted, and what the rate-limit headers should say. Nothing here reads a clock or
//! touches shared data; `engine.rs` runs the read-compute-CAS loop over the slot tables, and
//! `admission.rs` turns its verdict into what the request sees (refuse, hold, pass).

pub mod admission;
pub mod algorithm;
mod aligned;
pub mod codec;
mod commit;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod fixed_window;
mod gcra;
pub mod global;
pub mod headers;
pub mod leaky_bucket;
mod limit;
pub mod sliding_window_counter;
pub mod sliding_window_log;
pub mod token_bucket;
mod wide;

#[cfg(test)]
mod header_proptests;
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
    /// When more quota comes back: the instant from which one more request than `remaining`
    /// would be admitted at once, if nothing else came in between (`now` if no more ever
    /// will). On Reject that is the retry instant. `X-RateLimit-Reset` and the IETF `t` both
    /// say this instant; see [`headers`] for the rule and each algorithm for its details.
    pub reset_at: UnixNanos,
    /// On Reject: exactly how long until a request would be admitted (`Retry-After`, rounded
    /// up). Never less than `reset_at − now`; longer only where [`within_one_window`] kept
    /// `reset_at` inside the window.
    pub retry_after_ns: u64,
}

impl Evaluation {
    /// This evaluation without the state to write: what the response headers need, without
    /// copying the state (an allocation per request on the hot path).
    pub fn without_state(&self) -> Self {
        Self {
            decision: self.decision,
            new_state: None,
            at_rest_at: self.at_rest_at,
            limit: self.limit,
            remaining: self.remaining,
            reset_at: self.reset_at,
            retry_after_ns: self.retry_after_ns,
        }
    }
}

/// `exact` (the instant more quota comes back), but no later than one window after `now`
/// when it lies at most `precision_ns` beyond it.
///
/// Why: the IETF `t` should never exceed the policy's window `w`, and without precision
/// effects it never does. The sliding window log keeps its entries to the millisecond (an
/// entry logged at the next millisecond may count up to 1 ms past its window), and the
/// sliding window counter's integer boundary can fall 1 ns into the next window. Rounded up
/// to whole seconds, such a sliver would turn `t = 60` into `t = 61` on a 60 s window; it is
/// shaved here, while `Retry-After` keeps the exact wait. A longer excess is real (a limit
/// lowered by a reload, a clock that stepped back) and is reported as it is.
pub fn within_one_window(
    exact: UnixNanos,
    now: UnixNanos,
    window: u64,
    precision_ns: u64,
) -> UnixNanos {
    let edge = now.saturating_add(window);
    if exact > edge && exact - edge <= precision_ns {
        edge
    } else {
        exact
    }
}
