//! The retry budget of each upstream, over its one shared-data key.
//!
//! [`crate::retry::budget`] is the pure arithmetic; this is where it meets shared data: one
//! value per upstream at `levee:v1:budget:<upstream>` ([`budget_key`]), pre-created at
//! configure time, deposited into once per original request and withdrawn from once per
//! retry, each a read-compute-CAS so that every worker VM draws on one budget.
//!
//! Unlike the breaker, the budget **fails closed**: when its key cannot be updated (missing,
//! too contended, host error) the retry is refused and `levee_internal_errors` counts it. A
//! refused retry costs one client an error it would have had without retries; a budget that
//! waves retries through when the shared store is struggling would let an outage multiply
//! the upstream's load, which is the one thing it exists to prevent. A failed deposit only
//! makes the budget slightly stingier.

use crate::config::RetryBudget;
use crate::metrics::{Event, GlobalEvent, Metrics};
use crate::retry::budget;
use crate::store::cas::{update_key, Step};
use crate::store::SharedStore;
use crate::time::UnixNanos;

/// The shared-data key of an upstream's retry budget (pre-create it at configure time, empty).
pub fn budget_key(upstream: &str) -> String {
    format!("levee:v1:budget:{upstream}")
}

/// Records one original request to `upstream`.
pub fn deposit(upstream: &str, store: &dyn SharedStore, now: UnixNanos, metrics: &mut dyn Metrics) {
    let result = update_key(store, &budget_key(upstream), |current| {
        let state = current.value.as_slice();
        Step::Write {
            value: budget::deposit(state, now),
            result: (),
        }
    });
    if result.is_err() {
        metrics.count(Event::Global(GlobalEvent::InternalError));
    }
}

/// Takes one retry from the budget; `false` when it is spent (or cannot be read).
pub fn withdraw(
    cfg: &RetryBudget,
    upstream: &str,
    store: &dyn SharedStore,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) -> bool {
    let result = update_key(store, &budget_key(upstream), |current| {
        let state = current.value.as_slice();
        match budget::try_withdraw(cfg, state, now) {
            (true, Some(value)) => Step::Write {
                value,
                result: true,
            },
            (allowed, _) => Step::Keep(allowed),
        }
    });
    match result {
        Ok(allowed) => allowed,
        Err(e) => {
            log::debug!("levee retry budget for upstream \"{upstream}\": {e}; retry refused");
            metrics.count(Event::Global(GlobalEvent::InternalError));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;
    use crate::store::MemoryStore;

    const T0: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn a_missing_budget_key_refuses_retries_and_counts_an_internal_error() {
        let store = MemoryStore::new();
        let mut m = Recorder::default();
        let cfg = RetryBudget {
            ratio: 1.0,
            min_per_second: 10,
        };
        deposit("u", &store, T0, &mut m);
        assert!(!withdraw(&cfg, "u", &store, T0, &mut m));
        assert_eq!(m.count_of(Event::Global(GlobalEvent::InternalError)), 2);
        assert_eq!(store.key_count(), 0, "the request path never creates keys");
    }

    #[test]
    fn withdrawals_survive_injected_cas_conflicts() {
        let store = MemoryStore::new();
        store.set(&budget_key("u"), b"", None).unwrap();
        let cfg = RetryBudget {
            ratio: 0.0,
            min_per_second: 1,
        };
        let mut m = Recorder::default();
        store.fail_next_cas(3);
        let allowed = (0..15)
            .filter(|_| withdraw(&cfg, "u", &store, T0, &mut m))
            .count();
        assert_eq!(allowed, 10, "exactly the reserve: min_per_second · 10 s");
        assert!(m.events.is_empty());
    }
}
