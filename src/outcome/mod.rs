//! How an upstream attempt ended, classified once for every layer that asks.
//!
//! The breaker (`failure_on`, slow calls), the retry policy (`retry_on`), the fallback chain
//! ("did it fail?") and the idempotency record ("did the upstream act?") all judge the same
//! event. It is classified here, below all of them, so that none of them imports another to
//! learn what happened:
//! - [`attempt`]: one attempt, from a callout answer or from the router's status and
//!   `response.flags`, and which `retry_on` / `failure_on` classes it belongs to;
//! - [`result`]: how the whole request ended, as the idempotency record sees it.

pub mod attempt;
pub mod result;

pub use attempt::{
    best_match, classify_callout, classify_router, flags, is_failure, matches, AttemptOutcome,
    TIMEOUT_SLACK_NS,
};
pub use result::UpstreamResult;
