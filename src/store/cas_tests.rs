//! The read-compute-CAS discipline: the bound, fresh reads after a conflict, pure closures,
//! and the configure-time create helpers built on the same loop.
use proptest::prelude::*;

use super::cas::*;
use super::hash::KeyHash;
use super::memory::MemoryStore;
use super::slots::{Eviction, SlotStep, SlotTable, TableError};
use super::{SharedStore, Versioned, WriteError};

fn increment(current: &Versioned) -> Step<u64> {
    let value = current.value.as_slice();
    let n = value.try_into().map(u64::from_le_bytes).unwrap_or(0) + 1;
    Step::Write {
        value: n.to_le_bytes().to_vec(),
        result: n,
    }
}

#[test]
fn update_on_missing_key_is_refused_without_creating_it() {
    let store = MemoryStore::new();
    assert_eq!(
        update_key(&store, "k", increment),
        Err(UpdateError::Missing)
    );
    assert_eq!(store.key_count(), 0);
}

#[test]
fn update_writes_what_the_closure_computed() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"").unwrap();
    assert_eq!(update_key(&store, "k", increment), Ok(1));
    assert_eq!(update_key(&store, "k", increment), Ok(2));
}

#[test]
fn keep_does_not_write() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"x").unwrap();
    let sets = store.stats().sets;
    assert_eq!(
        update_key(&store, "k", |v| Step::Keep(v.value.len())),
        Ok(1)
    );
    assert_eq!(store.stats().sets, sets);
}

#[test]
fn conflicts_rerun_the_closure_on_fresh_state() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"").unwrap();
    store.fail_next_cas(MAX_CAS_ATTEMPTS - 1);
    let mut runs = 0;
    let out = update_key(&store, "k", |v| {
        runs += 1;
        increment(v)
    });
    assert_eq!((out, runs), (Ok(1), MAX_CAS_ATTEMPTS));
}

#[test]
fn exhausted_attempts_are_contended_and_leave_the_value() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"").unwrap();
    store.fail_next_cas(MAX_CAS_ATTEMPTS);
    assert_eq!(
        update_key(&store, "k", increment),
        Err(UpdateError::Contended)
    );
    assert_eq!(store.get("k").unwrap().unwrap().value, b"");
}

#[test]
fn host_failures_surface_as_store_faults() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"").unwrap();
    store.fail_writes(true);
    assert_eq!(
        update_key(&store, "k", increment),
        Err(UpdateError::Store(StoreFault::Write))
    );
    store.fail_writes(false);
    store.fail_reads(true);
    assert_eq!(
        update_key(&store, "k", increment),
        Err(UpdateError::Store(StoreFault::Read))
    );
}

#[test]
fn ensure_key_keeps_an_existing_value() {
    let store = MemoryStore::new();
    assert_eq!(ensure_key(&store, "k", b"a"), Ok(true));
    assert_eq!(ensure_key(&store, "k", b"b"), Ok(false));
    assert_eq!(store.get("k").unwrap().unwrap().value, b"a");
}

#[test]
fn create_with_a_floor_refuses_to_overwrite_a_key_created_after_the_floor() {
    let store = MemoryStore::new();
    let floor = cas_floor(&store).unwrap();
    // Another worker creates the key between our floor and our set.
    store.set("k", b"theirs", None).unwrap();
    assert_eq!(
        store.set("k", b"ours", Some(floor)),
        Err(WriteError::CasMismatch)
    );
    assert_eq!(create_if_absent(&store, "k", b"ours", floor), Ok(false));
    assert_eq!(store.get("k").unwrap().unwrap().value, b"theirs");
}

#[test]
fn get_or_create_returns_the_stored_value_not_the_fresh_one() {
    let store = MemoryStore::new();
    assert_eq!(get_or_create(&store, "s", b"first").unwrap(), b"first");
    assert_eq!(get_or_create(&store, "s", b"second").unwrap(), b"first");
}

#[test]
fn get_or_create_claims_an_empty_key() {
    let store = MemoryStore::new();
    store.set("s", b"", None).unwrap();
    assert_eq!(get_or_create(&store, "s", b"fresh").unwrap(), b"fresh");
}

#[test]
fn racing_get_or_create_agrees_on_one_value() {
    for round in 0..50 {
        let store = MemoryStore::new();
        let key = format!("s{round}");
        let seen: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u8)
                .map(|t| {
                    let (store, key) = (&store, &key);
                    s.spawn(move || get_or_create(store, key, &[t + 1; 16]).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
        assert_eq!(store.get(&key).unwrap().unwrap().value, seen[0]);
    }
}

#[test]
fn retry_cas_runs_an_attempt_at_most_the_bound_and_then_is_exhausted() {
    let mut runs = 0;
    let out: Result<(), UpdateError> = retry_cas(|| {
        runs += 1;
        Ok(Attempt::Again)
    });
    assert_eq!((out, runs), (Err(UpdateError::Contended), MAX_CAS_ATTEMPTS));
}

#[test]
fn retry_cas_stops_at_the_first_error_without_retrying() {
    let mut runs = 0;
    let out: Result<(), UpdateError> = retry_cas(|| {
        runs += 1;
        Err(UpdateError::Store(StoreFault::Read))
    });
    assert_eq!((out, runs), (Err(UpdateError::Store(StoreFault::Read)), 1));
}

#[test]
fn a_rerun_after_a_conflict_sees_the_other_writers_value() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"mine").unwrap();
    let mut seen = Vec::new();
    let out = update_key(&store, "k", |v| {
        let value = v.value.clone();
        if seen.is_empty() {
            // Another worker writes between our read and our CAS.
            store.set("k", b"theirs", None).unwrap();
        }
        seen.push(value.clone());
        let mut next = value;
        next.push(b'+');
        Step::Write {
            value: next,
            result: (),
        }
    });
    assert_eq!(out, Ok(()));
    assert_eq!(seen, [b"mine".to_vec(), b"theirs".to_vec()]);
    assert_eq!(store.get("k").unwrap().unwrap().value, b"theirs+");
}

