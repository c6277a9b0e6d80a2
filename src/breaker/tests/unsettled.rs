//! The unsettled gauge beside the shared state ([`crate::breaker::gate`]): a settled breaker
//! admits without a shared-data read, and at every write that lands the gauge is already at
//! least the state's unsettledness — it is never behind, whatever the order of operations.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::breaker::gate::{self, breaker_key};
use crate::breaker::state::State;
use crate::breaker::{Admission, Ticket};
use crate::config::{BreakerConfig, FailureRate, Forward, OutcomeClass, UpstreamConfig};
use crate::metrics::{Event, Metrics};
use crate::outcome::AttemptOutcome;
use crate::store::{Cas, MemoryStore, ReadError, SharedStore, Versioned, WriteError};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn upstream(failure_rate: Option<FailureRate>) -> UpstreamConfig {
    UpstreamConfig {
        name: "api".into(),
        forward: Forward::Router,
        cluster: None,
        authority: None,
        timeout: Duration::from_secs(1),
        max_body_bytes: 1 << 20,
        retry: None,
        circuit_breaker: Some(BreakerConfig {
            failure_threshold: 2,
            failure_rate,
            slow_call: None,
            reset_timeout: Duration::from_secs(10),
            half_open_successes: 1,
            half_open_max_in_flight: 1,
            failure_on: vec![OutcomeClass::FiveXx],
        }),
        cache: None,
        fallback: Vec::new(),
    }
}

/// The process-wide gauge, shared by the metric sink and the store that checks it.
type Gauge = Rc<Cell<i64>>;

struct Sink(Gauge);

impl Metrics for Sink {
    fn count(&mut self, _event: Event) {}
    fn breaker_state(&mut self, _upstream: usize, _state: u8) {}
    fn breaker_unsettled(&mut self, _upstream: usize) -> Option<u64> {
        u64::try_from(self.0.get()).ok()
    }
    fn move_breaker_unsettled(&mut self, _upstream: usize, by: i64) {
        self.0.set(self.0.get() + by);
    }
}

/// Shared data that counts reads, can lose the next CAS writes, and checks at every write
/// that lands that the gauge is not below the state it writes.
struct Checked {
    inner: MemoryStore,
    gauge: Gauge,
    reads: Cell<u32>,
    lose_next: Cell<u32>,
    violations: RefCell<Vec<String>>,
}

impl SharedStore for Checked {
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError> {
        if cas.is_some() && self.lose_next.get() > 0 {
            self.lose_next.set(self.lose_next.get() - 1);
            return Err(WriteError::CasMismatch);
        }
        self.inner.set(key, value, cas)?;
        if self.gauge.get() < i64::from(State::unsettled(value)) {
            self.violations
                .borrow_mut()
                .push(format!("gauge {} behind a write", self.gauge.get()));
        }
        Ok(())
    }
}

struct World {
    upstream: UpstreamConfig,
    store: Checked,
    sink: Sink,
}

impl World {
    fn new(failure_rate: Option<FailureRate>) -> Self {
        let gauge = Gauge::default();
        let inner = MemoryStore::new();
        inner.set(&breaker_key("api"), b"", None).expect("create");
        Self {
            upstream: upstream(failure_rate),
            store: Checked {
                inner,
                gauge: gauge.clone(),
                reads: Cell::new(0),
                lose_next: Cell::new(0),
                violations: RefCell::new(Vec::new()),
            },
            sink: Sink(gauge),
        }
    }

    /// Admission, whether it was quiet, and the shared-data reads it made.
    fn admit(&mut self, now: u64) -> (Admission, bool, u32) {
        let before = self.store.reads.get();
        let (a, quiet) =
            gate::admit_noting_quiet(&self.upstream, 0, &self.store, now, &mut self.sink);
        (a, quiet, self.store.reads.get() - before)
    }

    fn answer(&mut self, admitted: (Admission, bool, u32), status: u16, now: u64) -> u32 {
        let before = self.store.reads.get();
        let ticket = admitted.0.ticket().expect("admitted");
        let outcome = AttemptOutcome::response(status, 1);
        gate::record_unless_quiet(
            &self.upstream,
            0,
            &self.store,
            ticket,
            admitted.1,
            &outcome,
            now,
            &mut self.sink,
        );
        self.store.reads.get() - before
    }

    fn state_unsettled(&self) -> i64 {
        let v = self.store.inner.get(&breaker_key("api")).expect("read");
        i64::from(State::unsettled(&v.expect("key").value))
    }

    /// Quiescent: the gauge equals the state's unsettledness, and was never behind a write.
    fn assert_in_step(&self) {
        assert_eq!(self.sink.0.get(), self.state_unsettled(), "gauge vs state");
        assert!(
            self.store.violations.borrow().is_empty(),
            "{:?}",
            self.store.violations
        );
    }
}

