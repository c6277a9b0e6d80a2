//! Single-threaded behaviour of [`SlotTable`]: placement, eviction, codec use, errors, costs.
//! Kept out of `slots.rs` so that file stays readable; concurrency lives in
//! `concurrency_tests.rs`.

use super::bucket::{Bucket, ENTRY_HEADER_BYTES, WAYS};
use super::hash::KeyHash;
use super::memory::MemoryStore;
use super::slots::*;
use super::{SharedStore, WriteError};

const NOW: u64 = 1_000_000;

fn table(store: &MemoryStore, slots: u32) -> SlotTable {
    let t = SlotTable::new("rl", "api", slots);
    t.ensure_created(store).unwrap();
    t
}

/// Keys that all land in one bucket: same seed, different fingerprints.
fn key(fingerprint: u64) -> KeyHash {
    KeyHash {
        slot_seed: 42,
        fingerprint,
    }
}

fn put(
    t: &SlotTable,
    store: &MemoryStore,
    k: KeyHash,
    now: u64,
    at_rest_at: u64,
) -> Result<(), TableError> {
    t.update(store, k, now, Eviction::NeverLive, |_| SlotStep::Write {
        state: k.fingerprint.to_le_bytes().to_vec(),
        at_rest_at,
        result: (),
    })
}

fn read(t: &SlotTable, store: &MemoryStore, k: KeyHash, now: u64) -> Option<Vec<u8>> {
    t.lookup(store, k, now, Eviction::NeverLive)
        .unwrap()
        .state()
        .map(<[u8]>::to_vec)
}

fn bucket_of(t: &SlotTable, store: &MemoryStore, k: KeyHash) -> Bucket {
    Bucket::decode(&store.get(&t.key_of(t.bucket_of(k))).unwrap().unwrap().value).unwrap()
}

#[test]
fn key_names_depend_only_on_layer_name_and_index() {
    let (small, big) = (
        SlotTable::new("rl", "api", 8),
        SlotTable::new("rl", "api", 4096),
    );
    assert_eq!(small.key_of(1), "levee:v1:rl:api:1");
    assert_eq!(small.key_of(1), big.key_of(1));
    assert_eq!((small.buckets(), small.slots()), (2, 8));
    assert_eq!(
        SlotTable::new("rl", "api", 5).slots(),
        8,
        "rounded up to whole buckets"
    );
    assert_eq!(SlotTable::new("rl", "api", 0).slots(), WAYS as u32);
    assert_eq!(small.domain(), b"rl:api");
}

#[test]
fn ensure_created_creates_each_bucket_once_and_a_reload_keeps_entries() {
    let store = MemoryStore::new();
    let t = SlotTable::new("idem", "orders", 64);
    assert_eq!(t.ensure_created(&store), Ok(16));
    put(&t, &store, key(7), NOW, NOW + 100).unwrap();
    assert_eq!(t.ensure_created(&store), Ok(0));
    assert_eq!(
        read(&t, &store, key(7), NOW),
        Some(7u64.to_le_bytes().to_vec())
    );
    let bigger = SlotTable::new("idem", "orders", 128);
    assert_eq!(bigger.ensure_created(&store), Ok(16));
}

#[test]
fn uncreated_table_is_missing_and_creates_nothing() {
    let store = MemoryStore::new();
    let t = SlotTable::new("rl", "api", 8);
    assert_eq!(
        put(&t, &store, key(1), NOW, NOW + 1),
        Err(TableError::Missing)
    );
    assert_eq!(store.key_count(), 0);
}

#[test]
fn new_key_reads_fresh_then_its_own_state() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    assert_eq!(read(&t, &store, key(1), NOW), None);
    put(&t, &store, key(1), NOW, NOW + 10).unwrap();
    put(&t, &store, key(2), NOW, NOW + 10).unwrap();
    assert_eq!(
        read(&t, &store, key(1), NOW),
        Some(1u64.to_le_bytes().to_vec())
    );
    assert_eq!(
        read(&t, &store, key(2), NOW),
        Some(2u64.to_le_bytes().to_vec())
    );
}

#[test]
fn found_key_costs_one_get_and_one_set() {
    let store = MemoryStore::new();
    let t = table(&store, 1024);
    put(&t, &store, key(1), NOW, NOW + 10).unwrap();
    let before = store.stats();
    put(&t, &store, key(1), NOW, NOW + 10).unwrap();
    let after = store.stats();
    assert_eq!((after.gets - before.gets, after.sets - before.sets), (1, 1));
}

#[test]
fn entry_at_rest_reads_as_fresh() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    put(&t, &store, key(1), NOW, NOW + 10).unwrap();
    assert!(read(&t, &store, key(1), NOW + 9).is_some());
    assert_eq!(read(&t, &store, key(1), NOW + 10), None);
}

#[test]
fn writing_a_state_at_rest_frees_the_way() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    put(&t, &store, key(1), NOW, NOW + 10).unwrap();
    put(&t, &store, key(1), NOW, NOW).unwrap();
    assert_eq!(bucket_of(&t, &store, key(1)), Bucket::default());
}

