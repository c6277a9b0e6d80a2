//! The circuit breaker: stop calling an upstream that is failing, then test it carefully.
//!
//! When an upstream is down, every request that still goes to it waits for a timeout, holds a
//! connection and feeds a retry storm — and the upstream, trying to recover, is kept under load.
//! The breaker watches attempt outcomes and, after `failure_threshold` consecutive failures or a
//! failure rate over `failure_rate.window` (once `minimum_calls` calls are in the window), opens:
//! requests fail fast (to the fallback chain, else `503` + `Retry-After`). After
//! `reset_timeout` it half-opens and lets at most `half_open_max_in_flight` probes through;
//! `half_open_successes` successes in a row close it, any probe failure reopens it.
//!
//! ```text
//!   CLOSED ──(consecutive failures | failure rate)──▶ OPEN
//!     ▲                                               │ reset_timeout
//!     └──(half_open_successes probes ok)── HALF_OPEN ◀┘
//!                                            │ any probe failure ──▶ OPEN (new period)
//! ```
//!
//! The breaker's state is shared by all worker VMs: [`state`] is its byte encoding,
//! [`machine`] the pure transition functions, [`gate`] the read-compute-CAS over the one
//! shared key that admits attempts and records their outcomes; the failure rate counts in a
//! [`crate::window::Window`]. What counts as a
//! failure is [`is_failure`]: `failure_on` (classes from [`crate::outcome`]) plus slow
//! calls; a 4xx never counts unless listed as a status.

pub mod backend;
pub mod gate;
pub mod machine;
pub mod reply;
pub mod state;

pub use machine::{
    admit, is_failure, record, state_of, Admission, Admit, BreakerState, Cause, Recorded, Ticket,
    Transition,
};
pub use reply::open_reply;
pub use state::Phase;

#[cfg(test)]
mod tests;
