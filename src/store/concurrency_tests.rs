//! Threads against one [`MemoryStore`], standing in for Envoy's worker VMs: exactness of the
//! CAS loops under real and injected conflicts, one live entry per key, and the memory bound.

use std::collections::HashSet;
use std::sync::Barrier;
use std::thread;

use super::bucket::Bucket;
use super::cas::{ensure_key, update_key, Step, UpdateError};
use super::hash::{KeyHash, KeyHasher};
use super::memory::MemoryStore;
use super::slots::*;
use super::SharedStore;
use crate::random::{RandomSource, SplitMix64};

const NOW: u64 = 1_000_000_000;

fn counter(state: Option<&[u8]>) -> u64 {
    state
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Every decoded bucket of the table.
fn buckets(t: &SlotTable, store: &MemoryStore) -> Vec<Bucket> {
    (0..t.buckets())
        .map(|b| Bucket::decode(&store.get(&t.key_of(b)).unwrap().unwrap().value).unwrap())
        .collect()
}

/// Runs `threads` closures at once (a barrier lines them up) and collects their results.
fn race<R: Send>(threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn four_workers_count_exactly_through_update_key_under_injected_conflicts() {
    let store = MemoryStore::new();
    ensure_key(&store, "levee:v1:cb:x", b"").unwrap();
    store.conflict_probability(7, 200_000);
    let seen = race(4, |_| {
        let mut mine = Vec::new();
        while mine.len() < 1000 {
            let r = update_key(&store, "levee:v1:cb:x", |v| {
                let n = counter(Some(&v.value)) + 1;
                Step::Write {
                    value: n.to_le_bytes().to_vec(),
                    result: n,
                }
            });
            match r {
                Ok(n) => mine.push(n),
                Err(UpdateError::Contended) => {}
                Err(e) => panic!("{e}"),
            }
        }
        mine
    });
    let mut all: Vec<u64> = seen.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=4000).collect::<Vec<_>>(),
        "every increment seen exactly once"
    );
    assert!(store.stats().injected_conflicts > 100);
}

#[test]
fn four_workers_count_exactly_through_one_slot_under_injected_conflicts() {
    let store = MemoryStore::new();
    let t = SlotTable::new("rl", "api", 64);
    t.ensure_created(&store).unwrap();
    store.conflict_probability(11, 200_000);
    let k = KeyHasher::new([3; 16]).hash(t.domain(), b"10.0.0.1");
    let seen = race(4, |_| {
        let mut mine = Vec::new();
        while mine.len() < 1000 {
            let r = t.update(&store, k, NOW, Eviction::NeverLive, |s| {
                let n = counter(s) + 1;
                SlotStep::Write {
                    state: n.to_le_bytes().to_vec(),
                    at_rest_at: NOW + 1,
                    result: n,
                }
            });
            match r {
                Ok(n) => mine.push(n),
                Err(TableError::Contended) => {}
                Err(e) => panic!("{e}"),
            }
        }
        mine
    });
    let mut all: Vec<u64> = seen.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=4000).collect::<Vec<_>>());
}