#[test]
fn never_live_refuses_a_new_key_when_every_way_is_live_but_still_reads() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    for f in 1..=WAYS as u64 {
        put(&t, &store, key(f), NOW, NOW + 100).unwrap();
    }
    assert_eq!(
        put(&t, &store, key(99), NOW, NOW + 100),
        Err(TableError::Full)
    );
    let seen = t.update(&store, key(99), NOW, Eviction::NeverLive, |s| {
        SlotStep::Keep(s.is_some())
    });
    assert_eq!(seen, Ok(false), "a read-only step does not need a slot");
    put(&t, &store, key(2), NOW, NOW + 100).unwrap();
}

#[test]
fn entries_at_rest_are_reused_before_any_live_one_is_evicted() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    for f in 1..=WAYS as u64 {
        // Key 3 comes to rest first, key 4 a little later; 1 and 2 stay live.
        let at_rest_at = [NOW + 100, NOW + 100, NOW + 5, NOW + 6][f as usize - 1];
        put(&t, &store, key(f), NOW, at_rest_at).unwrap();
    }
    let l = t
        .lookup(&store, key(99), NOW + 10, Eviction::LeastRecentlyTouched)
        .unwrap();
    let slot = l.placement.slot().unwrap() as usize % WAYS;
    assert!(matches!(l.placement, Placement::Vacant { .. }));
    assert_eq!(slot, 2, "the entry that came to rest first");
    put(&t, &store, key(99), NOW + 10, NOW + 100).unwrap();
    let live: Vec<u64> = bucket_of(&t, &store, key(1))
        .ways
        .iter()
        .flatten()
        .map(|e| e.fingerprint)
        .collect();
    assert_eq!(live, vec![1, 2, 99], "key 4 at rest was dropped on the way");
}

#[test]
fn lru_evicts_the_entry_written_longest_ago_and_its_key_starts_fresh() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    for (f, touched) in [(1, NOW + 3), (2, NOW + 1), (3, NOW + 4), (4, NOW + 2)] {
        put(&t, &store, key(f), touched, NOW + 100).unwrap();
    }
    let l = t
        .lookup(&store, key(99), NOW + 5, Eviction::LeastRecentlyTouched)
        .unwrap();
    match l.placement {
        Placement::Evict { victim, .. } => {
            assert_eq!((victim.fingerprint, victim.last_touched), (2, NOW + 1))
        }
        other => panic!("expected an eviction, got {other:?}"),
    }
    t.update(
        &store,
        key(99),
        NOW + 5,
        Eviction::LeastRecentlyTouched,
        |_| SlotStep::Write {
            state: vec![9],
            at_rest_at: NOW + 100,
            result: (),
        },
    )
    .unwrap();
    assert_eq!(read(&t, &store, key(2), NOW + 5), None);
    assert_eq!(read(&t, &store, key(99), NOW + 5), Some(vec![9]));
}

#[test]
fn oversized_state_is_refused_before_any_write() {
    let store = MemoryStore::new();
    let t = SlotTable::new("rl", "api", 8).with_max_state_bytes(4);
    t.ensure_created(&store).unwrap();
    let sets = store.stats().sets;
    let r = t.update(&store, key(1), NOW, Eviction::NeverLive, |_| {
        SlotStep::Write {
            state: vec![0; 5],
            at_rest_at: NOW + 1,
            result: (),
        }
    });
    assert_eq!(r, Err(TableError::StateTooLarge { len: 5, max: 4 }));
    assert_eq!(store.stats().sets, sets);
}

#[test]
fn exhausted_attempts_are_contended() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    store.fail_next_cas(super::MAX_CAS_ATTEMPTS);
    assert_eq!(
        put(&t, &store, key(1), NOW, NOW + 1),
        Err(TableError::Contended)
    );
    assert_eq!(put(&t, &store, key(1), NOW, NOW + 1), Ok(()));
}

#[test]
fn a_stale_lookup_does_not_commit() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    let stale = t.lookup(&store, key(1), NOW, Eviction::NeverLive).unwrap();
    put(&t, &store, key(2), NOW, NOW + 10).unwrap();
    assert_eq!(
        t.try_commit(&store, &stale, b"x", NOW + 10, NOW),
        Err(TableError::Conflict)
    );
    assert_eq!(
        t.commit(&store, &stale, key(1), b"x", NOW + 10, NOW),
        Err(WriteError::CasMismatch)
    );
    assert_eq!(read(&t, &store, key(1), NOW), None);
}

#[test]
fn commit_writes_only_for_the_looked_up_key() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    let l = t.lookup(&store, key(1), NOW, Eviction::NeverLive).unwrap();
    assert_eq!(
        t.commit(&store, &l, key(2), b"x", NOW + 10, NOW),
        Err(WriteError::Host)
    );
    assert_eq!(t.commit(&store, &l, key(1), b"x", NOW + 10, NOW), Ok(()));
    assert_eq!(read(&t, &store, key(1), NOW), Some(b"x".to_vec()));
}

