//! Simulated Envoys racing on one key through the fake etcd, in every interleaving proptest
//! finds: one execution, and only the newest owner ever completes.

use proptest::prelude::*;

use super::super::claim::{RemoteEnv, RemoteKey, Step};
use super::super::fake_etcd::FakeEtcd;
use super::super::lease::LeaseCache;
use super::{answer, drive, request, status, stored, T0};
use crate::idempotency::request::Claimed;
use crate::idempotency::tests::{cfg, SEC};

/// One simulated request on one of two Envoys: claim, then (if it executes) complete.
struct Sim {
    key: RemoteKey,
    envoy: usize,
    call: Option<super::super::calls::Call>,
    executing: bool,
    done: bool,
}

proptest! {
    #[test]
    fn two_envoys_racing_on_one_key_execute_it_once(
        schedule in proptest::collection::vec((0usize..8, any::<bool>()), 1..200),
        lost in 0u32..3,
    ) {
        let cfg = cfg();
        let mut etcd = FakeEtcd { lose_answers: lost, ..FakeEtcd::default() };
        let mut leases = [LeaseCache::default(), LeaseCache::default()];
        let mut sims: Vec<Sim> = (0..8u64)
            .map(|i| Sim { key: request(i + 1, 3), envoy: (i % 2) as usize, call: None, executing: false, done: false })
            .collect();
        let mut executions = 0;
        let now = T0;
        for (pick, renew) in schedule.iter().copied().chain((0..64).map(|i| (i % 8, false))) {
            let sim = &mut sims[pick];
            if sim.done {
                continue;
            }
            let mut env = RemoteEnv { cfg: &cfg, leases: &mut leases[sim.envoy], now };
            let step = match sim.call.take() {
                Some(call) => {
                    let answer = etcd.call(&call);
                    sim.key.on_answer(&mut env, answer)
                }
                None if sim.executing && renew => sim.key.renew(&mut env),
                None if sim.executing => sim.key.complete(&mut env, stored(), Some(answer())),
                None => sim.key.claim(&mut env),
            };
            match step {
                Step::Send(call) => sim.call = Some(call),
                Step::Claimed(Claimed::Execute { .. }) => {
                    executions += 1;
                    sim.executing = true;
                }
                Step::Renewed { .. } => {}
                Step::Claimed(_) | Step::BackendFailed | Step::Finished | Step::Fenced => sim.done = true,
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
        prop_assert!(executions <= 1, "{executions} executions");
        // A later request to either Envoy replays the stored answer, unless the key is
        // still locked by a claim whose answer was lost twice.
        let mut env = RemoteEnv { cfg: &cfg, leases: &mut leases[1], now: now + SEC };
        let mut late = request(99, 3);
        let step = late.claim(&mut env);
        etcd.lose_answers = 0;
        let step = drive(&mut etcd, &mut late, &cfg, &mut leases[1], now + SEC, step);
        if executions == 1 {
            prop_assert_eq!(status(&step), 201);
        } else {
            prop_assert!(matches!(status(&step), 409 | 0));
        }
    }
}

proptest! {
    /// With time passing (locks expiring, owners stalling) and answers lost at any call, a
    /// completion is written only by the newest owner: an owner whose lock was retaken is
    /// fenced, whatever the interleaving.
    #[test]
    fn only_the_newest_owner_ever_completes(
        schedule in proptest::collection::vec((0usize..6, 0u64..4, any::<bool>()), 1..160),
    ) {
        let cfg = cfg();
        let mut etcd = FakeEtcd::default();
        let mut leases = [LeaseCache::default(), LeaseCache::default()];
        let mut sims: Vec<Sim> = (0..6u64)
            .map(|i| Sim { key: request(i + 1, 3), envoy: (i % 2) as usize, call: None, executing: false, done: false })
            .collect();
        let (mut now, mut newest) = (T0, 0i64);
        for (pick, advance_s, lose) in schedule {
            now += advance_s * 5 * SEC;
            if lose {
                etcd.lose_answers = 1;
            }
            let sim = &mut sims[pick];
            if sim.done {
                continue;
            }
            let mut env = RemoteEnv { cfg: &cfg, leases: &mut leases[sim.envoy], now };
            let fence = sim.key.fence();
            let step = match sim.call.take() {
                Some(call) => {
                    let answer = etcd.call(&call);
                    sim.key.on_answer(&mut env, answer)
                }
                None if sim.executing => sim.key.complete(&mut env, stored(), Some(answer())),
                None => sim.key.claim(&mut env),
            };
            etcd.lose_answers = 0;
            match step {
                Step::Send(call) => sim.call = Some(call),
                Step::Claimed(Claimed::Execute { .. }) => {
                    let f = sim.key.fence().expect("held");
                    prop_assert!(f > newest, "fence {f} not above {newest}");
                    newest = f;
                    sim.executing = true;
                }
                Step::Finished => {
                    prop_assert_eq!(fence, Some(newest), "a stale owner completed");
                    sim.done = true;
                }
                Step::RetryAt(_) => {}
                _ => sim.done = true,
            }
        }
    }
}
