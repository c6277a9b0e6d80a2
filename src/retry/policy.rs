//! Whether a failed attempt is retried, and after how long: one pure decision per attempt.
//!
//! The rules, in the order they are checked (the first that refuses names the [`GiveUp`]):
//!
//! 1. the outcome is in `retry_on` (so `404`, `400`, `401` are never retried unless listed);
//! 2. the method may be repeated: GET, HEAD, OPTIONS, TRACE, PUT and DELETE are idempotent
//!    (RFC 9110 §9.2.2); POST, PATCH and any other method only under `non_idempotent: always`,
//!    or under `with_key` when the request carries its idempotency key;
//! 3. fewer than `1 + max_retries` attempts were made;
//! 4. the delay — the backoff's, or the upstream's `Retry-After` / `X-RateLimit-Reset` on a
//!    429/503 when `respect_retry_after` is on — still leaves time for an attempt of at least
//!    [`MIN_ATTEMPT_NS`] before the `deadline` (zero = no deadline).
//!
//! The retry budget is not consulted here: it is shared state, so the caller withdraws from it
//! (see [`super::budget`]) only after this says [`RetryDecision::Retry`] — a request that would
//! not be retried anyway must not spend the budget.

use crate::config::{NonIdempotent, OutcomeClass, RetryConfig};
use crate::random::RandomSource;
use crate::time::{duration_nanos, UnixNanos};

use super::backoff::Backoff;
use super::retry_after::{parse_rate_limit_reset, parse_retry_after};
use crate::outcome::{best_match, AttemptOutcome};

/// Shortest attempt worth making: a retry that would leave less than this before the deadline
/// is not made.
pub const MIN_ATTEMPT_NS: u64 = 10_000_000;

/// What the retry policy needs to know about one request and its last attempt.
#[derive(Debug, Clone, Copy)]
pub struct RetryInput<'a> {
    /// The request method as sent (upper-case; methods are case-sensitive).
    pub method: &'a str,
    pub has_idempotency_key: bool,
    pub outcome: &'a AttemptOutcome,
    /// Attempts made so far, this one included (1 after the first attempt).
    pub attempts_made: u32,
    /// When the first attempt started; the deadline counts from here.
    pub started_at: UnixNanos,
    pub now: UnixNanos,
    /// The last response's `Retry-After` header, if any.
    pub retry_after: Option<&'a str>,
    /// The last response's `X-RateLimit-Reset` header, if any.
    pub rate_limit_reset: Option<&'a str>,
}

/// The verdict for one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait `delay_ns`, then try again; `cause` is the most specific `retry_on` class that
    /// matched (for logs).
    Retry {
        delay_ns: u64,
        cause: OutcomeClass,
        source: DelaySource,
    },
    GiveUp(GiveUp),
}

/// Where a retry delay came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelaySource {
    Backoff,
    RetryAfter,
    RateLimitReset,
}

/// Why a request is not retried (a metric label and a log word each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The outcome is not in `retry_on` (a success, or a 4xx not listed).
    NotRetryable,
    /// The method is not idempotent and `non_idempotent` does not allow it.
    NonIdempotent,
    /// `1 + max_retries` attempts were made.
    MaxRetries,
    /// The backoff delay would leave no time for another attempt before the deadline.
    Deadline,
    /// The upstream asked to wait past the deadline.
    RetryAfterBeyondDeadline,
    /// The shared retry budget is spent (decided by the caller, see [`super::budget`]).
    BudgetExhausted,
}

impl GiveUp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRetryable => "not_retryable",
            Self::NonIdempotent => "non_idempotent",
            Self::MaxRetries => "max_retries",
            Self::Deadline => "deadline",
            Self::RetryAfterBeyondDeadline => "retry_after_beyond_deadline",
            Self::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// RFC 9110 §9.2.2 idempotent methods.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether `non_idempotent` lets this request be sent more than once.
pub fn may_repeat(mode: NonIdempotent, method: &str, has_idempotency_key: bool) -> bool {
    is_idempotent(method)
        || match mode {
            NonIdempotent::Always => true,
            NonIdempotent::WithKey => has_idempotency_key,
            NonIdempotent::Never => false,
        }
}

/// Time left before the deadline (`u64::MAX` when there is no deadline).
pub fn time_left(cfg: &RetryConfig, started_at: UnixNanos, now: UnixNanos) -> u64 {
    let deadline = duration_nanos(cfg.deadline);
    if deadline == 0 {
        return u64::MAX;
    }
    deadline.saturating_sub(now.saturating_sub(started_at))
}

/// The timeout for an attempt starting `now`: `min(upstream_timeout, time left)`.
/// 0 means the deadline has passed and no attempt should start.
pub fn attempt_timeout(
    cfg: &RetryConfig,
    upstream_timeout_ns: u64,
    started_at: UnixNanos,
    now: UnixNanos,
) -> u64 {
    upstream_timeout_ns.min(time_left(cfg, started_at, now))
}

/// Decides whether to retry after a failed attempt. Advances `backoff` only when it supplies
/// a delay that is used or checked against the deadline.
pub fn should_retry(
    cfg: &RetryConfig,
    input: &RetryInput<'_>,
    backoff: &mut Backoff,
    rng: &mut dyn RandomSource,
) -> RetryDecision {
    let Some(cause) = best_match(&cfg.retry_on, input.outcome) else {
        return RetryDecision::GiveUp(GiveUp::NotRetryable);
    };
    if !may_repeat(cfg.non_idempotent, input.method, input.has_idempotency_key) {
        return RetryDecision::GiveUp(GiveUp::NonIdempotent);
    }
    if input.attempts_made > cfg.max_retries {
        return RetryDecision::GiveUp(GiveUp::MaxRetries);
    }
    let left = time_left(cfg, input.started_at, input.now);
    let fits = |delay: u64| delay.saturating_add(MIN_ATTEMPT_NS) <= left;

    if let Some((wait, source)) = upstream_hint(cfg, input) {
        if !fits(wait) {
            return RetryDecision::GiveUp(GiveUp::RetryAfterBeyondDeadline);
        }
        let _ = backoff.next_delay_ns(rng); // keep the backoff's retry count in step
        return RetryDecision::Retry {
            delay_ns: wait,
            cause,
            source,
        };
    }
    let delay = backoff.next_delay_ns(rng);
    if !fits(delay) {
        return RetryDecision::GiveUp(GiveUp::Deadline);
    }
    RetryDecision::Retry {
        delay_ns: delay,
        cause,
        source: DelaySource::Backoff,
    }
}

/// The upstream's own wait on a 429/503, when configured to respect it and it parses.
fn upstream_hint(cfg: &RetryConfig, input: &RetryInput<'_>) -> Option<(u64, DelaySource)> {
    if !cfg.respect_retry_after {
        return None;
    }
    match input.outcome {
        AttemptOutcome::Response {
            status: 429 | 503,
            connect_failure: false,
            ..
        } => {}
        _ => return None,
    }
    let retry_after = input
        .retry_after
        .and_then(|v| parse_retry_after(v, input.now))
        .map(|w| (w, DelaySource::RetryAfter));
    retry_after.or_else(|| {
        input
            .rate_limit_reset
            .and_then(|v| parse_rate_limit_reset(v, input.now))
            .map(|w| (w, DelaySource::RateLimitReset))
    })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
