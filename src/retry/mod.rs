//! Retries: which failed attempts are tried again, after how long, and how many in total.
//!
//! One idea per file, tower-style:
//! - [`backoff`]: exponential backoff with full / equal / decorrelated jitter;
//! - [`retry_after`]: the upstream's `Retry-After` / `X-RateLimit-Reset` hints;
//! - [`policy`]: the per-attempt decision (`retry_on`, idempotency, max retries, deadline);
//! - [`budget`]: the cap on retries across all requests and worker VMs.
//!
//! Everything here is pure: time is an argument, randomness a [`crate::random::RandomSource`],
//! and the one piece of shared state (the budget) is bytes in, bytes out for the caller's
//! read-compute-CAS loop. The host decides *when* (timers, callouts); this decides *whether*.
//!
//! Per attempt, the host does: `attempt_timeout` → send → `crate::outcome::classify_callout` → breaker
//! `record` → if failed, `should_retry` → if `Retry`, `budget::try_withdraw` → wait → repeat.

pub mod backoff;
pub mod budget;
pub mod policy;
pub mod retry_after;

pub use backoff::Backoff;
pub use policy::{attempt_timeout, should_retry, DelaySource, GiveUp, RetryDecision, RetryInput};