#[test]
fn host_failures_are_store_faults() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    store.fail_reads(true);
    assert!(matches!(
        put(&t, &store, key(1), NOW, NOW + 1),
        Err(TableError::Store(_))
    ));
    store.fail_reads(false);
    store.fail_writes(true);
    assert!(matches!(
        put(&t, &store, key(1), NOW, NOW + 1),
        Err(TableError::Store(_))
    ));
}

#[test]
fn garbage_in_a_bucket_reads_as_empty_and_is_overwritten() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    store
        .set(&t.key_of(t.bucket_of(key(1))), b"\x07garbage", None)
        .unwrap();
    assert_eq!(read(&t, &store, key(1), NOW), None);
    put(&t, &store, key(1), NOW, NOW + 10).unwrap();
    assert!(read(&t, &store, key(1), NOW).is_some());
}

#[test]
fn memory_bound_covers_a_full_table() {
    let store = MemoryStore::new();
    let t = SlotTable::new("rl", "api", 40);
    t.ensure_created(&store).unwrap();
    let meta = super::cas::CAS_PROBE_KEY.len();
    for b in 0..t.buckets() {
        let mut bucket = Bucket::default();
        for (w, way) in bucket.ways.iter_mut().enumerate() {
            *way = Some(super::bucket::Entry {
                fingerprint: 1 + w as u64,
                last_touched: 0,
                at_rest_at: u64::MAX,
                state: vec![0; 16],
            });
        }
        store
            .set(&t.key_of(b), &bucket.encode().unwrap(), None)
            .unwrap();
    }
    let per_key = (t.key_of(9).len() + 2 + WAYS * (ENTRY_HEADER_BYTES + 16)) as u64;
    assert_eq!(
        t.memory_bound(16),
        10 * (per_key + ENVOY_PER_KEY_OVERHEAD_BYTES)
    );
    assert_eq!((store.total_bytes() - meta) as u64, 10 * per_key);
}

#[test]
fn lru_where_evicts_only_entries_the_predicate_accepts() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    // States are the fingerprint's bytes; only odd keys may be evicted.
    fn odd(state: &[u8]) -> bool {
        state.first().is_some_and(|b| b % 2 == 1)
    }
    let odd_only = Eviction::LeastRecentlyTouchedWhere(odd);
    for (f, touched) in [(2, NOW + 1), (3, NOW + 3), (4, NOW + 2), (5, NOW + 4)] {
        put(&t, &store, key(f), touched, NOW + 100).unwrap();
    }
    let l = t.lookup(&store, key(99), NOW + 5, odd_only).unwrap();
    match l.placement {
        Placement::Evict { victim, .. } => assert_eq!(victim.fingerprint, 3),
        other => panic!("expected key 3 to go, got {other:?}"),
    }
    let store = MemoryStore::new();
    let evens = table(&store, 8);
    for f in [2, 4, 6, 8] {
        put(&evens, &store, key(f), NOW, NOW + 100).unwrap();
    }
    let l = evens.lookup(&store, key(99), NOW + 5, odd_only).unwrap();
    assert_eq!(
        l.placement,
        Placement::Full,
        "nothing the predicate accepts"
    );
}

#[test]
fn a_write_reports_the_at_rest_entries_it_dropped_and_only_the_winner_does() {
    let store = MemoryStore::new();
    let t = table(&store, 8);
    put(&t, &store, key(1), NOW, NOW + 5).unwrap();
    put(&t, &store, key(2), NOW, NOW + 100).unwrap();
    put(&t, &store, key(3), NOW, NOW + 6).unwrap();
    let later = NOW + 10; // keys 1 and 3 are at rest
    let a = t
        .lookup(&store, key(7), later, Eviction::NeverLive)
        .unwrap();
    let b = t
        .lookup(&store, key(8), later, Eviction::NeverLive)
        .unwrap();
    // Keys 1, 2, 3 took ways 0, 1, 2; key 7 takes the free way 3.
    let first = t.bucket_of(key(1)) * WAYS as u32;
    assert_eq!(a.placement, Placement::Vacant { slot: first + 3 });
    assert_eq!(
        t.try_commit(&store, &a, b"a", later + 100, later),
        Ok(vec![first, first + 2])
    );
    assert_eq!(
        t.try_commit(&store, &b, b"b", later + 100, later),
        Err(TableError::Conflict),
        "the same entries cannot be dropped twice"
    );
    let (_, dropped) = t
        .update_dropping(&store, key(8), later, Eviction::NeverLive, |_| {
            SlotStep::Write {
                state: b"b".to_vec(),
                at_rest_at: later + 100,
                result: (),
            }
        })
        .unwrap();
    assert_eq!(dropped, Vec::<u32>::new(), "already dropped by the winner");
}

#[test]
fn bucket_keys_are_the_prefix_and_the_decimal_index() {
    let t = SlotTable::new("rl", "per-ip", 64);
    for index in [0, 7, 10, 99, 12_345, u32::MAX] {
        assert_eq!(t.key_of(index), format!("levee:v1:rl:per-ip:{index}"));
    }
}
