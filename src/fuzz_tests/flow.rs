//! The whole request pipeline under random traffic: the real [`crate::worker::Worker`] (and
//! through it every [`crate::pipeline::flow::RequestFlow`]) behind a fake host, with a
//! virtual clock.
//!
//! Each case builds a random (valid) plugin config, then runs a few dozen requests through
//! it, interleaved: random methods, paths, hostile header values and idempotency keys, bodies
//! that arrive in chunks at the client's pace (buffered by "Envoy" while levee holds the
//! request, exactly as the real host does), upstream answers with any status, garbage
//! `Retry-After`, resets and failed dispatches, clients that vanish at any stage, and a
//! [`MemoryStore`] that, in half of the cases, refuses reads and writes and injects CAS
//! conflicts. Timers fire in order as the clock moves; the `queue` fallback's deliveries go
//! out from the root context and are answered too. Then everything still open is driven to
//! its end.
//!
//! Checked on every step and at the end:
//! - no panic, and no reply with a status levee does not document for that reason;
//! - no hang: a request levee holds always has something that will wake it (a timer, a body
//!   chunk still to come, an outstanding callout);
//! - without store faults: no two executions of one idempotency key at once, and none while
//!   a stored answer for it is within its `ttl`; no internal error unless a table was full.

mod checks;
mod gen;
mod traffic;
mod upstream;
mod world;

use std::rc::Rc;

use proptest::prelude::*;

use super::cases;
use crate::random::{RandomSource, SplitMix64};
use crate::store::MemoryStore;
use crate::time::NANOS_PER_SEC as SEC;

pub(super) const T0: u64 = 1_700_000_000 * SEC;
/// No timer levee sets may be further away than this (longest configured wait here: 5 s).
pub(super) const MAX_WAIT_NS: u64 = 60 * SEC;

use gen::config_json;
pub(super) use gen::plugin;
use world::{tracing, Phase, World};

/// The shared stored-bytes counter (`max_stored_bytes`) equals the bytes the body table
/// really holds: without faults it neither leaks (stuck at the cap: nothing stored any
/// more) nor drifts low (the cap no longer bounds memory).
fn check_stored_bytes(store: &MemoryStore) -> Result<(), TestCaseError> {
    use crate::idempotency::shared_keys::BUDGET_KEY;
    use crate::store::SharedStore;
    let counted = store
        .get(BUDGET_KEY)
        .ok()
        .flatten()
        .and_then(|v| v.value.get(..8).and_then(|b| b.try_into().ok()))
        .map_or(0, u64::from_le_bytes);
    let held: u64 = store
        .keys()
        .iter()
        .filter(|k| k.starts_with("levee:v1:idem:body:"))
        .filter_map(|k| store.get(k).ok().flatten())
        .map(|v| v.value.len() as u64)
        .sum();
    prop_assert_eq!(
        counted,
        held,
        "the stored-bytes counter drifted from the body table"
    );
    Ok(())
}

fn run_case(
    seed: u64,
    steps: u32,
    faults: bool,
    no_body_callbacks: bool,
) -> Result<(), TestCaseError> {
    let mut rng = SplitMix64::seeded(seed);
    let small = faults || rng.below(3) == 0;
    let doc = config_json(&mut rng, small);
    let store = MemoryStore::new();
    let plugin = Rc::new(plugin(&doc, &store)?);
    if tracing() {
        println!("config: {doc}");
    }
    let mut world = World::new(&plugin, &store, rng, faults, no_body_callbacks);
    for _ in 0..steps {
        world.step()?;
        for i in 0..world.sims.len() {
            if world.sims[i].phase == Phase::Held && world.sims[i].sent >= world.sims[i].body.len()
            {
                world.check_not_hung(i)?;
            }
        }
    }
    world.drain()?;
    if !no_body_callbacks {
        world.follow_up()?;
    }
    if !faults {
        check_stored_bytes(&store)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn the_pipeline_never_panics_hangs_or_misanswers_without_store_faults(seed in any::<u64>(), steps in 10u32..250) {
        run_case(seed, steps, false, false)?;
    }

    #[test]
    fn the_pipeline_never_panics_or_hangs_when_shared_data_fails(seed in any::<u64>(), steps in 10u32..250) {
        run_case(seed, steps, true, false)?;
    }

    #[test]
    fn without_body_callbacks_held_requests_end_with_500_never_hang(seed in any::<u64>(), steps in 10u32..120) {
        run_case(seed, steps, false, true)?;
    }
}

/// Replays one case with a trace of every step: `FUZZ_SEED=… FUZZ_STEPS=… [FUZZ_FAULTS=1]
/// FUZZ_TRACE=1 cargo test --lib replay_a_fuzz_case -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid, run by hand"]
fn replay_a_fuzz_case() {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let steps = u32::try_from(var("FUZZ_STEPS").unwrap_or(100)).unwrap_or(100);
    let r = run_case(
        var("FUZZ_SEED").unwrap_or(0),
        steps,
        std::env::var_os("FUZZ_FAULTS").is_some(),
        std::env::var_os("FUZZ_NO_BODY").is_some(),
    );
    println!("{r:?}");
}
