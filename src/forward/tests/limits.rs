//! What stops retries: the deadline, the circuit breaker and the shared retry budget.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;
use crate::config::{Jitter, RetryBudget};
use crate::metrics::BreakerEvent;
use crate::retry::{budget, GiveUp};

#[test]
fn deadline_caps_the_attempts_of_an_always_failing_upstream() {
    let cfg = RetryConfig {
        max_retries: 10,
        deadline: Duration::from_secs(1),
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(Some(cfg)), request("GET", &[]), false, d.now);
    d.next(&mut f);
    // Backoff without jitter: 100, 200, 400 ms fit; after ~740 ms the 800 ms one does not.
    let mut waits = Vec::new();
    let info = loop {
        match d.reply(&mut f, answer(503, &[], ""), 10 * MS) {
            ForwardStep::Wait { until } => {
                waits.push((until - d.now) / MS);
                d.now = until;
                dispatched(&d.next(&mut f));
            }
            other => break failed(other),
        }
    };
    assert_eq!(waits, [100, 200, 400]);
    assert_eq!((info.attempts, info.gave_up), (4, Some(GiveUp::Deadline)));
    assert!(d.now - T0 < SEC, "everything happened within the deadline");
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 1);
}

#[test]
fn timeouts_per_attempt_shrink_near_the_deadline() {
    let cfg = RetryConfig {
        deadline: Duration::from_millis(3_000),
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(Some(cfg)), request("GET", &[]), false, d.now);
    let mut timeouts = vec![dispatched(&d.next(&mut f)).timeout_ns / MS];
    // Each attempt times out (Envoy's plain 504 at the timeout); backoff 100 ms, 200 ms.
    let info = loop {
        let timeout = timeouts.last().copied().unwrap() * MS;
        match d.reply(&mut f, answer(504, &[], ""), timeout) {
            ForwardStep::Wait { until } => {
                d.now = until;
                timeouts.push(dispatched(&d.next(&mut f)).timeout_ns / MS);
            }
            other => break failed(other),
        }
    };
    // 0 s: 2 s timeout; 2.1 s: 0.9 s left; 3.0 s: nothing left.
    assert_eq!(timeouts, [2_000, 900]);
    assert_eq!(info.gave_up, Some(GiveUp::Deadline));
    assert_eq!(
        (info.status(), info.details()),
        (504, "levee_upstream_timeout")
    );
}

#[test]
fn a_timer_that_fires_past_the_deadline_ends_the_forward_without_another_attempt() {
    let cfg = RetryConfig {
        deadline: Duration::from_secs(1),
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(Some(cfg)), request("GET", &[]), false, d.now);
    d.next(&mut f);
    assert!(matches!(
        d.reply(&mut f, answer(500, &[], ""), MS),
        ForwardStep::Wait { .. }
    ));
    d.now = T0 + 2 * SEC; // the worker was busy
    let info = failed(d.next(&mut f));
    assert_eq!((info.attempts, info.gave_up), (1, Some(GiveUp::Deadline)));
    assert_eq!(d.count(UpstreamEvent::Attempts), 1);
}

#[test]
fn every_attempt_feeds_the_breaker_and_its_opening_stops_further_attempts() {
    let mut u = upstream(Some(RetryConfig {
        max_retries: 5,
        ..retry_cfg()
    }));
    u.circuit_breaker = Some(breaker_cfg(2));
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    d.next(&mut f);
    let wait = d.reply(&mut f, answer(500, &[], ""), MS);
    dispatched(&d.wait_out(&mut f, &wait));
    // The second failure opens the breaker: the next attempt is refused at once.
    let wait = d.reply(&mut f, answer(500, &[], ""), MS);
    let opened_at = d.now;
    let info = failed(d.wait_out(&mut f, &wait));
    assert!(info.breaker_open);
    assert_eq!(info.attempts, 2);
    let left = info.retry_after_ns.unwrap();
    assert_eq!(left, 30 * SEC - (d.now - opened_at));
    assert_eq!((info.status(), info.details()), (503, "levee_circuit_open"));
    let breaker = |what| d.metrics.count_of(Event::Breaker { upstream: 0, what });
    assert_eq!(breaker(BreakerEvent::Failure), 2, "one per attempt");
    assert_eq!(breaker(BreakerEvent::Opened), 1);
    assert_eq!(breaker(BreakerEvent::Rejected), 1);
    assert_eq!(d.count(UpstreamEvent::Attempts), 2);
}

#[test]
fn a_success_on_a_quiet_breaker_reads_no_state_and_a_failure_streak_is_recorded() {
    let mut u = upstream(None);
    u.circuit_breaker = Some(breaker_cfg(3));
    let mut d = Driver::new(1);
    let gets = |d: &Driver| d.store.stats().gets;
    let before = gets(&d);
    let mut f = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    d.next(&mut f);
    d.reply(&mut f, answer(200, &[], "ok"), MS);
    assert_eq!(
        gets(&d) - before,
        0,
        "the unsettled gauge at 0 admits, and a quiet success is just counted"
    );
    // A failure starts a streak: the breaker is no longer quiet, so the next success is
    // recorded (it ends the streak) — one read to admit, one to record.
    let mut g = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    d.next(&mut g);
    d.reply(&mut g, answer(500, &[], ""), MS);
    let before = gets(&d);
    let mut h = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    d.next(&mut h);
    d.reply(&mut h, answer(200, &[], "ok"), MS);
    assert_eq!(gets(&d) - before, 2);
    let breaker = |d: &Driver, what| d.metrics.count_of(Event::Breaker { upstream: 0, what });
    assert_eq!(breaker(&d, BreakerEvent::Success), 2);
    assert_eq!(breaker(&d, BreakerEvent::Failure), 1);
    // The streak was reset by the recorded success: two more failures do not open it.
    for _ in 0..2 {
        let mut k = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
        d.next(&mut k);
        d.reply(&mut k, answer(500, &[], ""), MS);
    }
    assert_eq!(breaker(&d, BreakerEvent::Opened), 0);
}

