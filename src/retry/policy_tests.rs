//! Tests for [`super`]: which attempts are retried and after how long.

use std::time::Duration;

use super::*;
use crate::config::{Jitter, NonIdempotent, OutcomeClass, RetryConfig};
use crate::random::SplitMix64;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn cfg() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        jitter: Jitter::None,
        deadline: Duration::from_secs(5),
        retry_on: vec![
            OutcomeClass::FiveXx,
            OutcomeClass::Reset,
            OutcomeClass::Timeout,
            OutcomeClass::ConnectFailure,
            OutcomeClass::Status(429),
        ],
        respect_retry_after: true,
        budget: None,
        non_idempotent: NonIdempotent::WithKey,
    }
}

fn input<'a>(
    method: &'a str,
    outcome: &'a AttemptOutcome,
    attempts: u32,
    now: u64,
) -> RetryInput<'a> {
    RetryInput {
        method,
        has_idempotency_key: false,
        outcome,
        attempts_made: attempts,
        started_at: T0,
        now,
        retry_after: None,
        rate_limit_reset: None,
    }
}

fn decide(cfg: &RetryConfig, input: &RetryInput<'_>) -> RetryDecision {
    let mut backoff = Backoff::from_config(cfg);
    let mut rng = SplitMix64::seeded(7);
    should_retry(cfg, input, &mut backoff, &mut rng)
}

fn retry_after_backoff(delay_ns: u64, cause: OutcomeClass) -> RetryDecision {
    RetryDecision::Retry {
        delay_ns,
        cause,
        source: DelaySource::Backoff,
    }
}

#[test]
fn server_errors_are_retried_with_the_backoff_delay() {
    let o = AttemptOutcome::response(503, MS);
    let d = decide(&cfg(), &input("GET", &o, 1, T0 + MS));
    assert_eq!(d, retry_after_backoff(100 * MS, OutcomeClass::FiveXx));
}

#[test]
fn client_errors_are_never_retried() {
    for status in [400, 401, 403, 404, 409, 422] {
        let o = AttemptOutcome::response(status, MS);
        let d = decide(&cfg(), &input("GET", &o, 1, T0));
        assert_eq!(d, RetryDecision::GiveUp(GiveUp::NotRetryable), "{status}");
    }
}

#[test]
fn success_is_not_retried() {
    let o = AttemptOutcome::response(200, MS);
    assert_eq!(
        decide(&cfg(), &input("GET", &o, 1, T0)),
        RetryDecision::GiveUp(GiveUp::NotRetryable)
    );
}

#[test]
fn listed_429_is_retried() {
    let o = AttemptOutcome::response(429, MS);
    let d = decide(&cfg(), &input("GET", &o, 1, T0));
    assert_eq!(d, retry_after_backoff(100 * MS, OutcomeClass::Status(429)));
}

#[test]
fn post_without_key_is_not_retried_under_with_key() {
    let o = AttemptOutcome::Reset;
    for m in ["POST", "PATCH", "CONNECT", "PROPFIND"] {
        assert_eq!(
            decide(&cfg(), &input(m, &o, 1, T0)),
            RetryDecision::GiveUp(GiveUp::NonIdempotent)
        );
    }
}

#[test]
fn post_with_key_is_retried_under_with_key() {
    let o = AttemptOutcome::Reset;
    let mut i = input("POST", &o, 1, T0);
    i.has_idempotency_key = true;
    assert_eq!(
        decide(&cfg(), &i),
        retry_after_backoff(100 * MS, OutcomeClass::Reset)
    );
}

#[test]
fn never_and_always_modes_ignore_the_key() {
    let o = AttemptOutcome::Timeout;
    let mut i = input("POST", &o, 1, T0);
    i.has_idempotency_key = true;
    let never = RetryConfig {
        non_idempotent: NonIdempotent::Never,
        ..cfg()
    };
    assert_eq!(
        decide(&never, &i),
        RetryDecision::GiveUp(GiveUp::NonIdempotent)
    );
    i.has_idempotency_key = false;
    let always = RetryConfig {
        non_idempotent: NonIdempotent::Always,
        ..cfg()
    };
    assert!(matches!(decide(&always, &i), RetryDecision::Retry { .. }));
}

#[test]
fn idempotent_methods_are_retried_without_a_key() {
    let o = AttemptOutcome::Timeout;
    let never = RetryConfig {
        non_idempotent: NonIdempotent::Never,
        ..cfg()
    };
    for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
        assert!(
            matches!(
                decide(&never, &input(m, &o, 1, T0)),
                RetryDecision::Retry { .. }
            ),
            "{m}"
        );
    }
    assert!(!is_idempotent("get"), "methods are case-sensitive");
}

#[test]
fn gives_up_after_max_retries() {
    let o = AttemptOutcome::response(500, MS);
    assert!(matches!(
        decide(&cfg(), &input("GET", &o, 3, T0)),
        RetryDecision::Retry { .. }
    ));
    assert_eq!(
        decide(&cfg(), &input("GET", &o, 4, T0)),
        RetryDecision::GiveUp(GiveUp::MaxRetries)
    );
}