#[test]
fn a_settled_breaker_admits_and_counts_a_success_without_reading_shared_data() {
    let mut w = World::new(None);
    let a = w.admit(T0);
    assert_eq!(a, (Admission::Allow(Ticket::UNREAD_CLOSED), true, 0));
    assert_eq!(
        w.answer(a, 200, T0),
        0,
        "a success on a settled breaker is only counted"
    );
    w.assert_in_step();
}

#[test]
fn the_gauge_follows_the_breaker_through_a_whole_cycle() {
    let mut w = World::new(None);
    // A first failure unsettles the breaker: the gauge is raised, later requests read.
    let a = w.admit(T0);
    w.answer(a, 500, T0);
    w.assert_in_step();
    assert_eq!(w.sink.0.get(), 1);
    let b = w.admit(T0);
    assert_eq!(b.2, 1, "an unsettled breaker is read");
    assert!(matches!(b.0, Admission::Allow(t) if t != Ticket::UNREAD_CLOSED));
    // A success resets the streak: settled again, the gauge back to 0.
    w.answer(b, 200, T0);
    w.assert_in_step();
    assert_eq!(w.sink.0.get(), 0);
    // Two failures open it.
    for _ in 0..2 {
        let a = w.admit(T0);
        w.answer(a, 500, T0);
    }
    w.assert_in_step();
    let rejected = w.admit(T0 + SEC);
    assert!(
        matches!(rejected.0, Admission::Reject { .. }),
        "{rejected:?}"
    );
    // After reset_timeout a probe goes out and its success closes the breaker.
    let probe = w.admit(T0 + 11 * SEC);
    assert!(matches!(probe.0, Admission::Probe { .. }), "{probe:?}");
    w.assert_in_step();
    w.answer(probe, 200, T0 + 11 * SEC);
    w.assert_in_step();
    assert_eq!(w.sink.0.get(), 0);
    assert_eq!(w.admit(T0 + 12 * SEC).2, 0, "settled: no read again");
}

#[test]
fn a_ticket_admitted_unread_counts_only_while_the_breaker_is_closed() {
    let mut w = World::new(None);
    let early = w.admit(T0); // unread, while settled
    for _ in 0..2 {
        let a = w.admit(T0);
        w.answer(a, 500, T0);
    }
    let open = w.store.inner.get(&breaker_key("api")).expect("read");
    // The early request fails after the breaker opened: its failure changes nothing.
    w.answer(early, 500, T0 + SEC);
    assert_eq!(w.store.inner.get(&breaker_key("api")).expect("read"), open);
    w.assert_in_step();
}

#[test]
fn a_lost_cas_takes_its_raise_back() {
    let mut w = World::new(None);
    let a = w.admit(T0);
    w.store.lose_next.set(2);
    w.answer(a, 500, T0);
    w.assert_in_step();
    assert_eq!(w.sink.0.get(), 1, "raised once per attempt, two taken back");
}

#[test]
fn a_failure_rate_rule_always_reads_the_state() {
    let rate = FailureRate {
        threshold: 0.5,
        minimum_calls: 4,
        window: Duration::from_secs(10),
    };
    let mut w = World::new(Some(rate));
    let a = w.admit(T0);
    assert_eq!(a.2, 1, "the window must see every call");
    assert_eq!(w.answer(a, 200, T0), 1);
    w.assert_in_step();
}

#[test]
fn reconcile_raises_a_gauge_left_behind_by_its_state_and_nothing_else() {
    let mut w = World::new(None);
    for _ in 0..2 {
        let a = w.admit(T0);
        w.answer(a, 500, T0);
    }
    let state = w.store.inner.get(&breaker_key("api")).expect("read");
    let state = state.expect("key").value;
    w.sink.0.set(0); // the stat recreated at 0 while the state survived
    gate::reconcile(0, &state, &mut w.sink);
    assert_eq!(w.sink.0.get(), 1);
    gate::reconcile(0, &state, &mut w.sink);
    assert_eq!(w.sink.0.get(), 1, "a gauge already up is left alone");
    let mut settled = World::new(None);
    gate::reconcile(0, b"", &mut settled.sink);
    assert_eq!(settled.sink.0.get(), 0);
    assert!(matches!(w.admit(T0 + SEC).0, Admission::Reject { .. }));
}

#[test]
fn unsettled_reads_phase_and_streak_and_takes_garbage_for_settled() {
    let cfg = upstream(None).circuit_breaker.expect("breaker");
    let mut s = State::fresh(&cfg);
    assert!(!State::unsettled(&s.encode()));
    s.consecutive_failures = 1;
    assert!(State::unsettled(&s.encode()));
    s.enter(crate::breaker::Phase::Open, T0);
    assert!(State::unsettled(&s.encode()));
    s.enter(crate::breaker::Phase::HalfOpen, T0);
    assert!(State::unsettled(&s.encode()));
    for garbage in [&b""[..], &[0xff; 128][..], &[1, 1, 0][..]] {
        assert!(!State::unsettled(garbage));
    }
}
