//! The breaker driven through every transition with a fake clock and an in-memory value.

mod probes_prop;
mod rate;
mod unsettled;

use std::time::Duration;

use super::*;
use crate::config::{BreakerConfig, OutcomeClass};
use crate::outcome::AttemptOutcome;
use crate::time::FakeClock;
use crate::time::{Clock, UnixNanos};

pub(super) const MS: u64 = 1_000_000;
pub(super) const SEC: u64 = 1_000_000_000;
pub(super) const T0: u64 = 1_700_000_000 * SEC;
pub(super) const LEASE: u64 = 2 * SEC;

pub(super) fn cfg() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        failure_rate: None,
        slow_call: None,
        reset_timeout: Duration::from_secs(30),
        half_open_successes: 2,
        half_open_max_in_flight: 1,
        failure_on: vec![
            OutcomeClass::FiveXx,
            OutcomeClass::Timeout,
            OutcomeClass::Reset,
            OutcomeClass::ConnectFailure,
        ],
    }
}

/// One breaker value in "shared data", with the transitions it went through.
pub(super) struct Harness {
    pub cfg: BreakerConfig,
    pub bytes: Vec<u8>,
    pub clock: FakeClock,
    pub transitions: Vec<(Phase, Phase, Cause)>,
}

impl Harness {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            bytes: Vec::new(),
            clock: FakeClock::at(T0),
            transitions: Vec::new(),
        }
    }
    pub fn now(&self) -> UnixNanos {
        self.clock.now()
    }
    pub fn advance(&self, ns: u64) {
        self.clock.advance(Duration::from_nanos(ns));
    }
    pub fn admit(&mut self) -> Admission {
        let a = admit(&self.cfg, &self.bytes, self.now(), LEASE);
        self.apply(a.transition, a.new_state);
        a.admission
    }
    pub fn record(&mut self, ticket: Ticket, failed: bool) {
        let r = record(&self.cfg, &self.bytes, ticket, failed, self.now());
        self.apply(r.transition, r.new_state);
    }
    /// Admits one call and records its result; returns the admission.
    pub fn call(&mut self, failed: bool) -> Admission {
        let a = self.admit();
        if let Some(t) = a.ticket() {
            self.record(t, failed);
        }
        a
    }
    fn apply(&mut self, t: Option<Transition>, new: Option<Vec<u8>>) {
        if let Some(t) = t {
            self.transitions.push((t.from, t.to, t.cause));
        }
        if let Some(new) = new {
            self.bytes = new;
        }
    }
    pub fn phase(&self) -> Phase {
        state_of(&self.cfg, &self.bytes, self.now()).phase()
    }
    pub fn trip(&mut self) {
        for _ in 0..self.cfg.failure_threshold {
            self.call(true);
        }
        assert_eq!(self.phase(), Phase::Open);
    }
}

#[test]
fn consecutive_failures_open_the_breaker() {
    let mut h = Harness::new(cfg());
    h.call(true);
    h.call(true);
    assert_eq!(h.phase(), Phase::Closed);
    h.call(true);
    assert_eq!(h.phase(), Phase::Open);
    assert_eq!(
        h.transitions,
        [(Phase::Closed, Phase::Open, Cause::ConsecutiveFailures)]
    );
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let mut h = Harness::new(cfg());
    h.call(true);
    h.call(true);
    h.call(false);
    h.call(true);
    h.call(true);
    assert_eq!(h.phase(), Phase::Closed);
}

#[test]
fn successes_while_healthy_write_nothing() {
    let h = Harness::new(cfg());
    let a = admit(&h.cfg, &h.bytes, h.now(), LEASE);
    assert_eq!(a.new_state, None);
    let r = record(
        &h.cfg,
        &h.bytes,
        a.admission.ticket().unwrap(),
        false,
        h.now(),
    );
    assert_eq!(
        r,
        Recorded {
            transition: None,
            new_state: None
        }
    );
}

#[test]
fn open_rejects_with_time_left_until_reset_timeout() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(10 * SEC);
    assert_eq!(
        h.admit(),
        Admission::Reject {
            retry_after_ns: 20 * SEC
        }
    );
    assert_eq!(
        state_of(&h.cfg, &h.bytes, h.now()),
        BreakerState::Open {
            retry_after_ns: 20 * SEC
        }
    );
    assert_eq!(state_of(&h.cfg, &h.bytes, h.now()).gauge(), 1);
}

#[test]
fn after_reset_timeout_one_probe_is_admitted_and_others_rejected() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(30 * SEC);
    assert_eq!(
        state_of(&h.cfg, &h.bytes, h.now()).gauge(),
        2,
        "logically half-open"
    );
    let probe = h.admit();
    assert!(
        matches!(probe, Admission::Probe { lease_until, .. } if lease_until == h.now() + LEASE)
    );
    assert_eq!(
        h.transitions.last(),
        Some(&(Phase::Open, Phase::HalfOpen, Cause::ResetTimeoutElapsed))
    );
    assert_eq!(
        h.admit(),
        Admission::Reject {
            retry_after_ns: LEASE
        }
    );
}

