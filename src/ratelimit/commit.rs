//! The engine's two single-limit steps over a slot table: read and evaluate (phase 1), and
//! commit an admission with a CAS, re-evaluating after a conflict (phase 2).

use super::algorithm;
use super::limit::{Limit, Pending, EVICTION};
use super::Decision;
use crate::store::hash::KeyHash;
use crate::store::slots::SlotStep;
use crate::store::SharedStore;
use crate::time::UnixNanos;

/// Commits one limit's admission, starting from phase 1's lookup and evaluation; after a
/// conflict the limit is read and evaluated again, and may now reject. On `Ok`, `p.evaluation`
/// is the verdict that stands (with the state written, if any). `Err(index)` when the store
/// failed or every attempt lost its race. `p` is borrowed, not moved (a move copies the whole
/// lookup), and the evaluation is updated where it lies.
pub(crate) fn commit(
    limit: &Limit,
    store: &dyn SharedStore,
    p: &mut Pending,
    now: UnixNanos,
) -> Result<(), usize> {
    let Pending {
        hash,
        lookup,
        evaluation,
        ..
    } = p;
    // Phase 1 already evaluated exactly the state `lookup` holds, at this `now`.
    let mut evaluated = true;
    let committed =
        limit
            .table
            .update_lookup(store, *hash, now, EVICTION, Some(lookup), |lookup| {
                if !evaluated {
                    let state = lookup.state().unwrap_or(&[]);
                    *evaluation = algorithm::evaluate(&limit.params, state, now);
                }
                evaluated = false;
                if evaluation.decision == Decision::Reject {
                    return SlotStep::Keep(false);
                }
                // The state moves into the write and comes back with its result: no copy.
                let had_state = evaluation.new_state.is_some();
                SlotStep::Write {
                    state: evaluation.new_state.take().unwrap_or_default(),
                    at_rest_at: evaluation.at_rest_at,
                    result: had_state,
                }
            });
    match committed {
        Ok((had_state, (_, written))) => {
            if had_state {
                evaluation.new_state = Some(written);
            }
            Ok(())
        }
        Err(_) => Err(p.index),
    }
}

/// Phase 1 for limit `index`: its key's lookup and evaluation, built as the [`Pending`] that
/// phase 2 commits (no service key yet), so that neither is copied into it afterwards.
pub(crate) fn read_and_evaluate(
    limit: &Limit,
    store: &dyn SharedStore,
    index: usize,
    hash: KeyHash,
    now: UnixNanos,
) -> Option<Pending> {
    let lookup = limit.table.lookup(store, hash, now, EVICTION).ok()?;
    let evaluation = algorithm::evaluate(&limit.params, lookup.state().unwrap_or(&[]), now);
    Some(Pending {
        index,
        hash,
        lookup,
        evaluation,
        key: None,
        committed: false,
    })
}