#[test]
fn read_compute_cas_reports_what_the_write_returned_and_default_on_keep() {
    let store = MemoryStore::new();
    ensure_key(&store, "k", b"").unwrap();
    let write = |_: Versioned, v: u32| Ok::<_, UpdateError>(Attempt::Done(v * 10));
    let read = || Ok(store.get("k").unwrap().unwrap());
    assert_eq!(
        read_compute_cas(
            read,
            |_| Step::Write {
                value: 4,
                result: 'w'
            },
            write
        ),
        Ok(('w', 40))
    );
    assert_eq!(
        read_compute_cas(read, |_| Step::Keep('k'), write),
        Ok(('k', 0))
    );
}

proptest! {
    /// However many conflicts are injected, an update either lands exactly once (when fewer
    /// than the bound) or not at all, and the closure ran once per attempt.
    #[test]
    fn injected_conflicts_either_land_once_or_leave_the_value(conflicts in 0u32..40, start in any::<u64>()) {
        let store = MemoryStore::new();
        ensure_key(&store, "k", &start.to_le_bytes()).unwrap();
        store.fail_next_cas(conflicts);
        let mut runs = 0;
        let out = update_key(&store, "k", |v| {
            runs += 1;
            let n = v.value.as_slice().try_into().map_or(0, u64::from_le_bytes);
            Step::Write { value: n.wrapping_add(1).to_le_bytes().to_vec(), result: n }
        });
        let now = store.get("k").unwrap().unwrap().value;
        if conflicts < MAX_CAS_ATTEMPTS {
            prop_assert_eq!(out, Ok(start));
            prop_assert_eq!(runs, conflicts + 1);
            prop_assert_eq!(now, start.wrapping_add(1).to_le_bytes().to_vec());
        } else {
            prop_assert_eq!(out, Err(UpdateError::Contended));
            prop_assert_eq!(runs, MAX_CAS_ATTEMPTS);
            prop_assert_eq!(now, start.to_le_bytes().to_vec());
        }
    }
}

// The slot-table form: the same loop, one client's entry instead of a plain key.

const NOW: u64 = 1_000_000;
const KEY: KeyHash = KeyHash {
    slot_seed: 7,
    fingerprint: 70,
};

fn table(store: &MemoryStore) -> SlotTable {
    let t = SlotTable::new("rl", "api", 8);
    t.ensure_created(store).unwrap();
    t
}

fn bump(state: Option<&[u8]>) -> SlotStep<u8> {
    let n = state.and_then(|s| s.first().copied()).unwrap_or(0) + 1;
    SlotStep::Write {
        state: vec![n],
        at_rest_at: NOW + 1_000,
        result: n,
    }
}

#[test]
fn a_table_update_reruns_on_a_fresh_read_until_the_bound() {
    let store = MemoryStore::new();
    let t = table(&store);
    store.fail_next_cas(MAX_CAS_ATTEMPTS - 1);
    let gets = store.stats().gets;
    assert_eq!(t.update(&store, KEY, NOW, Eviction::NeverLive, bump), Ok(1));
    assert_eq!(store.stats().gets - gets, u64::from(MAX_CAS_ATTEMPTS));
    store.fail_next_cas(MAX_CAS_ATTEMPTS);
    assert_eq!(
        t.update(&store, KEY, NOW, Eviction::NeverLive, bump),
        Err(TableError::Contended)
    );
    assert_eq!(t.update(&store, KEY, NOW, Eviction::NeverLive, bump), Ok(2));
}

#[test]
fn a_lookup_given_to_update_lookup_saves_the_first_read() {
    let store = MemoryStore::new();
    let t = table(&store);
    let first = t.lookup(&store, KEY, NOW, Eviction::NeverLive).unwrap();
    let gets = store.stats().gets;
    let r = t.update_lookup(&store, KEY, NOW, Eviction::NeverLive, Some(&first), |l| {
        bump(l.state())
    });
    assert_eq!(r.map(|(n, _)| n), Ok(1));
    assert_eq!(store.stats().gets, gets, "no read besides the given lookup");
}

#[test]
fn a_stale_lookup_given_to_update_lookup_is_read_again_not_written() {
    let store = MemoryStore::new();
    let t = table(&store);
    let stale = t.lookup(&store, KEY, NOW, Eviction::NeverLive).unwrap();
    // Another worker counts the key after our lookup.
    assert_eq!(t.update(&store, KEY, NOW, Eviction::NeverLive, bump), Ok(1));
    let mut seen = Vec::new();
    let r = t.update_lookup(&store, KEY, NOW, Eviction::NeverLive, Some(&stale), |l| {
        seen.push(l.state().map(<[u8]>::to_vec));
        bump(l.state())
    });
    assert_eq!(r.map(|(n, _)| n), Ok(2));
    assert_eq!(seen, [None, Some(vec![1])]);
}
