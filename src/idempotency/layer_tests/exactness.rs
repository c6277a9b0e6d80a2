//! The stored-bytes counter equals the bytes the body keys hold after every step, and no
//! in-flight record is ever given up — for any sequence of claims, answers, releases,
//! renewals and clock moves, with CAS conflicts injected anywhere, and with real threads.

use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::cases;
use crate::random::{RandomSource, SplitMix64};
use crate::time::NANOS_PER_MILLI;

/// A claim the model holds: the key, where it lives, whose it is, and until when its lock
/// holds for sure (`lock_timeout` after the claim or the last renewal).
struct Held {
    key: KeyHash,
    claim: Claim,
    owner: u64,
    locked_until: u64,
    finished: bool,
}

/// Runs `ops` against an 8-slot table (two buckets, six keys: evictions and drops happen
/// all the time) and checks the invariants after each.
fn run(ops: &[(u8, u8, u16, u16)], conflicts_per_million: u32) -> Result<(), TestCaseError> {
    let (l, store) = layer(8, 2000);
    store.conflict_probability(7, conflicts_per_million);
    let keys: Vec<KeyHash> = (0..6).map(|n| key(n % 3, n + 1)).collect();
    let mut now = T0;
    let mut held: Vec<Held> = Vec::new();
    for (i, &(op, k, size, dt)) in ops.iter().enumerate() {
        let open: Vec<usize> = (0..held.len()).filter(|&h| !held[h].finished).collect();
        let pick = open.get(usize::from(k) % open.len().max(1)).copied();
        match (op % 6, pick) {
            (0 | 1, _) => {
                let key = keys[usize::from(k) % keys.len()];
                let owner = i as u64 + 1;
                if let Ok(claim) = l.claim(&store, key, FP, owner, now) {
                    if matches!(claim.begin, Begin::Execute { .. }) {
                        let locked_until = now + 3 * SEC;
                        held.retain(|h| h.key != key); // a retaken key is no longer theirs
                        held.push(Held {
                            key,
                            claim,
                            owner,
                            locked_until,
                            finished: false,
                        });
                    }
                }
            }
            (2, Some(h)) => {
                let h = &mut held[h];
                let resp = answer(k, usize::from(size % 700));
                let hk = HeldKey {
                    hash: h.key,
                    slot: h.claim.slot,
                    owner: h.owner,
                };
                let outcome = Outcome::Stored {
                    status: 201,
                    body: None,
                };
                let _ = l.complete(&store, hk, outcome, Some(&resp), now);
                h.finished = true;
            }
            (3, Some(h)) => {
                let h = &mut held[h];
                let hk = HeldKey {
                    hash: h.key,
                    slot: h.claim.slot,
                    owner: h.owner,
                };
                let outcome = if size % 2 == 0 {
                    Outcome::Released
                } else {
                    Outcome::Unknown
                };
                let _ = l.complete(&store, hk, outcome, None, now);
                // Unknown: still locked until its lock runs out, and checked until then.
                h.finished = outcome == Outcome::Released;
                if outcome == Outcome::Unknown {
                    h.owner = 0; // nobody renews it any more
                }
            }
            (4, Some(h)) => {
                let h = &mut held[h];
                if h.owner != 0 && l.renew(&store, h.key, h.owner, now) {
                    h.locked_until = now + 3 * SEC;
                }
            }
            _ => now += u64::from(dt % 4000) * NANOS_PER_MILLI,
        }
        prop_assert_eq!(
            counted(&store),
            held_bytes(&store),
            "step {}: counter drifted",
            i
        );
        for h in held.iter().filter(|h| !h.finished && now < h.locked_until) {
            let seen = l.claim(&store, h.key, FP, 0xFEED, now).map(|c| c.begin);
            prop_assert!(
                matches!(seen, Ok(Begin::Conflict { .. })),
                "step {}: an in-flight record was given up: {:?}",
                i,
                seen
            );
        }
    }
    Ok(())
}

fn held_bytes(store: &MemoryStore) -> u64 {
    held(store)
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn the_counter_is_exact_and_in_flight_records_stay_under_any_sequence(
        ops in proptest::collection::vec(any::<(u8, u8, u16, u16)>(), 1..120),
        conflicts in prop_oneof![Just(0u32), Just(300_000u32)],
    ) {
        run(&ops, conflicts)?;
    }
}

#[test]
fn threads_racing_on_one_small_table_keep_the_counter_exact() {
    let (l, store) = layer(8, 3000);
    store.conflict_probability(11, 100_000);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (l, store) = (&l, &store);
            s.spawn(move || {
                let mut rng = SplitMix64::seeded(t);
                for i in 0..300u64 {
                    let now = T0 + i * 40 * NANOS_PER_MILLI + t;
                    let k = key(rng.below(3), 1 + rng.below(8));
                    let owner = (t << 32) | i;
                    let Ok(c) = l.claim(store, k, FP, owner, now) else {
                        continue;
                    };
                    if !matches!(c.begin, Begin::Execute { .. }) {
                        continue;
                    }
                    let hk = HeldKey {
                        hash: k,
                        slot: c.slot,
                        owner,
                    };
                    let resp = answer(t as u8, rng.below(600) as usize);
                    let (outcome, resp) = match rng.below(4) {
                        0 => (Outcome::Released, None),
                        _ => (
                            Outcome::Stored {
                                status: 201,
                                body: None,
                            },
                            Some(&resp),
                        ),
                    };
                    let _ = l.complete(store, hk, outcome, resp, now);
                }
            });
        }
    });
    assert_exact(&store);
}
