//! The circuit breaker of each upstream, over its one shared-data key.
//!
//! The breaker's state (`crate::breaker`) is one small value per upstream at
//! `levee:v1:cb:<upstream>`, pre-created at configure time and updated by read-compute-CAS,
//! so every worker sees one state. When the CAS loop cannot finish (contention or a host
//! error), the breaker fails open — letting a request through is safer than refusing all
//! traffic because of levee — and `levee_internal_errors` counts it.
//!
//! **The unsettled gauge.** Reading the shared state costs a data-returning host call on every
//! request; reading an Envoy gauge does not (a u64 through a pointer). So each breaker has a
//! process-wide gauge, `levee_breaker.<upstream>.unsettled`, that is 0 only while the state is
//! *settled* — CLOSED with no failure streak — and every writer of the state keeps it *ahead*
//! of the state: a write that unsettles the breaker (a first failure, a transition out of
//! CLOSED) raises the gauge by 1 *before* its CAS, and takes the raise back after if the CAS
//! lost; a write that settles it lowers the gauge by 1 *after* its CAS. Gauge moves are atomic
//! additions, so their order does not matter: at every instant the gauge is at least the
//! number of unsettled states (0 or 1) — it can be high for a moment, never low. A request
//! that reads 0 is admitted without reading the state, with [`Ticket::UNREAD_CLOSED`]; as if it
//! had read the state at that instant, so an OPEN breaker admits nothing it would not have
//! admitted by reading the state. Any other value (or a failure-rate rule, whose window must
//! see every call) reads the state as before, and a success admitted on 0 is only counted.
//! A gauge recreated at 0 while the state survived (a new VM whose stats were freed) is
//! raised at configure time ([`reconcile`]).

use crate::breaker::state::State;
use crate::breaker::{self, Admission, Ticket, Transition};
use crate::config::UpstreamConfig;
use crate::metrics::{BreakerEvent, Event, GlobalEvent, Metrics};
use crate::outcome::AttemptOutcome;
use crate::store::cas::{update_key_announcing, Step, UpdateError};
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};

/// The shared-data key of an upstream's breaker.
pub fn breaker_key(upstream: &str) -> String {
    format!("levee:v1:cb:{upstream}")
}

/// How long a HALF_OPEN probe holds its slot: the attempt timeout plus a second of slack.
pub fn probe_lease_ns(upstream: &UpstreamConfig) -> u64 {
    duration_nanos(upstream.timeout).saturating_add(NANOS_PER_SEC)
}

/// Asks the breaker of upstream `index` whether an attempt may go out.
pub fn admit(
    upstream: &UpstreamConfig,
    index: usize,
    store: &dyn SharedStore,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) -> Admission {
    admit_noting_quiet(upstream, index, store, now, metrics).0
}

/// [`admit`], also telling whether the breaker was *quiet* — CLOSED, no failure streak and
/// no failure-rate rule — so that a success would change nothing in its state: then
/// [`record`] of a success may skip its shared-data read ([`record_unless_quiet`]).
pub fn admit_noting_quiet(
    upstream: &UpstreamConfig,
    index: usize,
    store: &dyn SharedStore,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) -> (Admission, bool) {
    let Some(cfg) = &upstream.circuit_breaker else {
        let ticket = Ticket {
            epoch: 0,
            probe: None,
        };
        return (Admission::Allow(ticket), true);
    };
    if cfg.failure_rate.is_none() && metrics.breaker_unsettled(index) == Some(0) {
        return (Admission::Allow(Ticket::UNREAD_CLOSED), true);
    }
    let lease = probe_lease_ns(upstream);
    let result = update_breaker(upstream, index, store, metrics, |state| {
        let a = breaker::admit(cfg, state, now, lease);
        (a.new_state, (a.admission, a.transition, a.quiet))
    });
    match result {
        Ok((admission, transition, quiet)) => {
            if let Some(t) = transition {
                report_transition(upstream, index, t, metrics);
            }
            if let Admission::Reject { .. } = admission {
                metrics.count(Event::Breaker {
                    upstream: index,
                    what: BreakerEvent::Rejected,
                });
            }
            (admission, quiet && transition.is_none())
        }
        Err(_) => {
            metrics.count(Event::Global(GlobalEvent::InternalError));
            let ticket = Ticket {
                epoch: u32::MAX,
                probe: None,
            };
            (Admission::Allow(ticket), false)
        }
    }
}