#[test]
fn half_open_successes_close_the_breaker() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(30 * SEC);
    assert!(matches!(h.call(false), Admission::Probe { .. }));
    assert_eq!(h.phase(), Phase::HalfOpen);
    assert!(matches!(h.call(false), Admission::Probe { .. }));
    assert_eq!(h.phase(), Phase::Closed);
    assert_eq!(
        h.transitions.last(),
        Some(&(Phase::HalfOpen, Phase::Closed, Cause::ProbesSucceeded))
    );
    assert!(matches!(h.admit(), Admission::Allow(_)));
}

#[test]
fn a_failed_probe_reopens_for_a_new_period() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(30 * SEC);
    h.call(false);
    h.advance(SEC);
    h.call(true);
    assert_eq!(
        h.transitions.last(),
        Some(&(Phase::HalfOpen, Phase::Open, Cause::ProbeFailed))
    );
    assert_eq!(
        h.admit(),
        Admission::Reject {
            retry_after_ns: 30 * SEC
        }
    );
}

#[test]
fn an_expired_lease_frees_the_probe_slot() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(30 * SEC);
    let vanished = h.admit().ticket().unwrap();
    h.advance(LEASE - 1);
    assert!(matches!(h.admit(), Admission::Reject { retry_after_ns: 1 }));
    h.advance(1);
    let second = h.admit();
    assert!(matches!(second, Admission::Probe { .. }));
    // The vanished probe's late answer no longer counts: its slot was given away.
    let before = h.bytes.clone();
    h.record(vanished, true);
    assert_eq!(h.bytes, before);
    assert_eq!(h.phase(), Phase::HalfOpen);
    h.record(second.ticket().unwrap(), false);
    assert_eq!(h.phase(), Phase::HalfOpen, "one success of two");
}

#[test]
fn a_late_probe_result_counts_while_its_lease_is_still_held() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(30 * SEC);
    let probe = h.admit().ticket().unwrap();
    h.advance(LEASE + SEC); // expired, but nobody needed the slot
    h.record(probe, true);
    assert_eq!(h.phase(), Phase::Open);
}

#[test]
fn stale_epoch_results_are_ignored() {
    let mut h = Harness::new(cfg());
    let slow_closed_call = h.admit().ticket().unwrap();
    h.trip();
    h.advance(30 * SEC);
    let probe = h.admit().ticket().unwrap();
    // The slow CLOSED-era call fails now: it must not reopen the breaker nor take the probe's place.
    h.record(slow_closed_call, true);
    assert_eq!(h.phase(), Phase::HalfOpen);
    assert!(
        matches!(h.admit(), Admission::Reject { .. }),
        "probe slot still held"
    );
    h.record(probe, false);
    h.call(false);
    assert_eq!(h.phase(), Phase::Closed);
    // A CLOSED-era call from before the whole cycle does not count in the new CLOSED period either.
    for _ in 0..5 {
        h.record(slow_closed_call, true);
    }
    assert_eq!(h.phase(), Phase::Closed);
}

#[test]
fn results_arriving_while_open_are_ignored() {
    let mut h = Harness::new(cfg());
    let t = h.admit().ticket().unwrap();
    h.trip();
    let before = h.bytes.clone();
    h.record(t, false);
    assert_eq!(h.bytes, before);
}

#[test]
fn garbage_state_is_a_fresh_closed_breaker() {
    let c = cfg();
    for bad in [vec![], vec![0xff; 500], vec![1, 1]] {
        assert_eq!(state_of(&c, &bad, T0), BreakerState::Closed);
        assert!(matches!(
            admit(&c, &bad, T0, LEASE).admission,
            Admission::Allow(_)
        ));
    }
}

#[test]
fn clock_stepping_back_keeps_it_open() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.clock.set(T0 - 60 * SEC);
    assert_eq!(
        h.admit(),
        Admission::Reject {
            retry_after_ns: 30 * SEC
        }
    );
}

#[test]
fn rerun_after_a_cas_conflict_reports_the_transition_once() {
    let mut h = Harness::new(cfg());
    h.trip();
    h.advance(30 * SEC);
    let read_by_both = h.bytes.clone();
    // Worker A wins the CAS: it moves the breaker to HALF_OPEN and holds the only probe slot.
    let a = admit(&h.cfg, &read_by_both, h.now(), LEASE);
    assert!(a.transition.is_some());
    let written = a.new_state.unwrap();
    // Worker B computed the same from the same bytes, lost the CAS, re-reads and re-runs.
    let b_first = admit(&h.cfg, &read_by_both, h.now(), LEASE);
    assert!(matches!(b_first.admission, Admission::Probe { .. }));
    let b = admit(&h.cfg, &written, h.now(), LEASE);
    assert_eq!(b.transition, None);
    assert!(matches!(b.admission, Admission::Reject { .. }));
}