#[test]
fn successive_retries_follow_the_backoff() {
    let c = cfg();
    let o = AttemptOutcome::response(500, MS);
    let mut backoff = Backoff::from_config(&c);
    let mut rng = SplitMix64::seeded(1);
    let delays: Vec<u64> = (1..=3)
        .filter_map(
            |n| match should_retry(&c, &input("GET", &o, n, T0), &mut backoff, &mut rng) {
                RetryDecision::Retry { delay_ns, .. } => Some(delay_ns / MS),
                RetryDecision::GiveUp(_) => None,
            },
        )
        .collect();
    assert_eq!(delays, [100, 200, 400]);
}

#[test]
fn gives_up_when_the_delay_would_leave_no_time_for_an_attempt() {
    let o = AttemptOutcome::response(500, MS);
    // 5 s deadline, 4.95 s gone: a 100 ms delay does not fit.
    let late = T0 + 4_950 * MS;
    assert_eq!(
        decide(&cfg(), &input("GET", &o, 1, late)),
        RetryDecision::GiveUp(GiveUp::Deadline)
    );
    // 4.8 s gone: 100 ms delay + 10 ms attempt fits.
    assert!(matches!(
        decide(&cfg(), &input("GET", &o, 1, T0 + 4_800 * MS)),
        RetryDecision::Retry { .. }
    ));
}

#[test]
fn zero_deadline_means_no_deadline() {
    let c = RetryConfig {
        deadline: Duration::ZERO,
        ..cfg()
    };
    let o = AttemptOutcome::response(500, MS);
    assert!(matches!(
        decide(&c, &input("GET", &o, 1, T0 + 3_600 * SEC)),
        RetryDecision::Retry { .. }
    ));
}

#[test]
fn retry_after_seconds_replace_the_backoff() {
    let o = AttemptOutcome::response(503, MS);
    let mut i = input("GET", &o, 1, T0);
    i.retry_after = Some("2");
    let d = decide(&cfg(), &i);
    let want = RetryDecision::Retry {
        delay_ns: 2 * SEC,
        cause: OutcomeClass::FiveXx,
        source: DelaySource::RetryAfter,
    };
    assert_eq!(d, want);
}

#[test]
fn retry_after_http_date_replaces_the_backoff() {
    let o = AttemptOutcome::response(429, MS);
    let now = 784_111_777 * SEC - 3 * SEC;
    let mut i = input("GET", &o, 1, now);
    i.started_at = now;
    i.retry_after = Some("Sun, 06 Nov 1994 08:49:37 GMT");
    assert!(
        matches!(decide(&cfg(), &i), RetryDecision::Retry { delay_ns, source: DelaySource::RetryAfter, .. } if delay_ns == 3 * SEC)
    );
}

#[test]
fn retry_after_beyond_the_deadline_gives_up() {
    let o = AttemptOutcome::response(503, MS);
    let mut i = input("GET", &o, 1, T0);
    i.retry_after = Some("60");
    assert_eq!(
        decide(&cfg(), &i),
        RetryDecision::GiveUp(GiveUp::RetryAfterBeyondDeadline)
    );
}

#[test]
fn garbage_retry_after_falls_back_to_rate_limit_reset_then_backoff() {
    let o = AttemptOutcome::response(429, MS);
    let mut i = input("GET", &o, 1, T0);
    i.retry_after = Some("whenever");
    i.rate_limit_reset = Some("1700000001");
    assert!(
        matches!(decide(&cfg(), &i), RetryDecision::Retry { delay_ns, source: DelaySource::RateLimitReset, .. } if delay_ns == SEC)
    );
    i.rate_limit_reset = Some("nope");
    assert_eq!(
        decide(&cfg(), &i),
        retry_after_backoff(100 * MS, OutcomeClass::Status(429))
    );
}

#[test]
fn retry_after_is_ignored_when_not_respected_or_not_429_503() {
    let c = RetryConfig {
        respect_retry_after: false,
        ..cfg()
    };
    let o = AttemptOutcome::response(503, MS);
    let mut i = input("GET", &o, 1, T0);
    i.retry_after = Some("60");
    assert_eq!(
        decide(&c, &i),
        retry_after_backoff(100 * MS, OutcomeClass::FiveXx)
    );
    let o500 = AttemptOutcome::response(500, MS);
    let mut j = input("GET", &o500, 1, T0);
    j.retry_after = Some("60");
    assert_eq!(
        decide(&cfg(), &j),
        retry_after_backoff(100 * MS, OutcomeClass::FiveXx)
    );
}

#[test]
fn attempt_timeout_is_the_smaller_of_timeout_and_time_left() {
    let c = cfg();
    assert_eq!(attempt_timeout(&c, SEC, T0, T0), SEC);
    assert_eq!(attempt_timeout(&c, SEC, T0, T0 + 4_500 * MS), 500 * MS);
    assert_eq!(attempt_timeout(&c, SEC, T0, T0 + 6 * SEC), 0);
    // A clock that steps backwards does not underflow.
    assert_eq!(attempt_timeout(&c, SEC, T0, T0 - SEC), SEC);
}
