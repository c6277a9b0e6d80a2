//! An in-memory [`SharedStore`] with Envoy's exact shared-data semantics, for tests.
//!
//! levee's exactness claims rest on how Envoy's shared data behaves, so the fake behaves the
//! same way, warts included (proxy-wasm-cpp-host `SharedData::set`):
//! - one map, one mutex, values copied in and out on every call;
//! - versions come from **one process-global counter** that starts at 1, increments on every
//!   write to any key and skips 0 when it wraps;
//! - `cas` of `None` or `Some(0)` is unconditional, and a key that does not exist is created
//!   **whatever `cas` says** — so "create if absent" is not atomic;
//! - there is no delete: an empty value is a key that still exists.
//!
//! On top of that it injects faults, so that the CAS loops above it are exercised in tests:
//! forced conflicts ([`MemoryStore::fail_next_cas`], [`MemoryStore::conflict_probability`]),
//! host errors ([`MemoryStore::fail_reads`], [`MemoryStore::fail_writes`]), and counts calls
//! and bytes ([`MemoryStore::stats`], [`MemoryStore::key_count`], [`MemoryStore::total_bytes`]).
//! It is `Sync`: tests hammer one store from many threads, like Envoy's worker VMs.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{Cas, ReadError, SharedStore, Versioned, WriteError};
use crate::random::{RandomSource, SplitMix64};

/// What a [`MemoryStore`] has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Calls to `get`, including failed ones.
    pub gets: u64,
    /// Calls to `set`, including failed ones.
    pub sets: u64,
    /// Conditional sets refused because the version had moved (real or injected).
    pub cas_mismatches: u64,
    /// Of those, the ones that fault injection caused.
    pub injected_conflicts: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    map: HashMap<String, Versioned>,
    next_cas: Cas,
    fail_next_cas: u32,
    conflicts: Option<(u32, SplitMix64)>,
    fail_reads: bool,
    fail_writes: bool,
    stats: StoreStats,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            next_cas: 1,
            fail_next_cas: 0,
            conflicts: None,
            fail_reads: false,
            fail_writes: false,
            stats: StoreStats::default(),
        }
    }
}

impl Inner {
    /// Envoy's `nextCas()`: hand out the counter, step it, never hand out 0.
    fn next_cas(&mut self) -> Cas {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        cas
    }