/// [`record`], except that a success on a breaker that was quiet when the attempt was
/// admitted (see [`admit_noting_quiet`]) is only counted: its state would not change.
/// (A failure another worker recorded meanwhile keeps its streak one success longer — the
/// order of concurrent outcomes is arbitrary anyway.)
// Eight distinct inputs: the forward machine calls this too and has no `Env` (no `Plugin`),
// so the store, clock and metrics come separately from the upstream, ticket and outcome.
#[allow(clippy::too_many_arguments)]
pub fn record_unless_quiet(
    upstream: &UpstreamConfig,
    index: usize,
    store: &dyn SharedStore,
    ticket: Ticket,
    quiet: bool,
    outcome: &AttemptOutcome,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) {
    let Some(cfg) = &upstream.circuit_breaker else {
        return;
    };
    if quiet && ticket.probe.is_none() && !breaker::is_failure(cfg, outcome) {
        metrics.count(Event::Breaker {
            upstream: index,
            what: BreakerEvent::Success,
        });
        return;
    }
    record(upstream, index, store, ticket, outcome, now, metrics);
}

/// Records the outcome of an attempt admitted with `ticket`.
pub fn record(
    upstream: &UpstreamConfig,
    index: usize,
    store: &dyn SharedStore,
    ticket: Ticket,
    outcome: &AttemptOutcome,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) {
    let Some(cfg) = &upstream.circuit_breaker else {
        return;
    };
    let failed = breaker::is_failure(cfg, outcome);
    let what = match (ticket.probe.is_some(), failed) {
        (true, true) => BreakerEvent::ProbeFailure,
        (true, false) => BreakerEvent::ProbeSuccess,
        (false, true) => BreakerEvent::Failure,
        (false, false) => BreakerEvent::Success,
    };
    metrics.count(Event::Breaker {
        upstream: index,
        what,
    });
    let result = update_breaker(upstream, index, store, metrics, |state| {
        let r = breaker::record(cfg, state, ticket, failed, now);
        (r.new_state, r.transition)
    });
    match result {
        Ok(Some(t)) => report_transition(upstream, index, t, metrics),
        Ok(None) => {}
        Err(_) => metrics.count(Event::Global(GlobalEvent::InternalError)),
    }
}

/// Read-compute-CAS on the breaker's key with `f` (state bytes → bytes to write, if any, and a
/// result), keeping the unsettled gauge ahead of the state (see the module docs).
fn update_breaker<T>(
    upstream: &UpstreamConfig,
    index: usize,
    store: &dyn SharedStore,
    metrics: &mut dyn Metrics,
    mut f: impl FnMut(&[u8]) -> (Option<Vec<u8>>, T),
) -> Result<T, UpdateError> {
    let mut raised: i64 = 0;
    let result = update_key_announcing(
        store,
        &breaker_key(&upstream.name),
        |current| {
            let seen = current.value.as_slice();
            match f(seen) {
                (Some(value), result) => {
                    let change =
                        i64::from(State::unsettled(&value)) - i64::from(State::unsettled(seen));
                    Step::Write {
                        value,
                        result: (result, change),
                    }
                }
                (None, result) => Step::Keep((result, 0)),
            }
        },
        |seen, next| {
            if !State::unsettled(seen) && State::unsettled(next) {
                metrics.move_breaker_unsettled(index, 1);
                raised += 1;
            }
        },
    );
    // What the landed write changed, minus the raises made ahead of writes (a raise for the
    // write that landed and unsettled the breaker stays: it is that write's +1).
    let (result, change) = match result {
        Ok((result, change)) => (Ok(result), change),
        Err(e) => (Err(e), 0),
    };
    if change != raised {
        metrics.move_breaker_unsettled(index, change - raised);
    }
    result
}

/// Makes sure the unsettled gauge of upstream `index` is not below its state (configure
/// time): a gauge at 0 beside an unsettled state — stats recreated at 0 while shared data
/// survived — is raised by 1. Raising is always safe (the request path then reads the state);
/// a raise a concurrent writer made unnecessary only keeps that path on reads.
pub fn reconcile(index: usize, state: &[u8], metrics: &mut dyn Metrics) {
    if State::unsettled(state) && metrics.breaker_unsettled(index) == Some(0) {
        metrics.move_breaker_unsettled(index, 1);
    }
}

fn report_transition(
    upstream: &UpstreamConfig,
    index: usize,
    t: Transition,
    metrics: &mut dyn Metrics,
) {
    log::info!(
        "levee circuit breaker: upstream \"{}\" {} -> {} ({})",
        upstream.name,
        t.from.as_str(),
        t.to.as_str(),
        t.cause.as_str()
    );
    let what = match t.to {
        crate::breaker::Phase::Open => BreakerEvent::Opened,
        crate::breaker::Phase::HalfOpen => BreakerEvent::HalfOpened,
        crate::breaker::Phase::Closed => BreakerEvent::Closed,
    };
    metrics.count(Event::Breaker {
        upstream: index,
        what,
    });
    metrics.breaker_state(index, t.to.gauge());
}
