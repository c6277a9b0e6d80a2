//! The circuit breaker in router mode against a real Envoy with 4 workers: consecutive and
//! rate-based trips, fast rejection while open, exactly `half_open_max_in_flight` probes,
//! recovery and re-opening, slow calls, 4xx storms that never trip it, and a vanished probe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;

fn start(breaker: serde_json::Value, upstream_extra: serde_json::Value) -> (Upstream, Envoy) {
    let svc = merged(
        serde_json::json!({ "circuit_breaker": breaker }),
        &upstream_extra,
    );
    start_levee(&single_upstream(svc, &serde_json::json!({})), |o| {
        o.concurrency = 4
    })
}

fn get(envoy: &Envoy, status: u16) -> Response {
    send(
        envoy.port(),
        &Request::get("/svc").header("x-upstream-status", status.to_string()),
    )
}

fn is_circuit_open(r: &Response) -> bool {
    r.status == 503 && r.header("x-levee-circuit").as_deref() == Some("open")
}

#[test]
fn consecutive_failures_open_it_and_open_answers_fast_without_the_upstream() {
    let (up, envoy) = start(
        serde_json::json!({ "failure_threshold": 3, "reset_timeout": "30s" }),
        serde_json::json!({}),
    );
    assert_eq!(envoy.stat("levee_breaker.svc.state"), 0);
    for _ in 0..3 {
        let r = get(&envoy, 503);
        assert_eq!(r.status, 503);
        assert!(
            !is_circuit_open(&r),
            "the upstream's own 503 passes through while closed"
        );
    }
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 1);
    assert_eq!(envoy.stat("levee_breaker.svc.state"), 1);
    for _ in 0..10 {
        let started = Instant::now();
        let r = get(&envoy, 200);
        assert!(is_circuit_open(&r), "status {}", r.status);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "answered fast"
        );
        let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(
            (29..=30).contains(&retry_after),
            "Retry-After = time left open, got {retry_after}"
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(r.json()["upstream"], "svc");
    }
    assert_eq!(up.count(), 3, "while open the upstream sees nothing");
    assert_eq!(envoy.stat("levee_breaker.svc.rejected"), 10);
}

#[test]
fn a_storm_of_4xx_never_opens_it() {
    let (up, envoy) = start(
        serde_json::json!({ "failure_threshold": 2 }),
        serde_json::json!({}),
    );
    for status in [404, 401, 400, 429, 404, 403, 404, 401] {
        assert_eq!(get(&envoy, status).status, status);
    }
    assert_eq!(up.count(), 8);
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 0);
    assert_eq!(envoy.stat("levee_breaker.svc.state"), 0);
}

#[test]
fn after_the_reset_timeout_exactly_max_in_flight_probes_pass_then_successes_close_it() {
    let (up, envoy) = start(
        serde_json::json!({ "failure_threshold": 2, "reset_timeout": "1s",
                            "half_open_max_in_flight": 2, "half_open_successes": 2 }),
        serde_json::json!({ "timeout": "5s" }),
    );
    get(&envoy, 500);
    get(&envoy, 500);
    assert!(is_circuit_open(&get(&envoy, 200)));
    std::thread::sleep(Duration::from_millis(1_100));
    let before = up.count();
    let responses = burst(12, |_| {
        send(
            envoy.port(),
            &Request::get("/probe").header("x-upstream-delay-ms", "700"),
        )
    });
    let passed = responses.iter().filter(|r| r.status == 200).count();
    let rejected = responses.iter().filter(|r| is_circuit_open(r)).count();
    assert_eq!(
        (passed, rejected),
        (2, 10),
        "exactly half_open_max_in_flight probes"
    );
    assert_eq!(up.count() - before, 2);
    assert_eq!(
        envoy.stat("levee_breaker.svc.closed"),
        1,
        "two successful probes close it"
    );
    assert_eq!(envoy.stat("levee_breaker.svc.state"), 0);
    let after = burst(8, |_| get(&envoy, 200));
    assert!(after.iter().all(|r| r.status == 200));
}

#[test]
fn a_failing_probe_reopens_it() {
    let (up, envoy) = start(
        serde_json::json!({ "failure_threshold": 1, "reset_timeout": "1s" }),
        serde_json::json!({}),
    );
    get(&envoy, 502);
    assert!(is_circuit_open(&get(&envoy, 200)));
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(
        get(&envoy, 500).status,
        500,
        "the probe reaches the upstream"
    );
    assert_eq!(envoy.stat("levee_breaker.svc.probe_failure"), 1);
    let r = get(&envoy, 200);
    assert!(is_circuit_open(&r), "a failed probe reopens it");
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 2);
    assert_eq!(up.count(), 2);
}