/// The race that breaks "one key per shared-data slot, probe several": workers whose clocks
/// straddle the instant an entry comes to rest disagree on which position is free. Here all
/// candidates are one value, so however they disagree, one CAS serialises them: a limit of
/// `LIMIT` admissions for a brand-new key is never exceeded.
#[test]
fn workers_racing_to_create_one_key_never_split_it() {
    const LIMIT: u64 = 3;
    for round in 0..200u64 {
        let store = MemoryStore::new();
        let t = SlotTable::new("rl", "api", 8);
        t.ensure_created(&store).unwrap();
        // Fill the bucket; one entry comes to rest exactly at NOW.
        let seed = round;
        for f in 1..=4u64 {
            let k = KeyHash {
                slot_seed: seed,
                fingerprint: 100 + f,
            };
            let at_rest_at = if f == 2 { NOW } else { NOW + 1_000 };
            t.update(&store, k, NOW - 10, Eviction::NeverLive, |_| {
                SlotStep::Write {
                    state: vec![],
                    at_rest_at,
                    result: (),
                }
            })
            .unwrap();
        }
        let k = KeyHash {
            slot_seed: seed,
            fingerprint: 7,
        };
        let admitted: u64 = race(4, |worker| {
            // Half the workers read the clock just before the entry comes to rest.
            let now = if worker % 2 == 0 { NOW - 1 } else { NOW };
            let mut admitted = 0;
            for _ in 0..3 {
                let eviction = if round % 2 == 0 {
                    Eviction::NeverLive
                } else {
                    Eviction::LeastRecentlyTouched
                };
                let r = t.update(&store, k, now, eviction, |s| {
                    let n = counter(s);
                    if n < LIMIT {
                        SlotStep::Write {
                            state: (n + 1).to_le_bytes().to_vec(),
                            at_rest_at: NOW + 500,
                            result: true,
                        }
                    } else {
                        SlotStep::Keep(false)
                    }
                });
                match r {
                    Ok(true) => admitted += 1,
                    Ok(false) | Err(TableError::Full) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            admitted
        })
        .into_iter()
        .sum();
        assert!(admitted <= LIMIT, "round {round}: {admitted} admitted");
        let copies = buckets(&t, &store)
            .iter()
            .flat_map(|b| b.ways.iter().flatten())
            .filter(|e| e.fingerprint == 7)
            .count();
        assert!(copies <= 1, "round {round}: {copies} entries for one key");
    }
}

#[test]
fn eight_workers_with_many_keys_in_a_small_table_keep_one_entry_per_key() {
    for eviction in [Eviction::LeastRecentlyTouched, Eviction::NeverLive] {
        let store = MemoryStore::new();
        let t = SlotTable::new("idem", "orders", 64);
        t.ensure_created(&store).unwrap();
        store.conflict_probability(5, 50_000);
        let hasher = KeyHasher::new([9; 16]);
        let written: Vec<HashSet<u64>> = race(8, |worker| {
            let mut rng = SplitMix64::seeded(worker as u64);
            let mut written = HashSet::new();
            for i in 0..2000u64 {
                // 300 distinct client keys, shared by all workers.
                let client = rng.below(300);
                let k = hasher.hash(t.domain(), &client.to_le_bytes());
                let now = NOW + i;
                let r = t.update(&store, k, now, eviction, |s| SlotStep::Write {
                    state: (counter(s) + 1).to_le_bytes().to_vec(),
                    at_rest_at: now + 10_000,
                    result: (),
                });
                match r {
                    Ok(()) => {
                        written.insert(k.fingerprint);
                    }
                    Err(TableError::Full | TableError::Contended) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            written
        });
        let mut seen = HashSet::new();
        for entry in buckets(&t, &store)
            .iter()
            .flat_map(|b| b.ways.iter().flatten())
        {
            assert!(
                seen.insert(entry.fingerprint),
                "{eviction:?}: duplicate entry"
            );
            assert!(written.iter().any(|w| w.contains(&entry.fingerprint)));
        }
        assert!(seen.len() <= t.slots() as usize);
        assert_eq!(
            store.key_count(),
            t.buckets() as usize + 1,
            "buckets + the cas probe"
        );
    }
}

#[test]
fn a_million_distinct_keys_stay_within_the_tables_memory_bound() {
    let store = MemoryStore::new();
    let hasher = KeyHasher::load_or_create(&store, [5; 16]).unwrap();
    let t = SlotTable::new("rl", "per_ip", 1024).with_max_state_bytes(16);
    t.ensure_created(&store).unwrap();
    let meta_keys = store.key_count() - t.buckets() as usize;
    // Four workers, 250,000 distinct client keys each.
    race(4, |worker| {
        for i in 0..250_000u64 {
            let client = worker as u64 * 250_000 + i;
            let k = hasher.hash(t.domain(), &client.to_le_bytes());
            let now = NOW + i;
            t.update(&store, k, now, Eviction::LeastRecentlyTouched, |s| {
                SlotStep::Write {
                    state: (counter(s) + 1).to_le_bytes().to_vec(),
                    at_rest_at: now + 60 * 1_000_000_000,
                    result: (),
                }
            })
            .unwrap();
        }
    });
    assert_eq!(meta_keys, 2, "hash secret and cas probe");
    assert_eq!(store.key_count(), t.buckets() as usize + meta_keys);
    let table_bytes: u64 = (0..t.buckets())
        .map(|b| (t.key_of(b).len() + store.get(&t.key_of(b)).unwrap().unwrap().value.len()) as u64)
        .sum();
    assert!(
        store.total_bytes() as u64 - table_bytes < 100,
        "only the two meta keys besides"
    );
    let envoy_overhead = u64::from(t.buckets()) * ENVOY_PER_KEY_OVERHEAD_BYTES;
    assert!(
        table_bytes + envoy_overhead <= t.memory_bound(16),
        "{table_bytes} vs {}",
        t.memory_bound(16)
    );
    let live = buckets(&t, &store)
        .iter()
        .map(|b| b.ways.iter().flatten().count())
        .sum::<usize>();
    assert_eq!(
        live,
        t.slots() as usize,
        "a flooded table is full, not larger"
    );
}
