//! Validates the `retry` and `circuit_breaker` blocks of an upstream.
//!
//! Both are checked against the upstream they live in: the retry deadline defaults from the
//! upstream's per-attempt `timeout`, and a breaker must have at least one rule that can open it.

use super::common::outcome_classes;
use super::defaults as d;
use super::raw::Raw;
use super::reader::positive;
use super::reader::{err, Obj};
use super::types::{BreakerConfig, FailureRate, Jitter, NonIdempotent, RetryBudget, RetryConfig};
use super::ConfigError;
use std::time::Duration;

pub(crate) const RETRY_FIELDS: &[&str] = &[
    "max_retries",
    "base_delay",
    "max_delay",
    "jitter",
    "deadline",
    "retry_on",
    "respect_retry_after",
    "budget",
    "non_idempotent",
];
pub(crate) const BREAKER_FIELDS: &[&str] = &[
    "failure_threshold",
    "failure_rate",
    "slow_call",
    "reset_timeout",
    "half_open_successes",
    "half_open_max_in_flight",
    "failure_on",
];

pub(crate) const BUDGET_FIELDS: &[&str] = &["ratio", "min_per_second"];
pub(crate) const FAILURE_RATE_FIELDS: &[&str] = &["threshold", "minimum_calls", "window"];

pub const JITTERS: &[(&str, Jitter)] = &[
    ("full", Jitter::Full),
    ("equal", Jitter::Equal),
    ("decorrelated", Jitter::Decorrelated),
    ("none", Jitter::None),
];
pub const NON_IDEMPOTENT: &[(&str, NonIdempotent)] = &[
    ("with_key", NonIdempotent::WithKey),
    ("never", NonIdempotent::Never),
    ("always", NonIdempotent::Always),
];

/// `timeout` is the upstream's per-attempt timeout, for the default deadline.
pub fn retry(raw: &Raw, path: &str, timeout: Duration) -> Result<RetryConfig, ConfigError> {
    let o = Obj::new(raw, path, RETRY_FIELDS)?;
    let max_retries = o
        .int("max_retries", 0, d::MAX_MAX_RETRIES, "")?
        .map_or(d::MAX_RETRIES, |n| n as u32);
    let base_delay = positive(&o, "base_delay")?.unwrap_or(d::BASE_DELAY);
    let max_delay = o
        .duration("max_delay")?
        .unwrap_or(d::MAX_DELAY.max(base_delay));
    if max_delay < base_delay {
        return Err(err(
            &o.at("max_delay"),
            format!(
                "\"{}\" is shorter than base_delay \"{}\" (raise it or lower base_delay)",
                super::duration::format(max_delay),
                super::duration::format(base_delay)
            ),
        ));
    }
    let attempts = max_retries.saturating_add(1);
    let deadline = positive(&o, "deadline")?.unwrap_or_else(|| timeout.saturating_mul(attempts));
    let budget = match o.obj("budget", BUDGET_FIELDS)? {
        None => None,
        Some(b) => {
            let ratio = b.number("ratio")?.unwrap_or(d::BUDGET_RATIO);
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(err(&b.at("ratio"), format!(
                    "{ratio} is out of range (use a fraction in (0, 1]: 0.2 lets retries add at most 20% to the request rate)"
                )));
            }
            let min_per_second = b
                .int("min_per_second", 0, d::MAX_COUNT, "")?
                .map_or(d::BUDGET_MIN_PER_SECOND, |n| n as u32);
            Some(RetryBudget {
                ratio,
                min_per_second,
            })
        }
    };
    Ok(RetryConfig {
        max_retries,
        base_delay,
        max_delay,
        jitter: o.choice("jitter", JITTERS)?.unwrap_or(Jitter::Full),
        deadline,
        retry_on: outcome_classes(&o, "retry_on", &d::RETRY_ON)?,
        respect_retry_after: o.bool("respect_retry_after")?.unwrap_or(true),
        budget,
        non_idempotent: o
            .choice("non_idempotent", NON_IDEMPOTENT)?
            .unwrap_or(NonIdempotent::WithKey),
    })
}

pub fn circuit_breaker(raw: &Raw, path: &str) -> Result<BreakerConfig, ConfigError> {
    let o = Obj::new(raw, path, BREAKER_FIELDS)?;
    let failure_rate = match o.obj("failure_rate", FAILURE_RATE_FIELDS)? {
        None => None,
        Some(r) => {
            let threshold = r.number("threshold")?.unwrap_or(d::FAILURE_RATE_THRESHOLD);
            if !(threshold > 0.0 && threshold <= 1.0) {
                return Err(err(&r.at("threshold"), format!(
                    "{threshold} is out of range (use a fraction in (0, 1], e.g. 0.5 opens at 50% failures)"
                )));
            }
            Some(FailureRate {
                threshold,
                minimum_calls: r
                    .int("minimum_calls", 1, d::MAX_COUNT, "")?
                    .map_or(d::FAILURE_RATE_MINIMUM_CALLS, |n| n as u32),
                window: positive(&r, "window")?.unwrap_or(d::FAILURE_RATE_WINDOW),
            })
        }
    };
    let failure_threshold = o
        .int(
            "failure_threshold",
            0,
            d::MAX_COUNT,
            "0 turns the consecutive-failure rule off",
        )?
        .map_or(d::FAILURE_THRESHOLD, |n| n as u32);
    if failure_threshold == 0 && failure_rate.is_none() {
        return Err(err(
            &o.at("failure_threshold"),
            "is 0 and there is no failure_rate: nothing could open the breaker (set one of them)",
        ));
    }
    Ok(BreakerConfig {
        failure_threshold,
        failure_rate,
        slow_call: positive(&o, "slow_call")?,
        reset_timeout: positive(&o, "reset_timeout")?.unwrap_or(d::RESET_TIMEOUT),
        half_open_successes: o
            .int("half_open_successes", 1, d::MAX_HALF_OPEN, "")?
            .map_or(d::HALF_OPEN_SUCCESSES, |n| n as u32),
        half_open_max_in_flight: o
            .int("half_open_max_in_flight", 1, d::MAX_HALF_OPEN_IN_FLIGHT, "")?
            .map_or(d::HALF_OPEN_MAX_IN_FLIGHT, |n| n as u32),
        failure_on: outcome_classes(&o, "failure_on", &d::FAILURE_ON)?,
    })
}
