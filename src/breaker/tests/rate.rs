//! Failure-rate windows and what counts as a failure (slow calls, 4xx).

use std::time::Duration;

use super::*;
use crate::config::FailureRate;

fn rate_cfg() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 0, // only the rate rule
        failure_rate: Some(FailureRate {
            threshold: 0.5,
            minimum_calls: 10,
            window: Duration::from_secs(10),
        }),
        ..cfg()
    }
}

#[test]
fn failure_rate_waits_for_minimum_calls() {
    let mut h = Harness::new(rate_cfg());
    for i in 0..9 {
        h.call(i % 2 == 0); // 5 failures of 9: above 50 % but too few calls
        h.advance(10 * MS);
    }
    assert_eq!(h.phase(), Phase::Closed);
    h.call(false); // 5 of 10 = 50 %
    assert_eq!(h.phase(), Phase::Open);
    assert_eq!(
        h.transitions,
        [(Phase::Closed, Phase::Open, Cause::FailureRate)]
    );
}

#[test]
fn failure_rate_below_threshold_stays_closed() {
    let mut h = Harness::new(rate_cfg());
    for i in 0..100 {
        h.call(i % 3 == 0); // 34 %
        h.advance(100 * MS);
    }
    assert_eq!(h.phase(), Phase::Closed);
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let mut h = Harness::new(rate_cfg());
    for _ in 0..8 {
        h.call(true);
    }
    h.advance(11 * SEC);
    for _ in 0..9 {
        h.call(false);
    }
    h.call(true);
    assert_eq!(h.phase(), Phase::Closed, "1 failure in 10 recent calls");
}

#[test]
fn slow_calls_count_as_failures() {
    let c = BreakerConfig {
        slow_call: Some(Duration::from_secs(2)),
        ..cfg()
    };
    assert!(is_failure(&c, &AttemptOutcome::response(200, 2 * SEC)));
    assert!(is_failure(&c, &AttemptOutcome::response(404, 3 * SEC)));
    assert!(!is_failure(&c, &AttemptOutcome::response(200, 2 * SEC - 1)));
    assert!(
        !is_failure(&cfg(), &AttemptOutcome::response(200, 60 * SEC)),
        "no slow_call rule"
    );
}

#[test]
fn client_errors_never_count_unless_listed() {
    for status in [400, 401, 403, 404, 409, 429] {
        assert!(
            !is_failure(&cfg(), &AttemptOutcome::response(status, MS)),
            "{status}"
        );
    }
    let with_429 = BreakerConfig {
        failure_on: vec![OutcomeClass::Status(429)],
        ..cfg()
    };
    assert!(is_failure(&with_429, &AttemptOutcome::response(429, MS)));
    assert!(!is_failure(&with_429, &AttemptOutcome::response(404, MS)));
}

#[test]
fn transport_failures_count() {
    let c = cfg();
    assert!(is_failure(&c, &AttemptOutcome::Timeout));
    assert!(is_failure(&c, &AttemptOutcome::Reset));
    assert!(is_failure(&c, &AttemptOutcome::response(500, MS)));
    assert!(!is_failure(&c, &AttemptOutcome::response(200, MS)));
}
