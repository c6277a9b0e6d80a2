//! A circuit breaker per backend (`backends` entry), so that an outage of etcd or of the rate
//! limit service costs no waiting per request.
//!
//! Without it, every request that needs a backend that is down pays the call's timeout before
//! `on_backend_error` decides. With it, after [`FAILURE_THRESHOLD`] failed calls in a row the
//! breaker opens and a call is answered at once with gRPC status UNAVAILABLE, without being
//! sent; after [`RESET_TIMEOUT`] one probe call goes out, and its success closes the breaker.
//! A failure is any answer other than OK, or one that came after the call's timeout.
//!
//! It is the upstream breaker's machine ([`crate::breaker::machine`]) with fixed settings,
//! over its own shared-data key (`levee:v1:cb:backend:<name>`, pre-created at configure time),
//! so all workers share one state per backend. A CAS loop that cannot finish lets the call
//! through: the backend's own timeout still bounds it.

use crate::breaker::{self, Admission, Ticket, Transition};
use crate::config::BreakerConfig;
use crate::metrics::{Event, GlobalEvent, Metrics};
use crate::store::cas::{update_key, Step};
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};
use std::time::Duration;

/// Failed calls in a row that open a backend's breaker.
pub const FAILURE_THRESHOLD: u32 = 5;
/// How long an open backend breaker refuses calls before it lets one probe through: about one
/// etcd leader election (etcd's default election timeout is 1 s), so that a lost leader, which
/// fails every call until its successor is elected, costs the clients no more than the
/// election itself; in a longer outage it is one probe per second per Envoy.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared-data key of a backend's breaker (upstream names cannot hold `:`, so it never
/// meets an upstream's key).
pub fn backend_breaker_key(backend: &str) -> String {
    format!("levee:v1:cb:backend:{backend}")
}

/// The fixed settings of every backend breaker.
pub fn backend_breaker_config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: FAILURE_THRESHOLD,
        failure_rate: None,
        slow_call: None,
        reset_timeout: RESET_TIMEOUT,
        half_open_successes: 1,
        half_open_max_in_flight: 1,
        failure_on: Vec::new(),
    }
}

/// Whether a call may go out, and whether it was *quiet* (a success would change nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallAdmission {
    pub admission: Admission,
    pub quiet: bool,
}

/// Asks the breaker of backend `index` (named `name`) whether a call with `timeout` may go out.
pub fn admit_call(
    name: &str,
    index: usize,
    timeout: Duration,
    store: &dyn SharedStore,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) -> CallAdmission {
    let cfg = backend_breaker_config();
    let lease = duration_nanos(timeout).saturating_add(NANOS_PER_SEC);
    let result = update_key(store, &backend_breaker_key(name), |current| {
        let a = breaker::admit(&cfg, current.value.as_slice(), now, lease);
        let out = (a.admission, a.transition, a.quiet);
        match a.new_state {
            Some(value) => Step::Write { value, result: out },
            None => Step::Keep(out),
        }
    });
    match result {
        Ok((admission, transition, quiet)) => {
            if let Some(t) = transition {
                report(name, index, t, metrics);
            }
            CallAdmission {
                admission,
                quiet: quiet && transition.is_none(),
            }
        }
        Err(_) => {
            metrics.count(Event::Global(GlobalEvent::InternalError));
            let ticket = Ticket {
                epoch: u32::MAX,
                probe: None,
            };
            CallAdmission {
                admission: Admission::Allow(ticket),
                quiet: false,
            }
        }
    }
}

/// Records how a call admitted with `ticket` ended. A success on a breaker that was quiet
/// when the call was admitted changes nothing and skips the shared-data read.
// The backend (name, index), the admission (ticket, quiet), the outcome and the environment
// (store, clock, metrics): eight plain inputs, none of which belongs with another.
#[allow(clippy::too_many_arguments)]
pub fn record_call(
    name: &str,
    index: usize,
    ticket: Ticket,
    quiet: bool,
    failed: bool,
    store: &dyn SharedStore,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) {
    if quiet && !failed && ticket.probe.is_none() {
        return;
    }
    let cfg = backend_breaker_config();
    let result = update_key(store, &backend_breaker_key(name), |current| {
        let r = breaker::record(&cfg, current.value.as_slice(), ticket, failed, now);
        match r.new_state {
            Some(value) => Step::Write {
                value,
                result: r.transition,
            },
            None => Step::Keep(r.transition),
        }
    });
    match result {
        Ok(Some(t)) => report(name, index, t, metrics),
        Ok(None) => {}
        Err(_) => metrics.count(Event::Global(GlobalEvent::InternalError)),
    }
}

