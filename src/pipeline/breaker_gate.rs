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
use crate::retry::outcome::AttemptOutcome;
use crate::store::cas::{update_key, Step};
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};

use super::MAX_CAS_ATTEMPTS;

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
    let Some(cfg) = &upstream.circuit_breaker else {
        return Admission::Allow(Ticket {
            epoch: 0,
            probe: None,
        });
    };
    let lease = probe_lease_ns(upstream);
    let result = update_key(
        store,
        &breaker_key(&upstream.name),
        MAX_CAS_ATTEMPTS,
        |current| {
            let state = current.map(|v| v.value.as_slice()).unwrap_or(&[]);
            let a = breaker::admit(cfg, state, now, lease);
            match a.new_state {
                Some(value) => Step::Write {
                    value,
                    result: (a.admission, a.transition),
                },
                None => Step::Keep((a.admission, a.transition)),
            }
        },
    );
    match result {
        Ok((admission, transition)) => {
            if let Some(t) = transition {
                report_transition(upstream, index, t, metrics);
            }
            if let Admission::Reject { .. } = admission {
                metrics.count(Event::Breaker {
                    upstream: index,
                    what: BreakerEvent::Rejected,
                });
            }
            admission
        }
        Err(_) => {
            metrics.count(Event::Global(GlobalEvent::InternalError));
            Admission::Allow(Ticket {
                epoch: u32::MAX,
                probe: None,
            })
        }
    }
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
    let result = update_key(
        store,
        &breaker_key(&upstream.name),
        MAX_CAS_ATTEMPTS,
        |current| {
            let state = current.map(|v| v.value.as_slice()).unwrap_or(&[]);
            let r = breaker::record(cfg, state, ticket, failed, now);
            match r.new_state {
                Some(value) => Step::Write {
                    value,
                    result: r.transition,
                },
                None => Step::Keep(r.transition),
            }
        },
    );
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
