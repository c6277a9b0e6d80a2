//! The circuit breaker of each upstream, over its one shared-data key.
//!
//! The breaker's state (`crate::breaker`) is one small value per upstream at
//! `levee:v1:cb:<upstream>`, pre-created at configure time and updated by read-compute-CAS,
//! so every worker sees one state. When the CAS loop cannot finish (contention or a host
//! error), the breaker fails open — letting a request through is safer than refusing all
//! traffic because of levee — and `levee_internal_errors` counts it.

use crate::breaker::{self, Admission, Ticket, Transition};
use crate::config::UpstreamConfig;
use crate::metrics::{BreakerEvent, Event, GlobalEvent, Metrics};
use crate::outcome::AttemptOutcome;
use crate::store::cas::{update_key, Step};
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
    let lease = probe_lease_ns(upstream);
    let result = update_key(store, &breaker_key(&upstream.name), |current| {
        let state = current.value.as_slice();
        let a = breaker::admit(cfg, state, now, lease);
        match a.new_state {
            Some(value) => Step::Write {
                value,
                result: (a.admission, a.transition, a.quiet),
            },
            None => Step::Keep((a.admission, a.transition, a.quiet)),
        }
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
    let result = update_key(store, &breaker_key(&upstream.name), |current| {
        let state = current.value.as_slice();
        let r = breaker::record(cfg, state, ticket, failed, now);
        match r.new_state {
            Some(value) => Step::Write {
                value,
                result: r.transition,
            },
            None => Step::Keep(r.transition),
        }
    });
    match result {
        Ok(Some(t)) => report_transition(upstream, index, t, metrics),
        Ok(None) => {}
        Err(_) => metrics.count(Event::Global(GlobalEvent::InternalError)),
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