fn report(name: &str, index: usize, t: Transition, metrics: &mut dyn Metrics) {
    log::info!(
        "levee backend breaker: backend \"{name}\" {} -> {} ({})",
        t.from.as_str(),
        t.to.as_str(),
        t.cause.as_str()
    );
    metrics.backend_breaker_state(index, t.to.gauge());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;
    use crate::store::MemoryStore;

    const T0: UnixNanos = 1_700_000_000 * NANOS_PER_SEC;
    const TIMEOUT: Duration = Duration::from_millis(250);

    fn store() -> MemoryStore {
        let store = MemoryStore::default();
        store
            .set(&backend_breaker_key("records"), b"", None)
            .unwrap();
        store
    }

    fn call(store: &MemoryStore, now: UnixNanos, failed: bool, m: &mut Recorder) -> Admission {
        let a = admit_call("records", 0, TIMEOUT, store, now, m);
        if let Some(ticket) = a.admission.ticket() {
            record_call("records", 0, ticket, a.quiet, failed, store, now, m);
        }
        a.admission
    }

    #[test]
    fn opens_after_five_failures_in_a_row_and_then_refuses_without_a_call() {
        let (store, mut m) = (store(), Recorder::default());
        for i in 0..FAILURE_THRESHOLD {
            let a = call(&store, T0 + u64::from(i), true, &mut m);
            assert!(a.ticket().is_some(), "call {i} refused too early");
        }
        assert_eq!(m.backend_states, vec![(0, 1)], "opened once");
        let half = duration_nanos(RESET_TIMEOUT) / 2;
        let a = admit_call("records", 0, TIMEOUT, &store, T0 + half, &mut m);
        match a.admission {
            Admission::Reject { retry_after_ns } => assert!(
                retry_after_ns > half / 2 && retry_after_ns <= duration_nanos(RESET_TIMEOUT)
            ),
            other => panic!("open breaker admitted {other:?}"),
        }
    }

    #[test]
    fn a_success_resets_the_streak() {
        let (store, mut m) = (store(), Recorder::default());
        for i in 0..20u64 {
            // Four failures, one success: never five in a row.
            call(&store, T0 + i, i % 5 != 4, &mut m);
        }
        assert!(m.backend_states.is_empty(), "{:?}", m.backend_states);
        assert!(admit_call("records", 0, TIMEOUT, &store, T0 + 30, &mut m)
            .admission
            .ticket()
            .is_some());
    }

    #[test]
    fn after_the_reset_timeout_one_probe_goes_out_and_its_success_closes() {
        let (store, mut m) = (store(), Recorder::default());
        for i in 0..5 {
            call(&store, T0 + i, true, &mut m);
        }
        let later = T0 + duration_nanos(RESET_TIMEOUT) + 10;
        let probe = admit_call("records", 0, TIMEOUT, &store, later, &mut m);
        assert!(matches!(probe.admission, Admission::Probe { .. }));
        let second = admit_call("records", 0, TIMEOUT, &store, later + 1, &mut m);
        assert!(
            matches!(second.admission, Admission::Reject { .. }),
            "only one probe at a time"
        );
        let ticket = probe.admission.ticket().unwrap();
        record_call(
            "records",
            0,
            ticket,
            probe.quiet,
            false,
            &store,
            later + 2,
            &mut m,
        );
        assert_eq!(m.backend_states, vec![(0, 1), (0, 2), (0, 0)]);
        assert!(matches!(
            admit_call("records", 0, TIMEOUT, &store, later + 3, &mut m).admission,
            Admission::Allow(_)
        ));
    }

    #[test]
    fn a_failed_probe_reopens_for_another_reset_timeout() {
        let (store, mut m) = (store(), Recorder::default());
        for i in 0..5 {
            call(&store, T0 + i, true, &mut m);
        }
        let later = T0 + duration_nanos(RESET_TIMEOUT) + 10;
        let half = duration_nanos(RESET_TIMEOUT) / 2;
        assert!(matches!(
            call(&store, later, true, &mut m),
            Admission::Probe { .. }
        ));
        assert!(matches!(
            admit_call("records", 0, TIMEOUT, &store, later + half, &mut m).admission,
            Admission::Reject { .. }
        ));
        assert_eq!(m.backend_states.last(), Some(&(0, 1)));
    }

    #[test]
    fn a_missing_key_lets_calls_through_and_counts_an_internal_error() {
        let (store, mut m) = (MemoryStore::default(), Recorder::default());
        let a = admit_call("records", 0, TIMEOUT, &store, T0, &mut m);
        assert!(a.admission.ticket().is_some());
        assert_eq!(m.count_of(Event::Global(GlobalEvent::InternalError)), 1);
    }
}