#[test]
fn the_failure_rate_rule_trips_once_minimum_calls_are_seen() {
    let (_up, envoy) = start(
        serde_json::json!({ "failure_threshold": 0,
                            "failure_rate": { "threshold": 0.5, "minimum_calls": 10, "window": "10s" } }),
        serde_json::json!({}),
    );
    // Nine calls, five failing (55%), but fewer than minimum_calls: stays closed.
    for status in [500, 200, 500, 200, 500, 200, 500, 200, 500] {
        assert_eq!(get(&envoy, status).status, status);
    }
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 0);
    // The tenth call (a success) makes 5/10 = 50% ≥ threshold over ≥ minimum_calls.
    assert_eq!(get(&envoy, 200).status, 200);
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 1);
    assert!(is_circuit_open(&get(&envoy, 200)));
}

#[test]
fn slow_successful_calls_count_as_failures() {
    let (_up, envoy) = start(
        serde_json::json!({ "failure_threshold": 2, "slow_call": "200ms" }),
        serde_json::json!({}),
    );
    let slow = || {
        send(
            envoy.port(),
            &Request::get("/slow").header("x-upstream-delay-ms", "400"),
        )
    };
    assert_eq!(slow().status, 200);
    assert_eq!(slow().status, 200);
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 1);
    assert!(is_circuit_open(&get(&envoy, 200)));
}

#[test]
fn a_probe_whose_client_vanishes_does_not_leave_it_stuck_half_open() {
    let (up, envoy) = start(
        serde_json::json!({ "failure_threshold": 1, "reset_timeout": "500ms", "half_open_max_in_flight": 1 }),
        serde_json::json!({ "timeout": "1s" }),
    );
    get(&envoy, 500);
    std::thread::sleep(Duration::from_millis(600));
    // The only probe slot goes to a client that hangs up before the upstream answers.
    let gone = send_and_disconnect_after(
        envoy.port(),
        &Request::get("/probe").header("x-upstream-delay-ms", "3000"),
        Duration::from_millis(200),
    );
    assert!(gone.is_none());
    assert!(
        is_circuit_open(&get(&envoy, 200)),
        "the slot is leased to the vanished probe"
    );
    // The lease lasts the attempt timeout (1 s) plus 1 s of slack; then a new probe passes.
    std::thread::sleep(Duration::from_millis(2_200));
    assert_eq!(get(&envoy, 200).status, 200);
    assert!(up.count() >= 2);
}

/// A closed, quiet breaker is admitted from a process-wide gauge instead of the shared state;
/// the gauge is raised before any write that unsettles the breaker lands, so once a storm of
/// concurrent failures on 4 workers has opened it, every worker refuses — nothing slips
/// through on a stale "closed".
#[test]
fn under_concurrent_failures_on_four_workers_an_open_breaker_lets_nothing_through() {
    let (up, envoy) = start(
        serde_json::json!({ "failure_threshold": 3, "reset_timeout": "30s" }),
        serde_json::json!({}),
    );
    // Quiet traffic on every worker: admitted from the gauge, which stays at 0.
    let quiet = burst(16, |_| get(&envoy, 200));
    assert!(quiet.iter().all(|r| r.status == 200));
    assert_eq!(envoy.stat("levee_breaker.svc.unsettled"), 0);
    for round in 0..3 {
        // Failures and successes at once, from 32 connections spread over the workers.
        let storm = burst(32, |i| get(&envoy, if i % 4 == 0 { 200 } else { 503 }));
        assert!(storm.iter().all(|r| r.status == 200 || r.status == 503));
        if envoy.stat("levee_breaker.svc.state") != 1 {
            continue;
        }
        assert!(
            envoy.stat("levee_breaker.svc.unsettled") >= 1,
            "open, so unsettled (round {round})"
        );
        let before = up.count();
        let rejected_before = envoy.stat("levee_breaker.svc.rejected");
        let after = burst(32, |_| get(&envoy, 200));
        assert!(
            after.iter().all(is_circuit_open),
            "every worker refuses: {:?}",
            after.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert_eq!(up.count(), before, "the upstream sees nothing while open");
        assert_eq!(
            envoy.stat("levee_breaker.svc.rejected") - rejected_before,
            32
        );
        assert_eq!(envoy.stat("levee_breaker.svc.opened"), 1);
        return;
    }
    panic!("three storms of 24 failures each never opened the breaker");
}