    /// Whether fault injection claims this conditional set.
    fn inject_conflict(&mut self) -> bool {
        if self.fail_next_cas > 0 {
            self.fail_next_cas -= 1;
            return true;
        }
        match &mut self.conflicts {
            Some((per_million, rng)) => rng.below(1_000_000) < u64::from(*per_million),
            None => false,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test thread that panicked while holding the lock must not hide the real failure
        // behind a poison error in every other thread.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `n` conditional sets fail with `CasMismatch` even if their version matched.
    /// Each one acts like another worker's write that landed first: if the key exists, its
    /// version moves on (value unchanged), so a retry must read again to succeed. On a key
    /// that does not exist nothing is created.
    pub fn fail_next_cas(&self, n: u32) {
        self.lock().fail_next_cas = n;
    }

    /// From now on each conditional set fails as in [`Self::fail_next_cas`] with probability
    /// `per_million / 1e6`, drawn from a generator seeded with `seed` (0 turns this off).
    pub fn conflict_probability(&self, seed: u64, per_million: u32) {
        self.lock().conflicts =
            (per_million > 0).then(|| (per_million.min(1_000_000), SplitMix64::seeded(seed)));
    }

    /// While on, every `get` fails as if the host refused it.
    pub fn fail_reads(&self, on: bool) {
        self.lock().fail_reads = on;
    }

    /// While on, every `set` fails with [`WriteError::Host`] and changes nothing.
    pub fn fail_writes(&self, on: bool) {
        self.lock().fail_writes = on;
    }

    /// Moves the global version counter, e.g. to just before it wraps.
    pub fn set_next_cas(&self, cas: Cas) {
        self.lock().next_cas = cas.max(1);
    }

    pub fn stats(&self) -> StoreStats {
        self.lock().stats
    }

    /// How many keys exist (keys are never removed).
    pub fn key_count(&self) -> usize {
        self.lock().map.len()
    }

    /// Bytes of keys plus values: what the map holds before Envoy's per-entry overhead.
    pub fn total_bytes(&self) -> usize {
        self.lock()
            .map
            .iter()
            .map(|(k, v)| k.len() + v.value.len())
            .sum()
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().map.keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError> {
        let mut inner = self.lock();
        inner.stats.gets += 1;
        if inner.fail_reads {
            return Err(ReadError);
        }
        Ok(inner.map.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError> {
        let mut inner = self.lock();
        inner.stats.sets += 1;
        if inner.fail_writes {
            return Err(WriteError::Host);
        }
        let expected = cas.filter(|&c| c != 0);
        if expected.is_some() && inner.inject_conflict() {
            inner.stats.cas_mismatches += 1;
            inner.stats.injected_conflicts += 1;
            let bumped = inner.next_cas();
            if let Some(entry) = inner.map.get_mut(key) {
                entry.cas = bumped;
            }
            return Err(WriteError::CasMismatch);
        }
        let current = inner.map.get(key).map(|entry| entry.cas);
        if let (Some(want), Some(have)) = (expected, current) {
            if want != have {
                inner.stats.cas_mismatches += 1;
                return Err(WriteError::CasMismatch);
            }
        }
        let cas = inner.next_cas();
        let entry = Versioned {
            value: value.to_vec(),
            cas,
        };
        match inner.map.get_mut(key) {
            Some(slot) => *slot = entry,
            None => {
                inner.map.insert(key.to_owned(), entry);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_key_reads_as_none_and_any_cas_creates_it() {
        let store = MemoryStore::new();
        assert_eq!(store.get("k"), Ok(None));
        assert_eq!(store.set("k", b"a", Some(12345)), Ok(()));
        assert_eq!(store.get("k").unwrap().unwrap().value, b"a");
    }

    #[test]
    fn stale_cas_is_refused_and_current_cas_accepted() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        let v = store.get("k").unwrap().unwrap();
        store.set("k", b"b", Some(v.cas)).unwrap();
        assert_eq!(
            store.set("k", b"c", Some(v.cas)),
            Err(WriteError::CasMismatch)
        );
        let now = store.get("k").unwrap().unwrap();
        assert_eq!(now.value, b"b");
        assert_eq!(
            store.set("k", b"c", Some(0)),
            Ok(()),
            "cas 0 is unconditional"
        );
    }

    #[test]
    fn versions_come_from_one_global_counter() {
        let store = MemoryStore::new();
        store.set("a", b"", None).unwrap();
        store.set("b", b"", None).unwrap();
        store.set("a", b"x", None).unwrap();
        assert_eq!(store.get("b").unwrap().unwrap().cas, 2);
        assert_eq!(store.get("a").unwrap().unwrap().cas, 3);
    }

    #[test]
    fn counter_skips_zero_when_it_wraps() {
        let store = MemoryStore::new();
        store.set_next_cas(u32::MAX);
        store.set("a", b"", None).unwrap();
        store.set("b", b"", None).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().cas, u32::MAX);
        assert_eq!(store.get("b").unwrap().unwrap().cas, 1);
    }

    #[test]
    fn empty_value_keeps_the_key() {
        let store = MemoryStore::new();
        store.set("k", b"abc", None).unwrap();
        store.set("k", b"", None).unwrap();
        assert_eq!(store.key_count(), 1);
        assert_eq!(store.get("k").unwrap().unwrap().value, b"");
        assert_eq!(store.total_bytes(), 1);
    }

    #[test]
    fn injected_conflict_moves_the_version_so_a_retry_must_reread() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        let v = store.get("k").unwrap().unwrap();
        store.fail_next_cas(1);
        assert_eq!(
            store.set("k", b"b", Some(v.cas)),
            Err(WriteError::CasMismatch)
        );
        assert_eq!(
            store.set("k", b"b", Some(v.cas)),
            Err(WriteError::CasMismatch)
        );
        let fresh = store.get("k").unwrap().unwrap();
        assert_eq!(fresh.value, b"a");
        assert_eq!(store.set("k", b"b", Some(fresh.cas)), Ok(()));
        assert_eq!(store.stats().injected_conflicts, 1);
        assert_eq!(store.stats().cas_mismatches, 2);
    }

    #[test]
    fn injected_conflict_on_absent_key_creates_nothing_and_spares_unconditional_sets() {
        let store = MemoryStore::new();
        store.fail_next_cas(1);
        assert_eq!(store.set("k", b"a", Some(7)), Err(WriteError::CasMismatch));
        assert_eq!(store.key_count(), 0);
        store.fail_next_cas(1);
        assert_eq!(store.set("k", b"a", None), Ok(()));
    }

    #[test]
    fn conflict_probability_is_reproducible_from_its_seed() {
        let run = |seed| {
            let store = MemoryStore::new();
            store.set("k", b"", None).unwrap();
            store.conflict_probability(seed, 300_000);
            (0..200)
                .map(|_| {
                    let v = store.get("k").unwrap().unwrap();
                    store.set("k", b"x", Some(v.cas)).is_err()
                })
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        let failures = a.iter().filter(|&&f| f).count();
        assert!((30..90).contains(&failures), "{failures} of 200 at 30%");
    }

    #[test]
    fn host_failures_change_nothing() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        store.fail_writes(true);
        assert_eq!(store.set("k", b"b", None), Err(WriteError::Host));
        store.fail_writes(false);
        store.fail_reads(true);
        assert_eq!(store.get("k"), Err(ReadError));
        store.fail_reads(false);
        assert_eq!(store.get("k").unwrap().unwrap().value, b"a");
        let stats = store.stats();
        assert_eq!((stats.gets, stats.sets), (2, 2));
    }
}
