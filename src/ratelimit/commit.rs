//! The engine's two single-limit steps over a slot table: read and evaluate (phase 1), and
//! commit an admission with a CAS, re-evaluating after a conflict (phase 2).

use super::algorithm;
use super::limit::{Limit, Pending, Settled, EVICTION};
use super::{Decision, Evaluation};
use crate::store::hash::KeyHash;
use crate::store::slots::{Lookup, SlotStep};
use crate::store::SharedStore;
use crate::time::UnixNanos;

/// Commits one limit's admission, starting from phase 1's lookup and evaluation; after a
/// conflict the limit is read and evaluated again, and may now reject. `Err(index)` when the
/// store failed or every attempt lost its race.
pub(crate) fn commit(
    limit: &Limit,
    store: &dyn SharedStore,
    p: Pending,
    now: UnixNanos,
) -> Result<Settled, usize> {
    // Phase 1 already evaluated exactly the state `p.lookup` holds, at this `now`.
    let mut evaluated = Some(p.evaluation);
    let committed =
        limit
            .table
            .update_lookup(store, p.hash, now, EVICTION, Some(&p.lookup), |lookup| {
                let mut evaluation = evaluated.take().unwrap_or_else(|| {
                    let state = lookup.state().unwrap_or(&[]);
                    algorithm::evaluate(&limit.params, state, now)
                });
                if evaluation.decision == Decision::Reject {
                    return SlotStep::Keep((evaluation, false));
                }
                // The state moves into the write and comes back with its result: no copy.
                let had_state = evaluation.new_state.is_some();
                SlotStep::Write {
                    state: evaluation.new_state.take().unwrap_or_default(),
                    at_rest_at: evaluation.at_rest_at,
                    result: (evaluation, had_state),
                }
            });
    match committed {
        Ok(((mut evaluation, had_state), (_, written))) => {
            if had_state {
                evaluation.new_state = Some(written);
            }
            Ok(Settled {
                index: p.index,
                hash: p.hash,
                evaluation,
            })
        }
        Err(_) => Err(p.index),
    }
}

pub(crate) fn read_and_evaluate(
    limit: &Limit,
    store: &dyn SharedStore,
    hash: KeyHash,
    now: UnixNanos,
) -> Option<(Lookup, Evaluation)> {
    let lookup = limit.table.lookup(store, hash, now, EVICTION).ok()?;
    let evaluation = algorithm::evaluate(&limit.params, lookup.state().unwrap_or(&[]), now);
    Some((lookup, evaluation))
}