#[test]
fn an_open_breaker_refuses_the_first_attempt() {
    let mut u = upstream(None);
    u.circuit_breaker = Some(breaker_cfg(1));
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    d.next(&mut f);
    failed(d.reply(&mut f, CalloutAnswer::Reset, MS));
    let mut g = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    let info = failed(d.next(&mut g));
    assert!(info.breaker_open);
    assert_eq!((info.attempts, info.last_outcome), (0, None));
    assert_eq!(info.retry_after_ns, Some(30 * SEC));
    assert_eq!(
        d.metrics.attempts_per_request,
        [(0, 1)],
        "no sample for 0 attempts"
    );
}

#[test]
fn each_original_request_deposits_once_into_the_budget() {
    let cfg = RetryConfig {
        budget: Some(RetryBudget {
            ratio: 1.0,
            min_per_second: 0,
        }),
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    for _ in 0..3 {
        let mut f = CalloutForward::new(
            0,
            &upstream(Some(cfg.clone())),
            request("GET", &[]),
            false,
            d.now,
        );
        d.next(&mut f);
        let wait = d.reply(&mut f, answer(503, &[], ""), MS);
        d.wait_out(&mut f, &wait);
        responded(d.reply(&mut f, answer(200, &[], ""), MS));
    }
    let state = d.store.get(&budget_key("payments")).unwrap().unwrap().value;
    let b = cfg.budget.unwrap();
    // 3 deposits earned 3 retries, 3 were spent.
    assert_eq!(budget::balance(&b, &state, d.now), 0);
}

#[test]
fn a_spent_budget_stops_retrying_and_is_counted() {
    let cfg = RetryConfig {
        budget: Some(RetryBudget {
            ratio: 0.0,
            min_per_second: 0,
        }),
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(Some(cfg)), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let info = failed(d.reply(&mut f, answer(503, &[], "down"), MS));
    assert_eq!(info.gave_up, Some(GiveUp::BudgetExhausted));
    assert_eq!(info.last_answer.unwrap().status, 503);
    assert_eq!(d.count(UpstreamEvent::BudgetExhausted), 1);
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 0);
}

/// What happens next in the outage simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Start,
    Timer,
    Answer,
}

#[test]
fn budget_caps_retries_under_an_outage_of_many_concurrent_forwards() {
    // 100 requests/s for 5 s, every attempt answered 503 after 10 ms, each request wanting up
    // to 3 retries: 1,500 retries without a budget. The CAS loop also loses 20 % of its races.
    let b = RetryBudget {
        ratio: 0.2,
        min_per_second: 2,
    };
    let cfg = RetryConfig {
        jitter: Jitter::Full,
        base_delay: Duration::from_millis(50),
        deadline: Duration::from_secs(2),
        budget: Some(b),
        ..retry_cfg()
    };
    let u = upstream(Some(cfg));
    let mut d = Driver::new(7);
    d.store.conflict_probability(3, 200_000);
    let (rps, secs) = (100u64, 5u64);
    let requests = rps * secs;
    let mut forwards = Vec::new();
    let mut queue = BinaryHeap::new();
    for i in 0..requests {
        queue.push(Reverse((T0 + i * SEC / rps, Due::Start, i as usize)));
    }
    let mut ended = 0;
    while let Some(Reverse((at, due, i))) = queue.pop() {
        d.now = at;
        let step = match due {
            Due::Start => {
                forwards.push(CalloutForward::new(0, &u, request("GET", &[]), false, at));
                d.next(&mut forwards[i])
            }
            Due::Timer => d.next(&mut forwards[i]),
            Due::Answer => {
                let a = answer(503, &[], "overloaded");
                d.reply(&mut forwards[i], a, 0)
            }
        };
        match step {
            ForwardStep::Dispatch(_) => queue.push(Reverse((at + 10 * MS, Due::Answer, i))),
            ForwardStep::Wait { until } => queue.push(Reverse((until, Due::Timer, i))),
            ForwardStep::Failed(_) => ended += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(d.now - T0 < 10 * SEC, "the run fits in one budget window");
    assert_eq!(ended, requests);
    let retries = d.count(UpstreamEvent::Retries) as u64;
    let attempts = d.count(UpstreamEvent::Attempts) as u64;
    assert_eq!(attempts, requests + retries);
    // Within one 10 s window: ratio · requests + min_per_second · 10 s.
    let bound = (b.ratio * requests as f64) as u64 + u64::from(b.min_per_second) * 10;
    assert!(retries <= bound, "{retries} retries > {bound}");
    assert!(
        retries >= bound / 2,
        "{retries} retries: the budget is needlessly stingy"
    );
    assert!(d.count(UpstreamEvent::BudgetExhausted) > 0);
    assert!(d.store.stats().injected_conflicts > 0);
}
