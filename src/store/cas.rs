//! Read-compute-CAS on one shared-data key, and creating keys without Envoy's create race.
//!
//! Every piece of shared state in levee changes the same way: read the value and its version,
//! compute the next value with a **pure** closure, write it back only if the version has not
//! moved, and start over if it has ([`update_key`]). The closure may therefore run several
//! times for one logical update; it must not have side effects.
//!
//! # Creating keys
//!
//! Envoy creates a missing key on *any* `set`, whatever `cas` is given, so the obvious
//! "get; if absent, set" lets two workers both create a key, the second silently overwriting
//! whatever the first (or a request served in between) wrote. levee's rule:
//!
//! - **The request path never creates keys.** [`update_key`] on a missing key returns
//!   [`UpdateError::Missing`] instead of racing a create; per-client state lives in
//!   pre-created [`super::slots::SlotTable`]s.
//! - **Keys are created at configure time** with [`ensure_key`] / [`get_or_create`], which use
//!   a *version floor* to make "create if absent" atomic after all: write a probe key and read
//!   its version `f` back ([`cas_floor`]). Versions come from one process-global counter and
//!   each write takes a fresh one, so no other key holds version `f`, and any key created
//!   after that moment gets a later version. Then `set(key, value, Some(f))` creates the key
//!   if it is still absent, and fails with `CasMismatch` if anybody created it meanwhile —
//!   exactly insert-if-absent. The residual hole: a creation that lands in the few
//!   microseconds between our `get` and `set` *and* draws version `f` again, which takes
//!   2^32 writes in that window (the counter is 32-bit and wraps). On top of that Envoy runs
//!   `on_configure` on the main thread, alone, before workers get the configuration, so the
//!   first creation normally has no competitor at all.

use super::{Cas, SharedStore, Versioned, WriteError};

/// Written at configure time only, to learn a current version (see the module docs).
pub const CAS_PROBE_KEY: &str = "levee:v1:meta:cas_probe";

/// How many times the create helpers try before giving up with [`UpdateError::Contended`].
const CREATE_ATTEMPTS: u32 = 16;

/// What the update closure decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Write `value` (if the version has not moved) and return `result`.
    Write { value: Vec<u8>, result: T },
    /// Leave the key as it is and return this.
    Keep(T),
}

/// Which host call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    Read,
    Write,
}

/// Why an update or create did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// The key does not exist: it should have been created at configure time.
    Missing,
    /// Every attempt lost a CAS race to another writer.
    Contended,
    /// The host refused a read or a write.
    Store(StoreFault),
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFault::Read => f.write_str("reading shared data failed"),
            StoreFault::Write => f.write_str("writing shared data failed"),
        }
    }
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Missing => {
                f.write_str("shared-data key is missing (it is created at configure time)")
            }
            UpdateError::Contended => {
                f.write_str("shared-data key too contended: CAS retries exhausted")
            }
            UpdateError::Store(fault) => fault.fmt(f),
        }
    }
}

impl std::error::Error for StoreFault {}
impl std::error::Error for UpdateError {}

impl From<StoreFault> for UpdateError {
    fn from(fault: StoreFault) -> Self {
        UpdateError::Store(fault)
    }
}

/// Read-compute-CAS on an existing key, at most `max_attempts` times.
///
/// `f` must be pure. It sees the current value and version — always `Some`: a missing key is
/// [`UpdateError::Missing`] and `f` is not called (the `Option` keeps the signature open for a
/// future "absent" case without breaking callers). A key created empty shows an empty value.
pub fn update_key<T>(
    store: &dyn SharedStore,
    key: &str,
    max_attempts: u32,
    mut f: impl FnMut(Option<&Versioned>) -> Step<T>,
) -> Result<T, UpdateError> {
    for _ in 0..max_attempts {
        let current = read(store, key)?.ok_or(UpdateError::Missing)?;
        match f(Some(&current)) {
            Step::Keep(result) => return Ok(result),
            Step::Write { value, result } => match store.set(key, &value, Some(current.cas)) {
                Ok(()) => return Ok(result),
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Host) => return Err(StoreFault::Write.into()),
            },
        }
    }
    Err(UpdateError::Contended)
}

/// A version that no key holds and no later write can produce for the next 2^32 writes:
/// writes [`CAS_PROBE_KEY`] and reads its version back. Configure time only.
pub fn cas_floor(store: &dyn SharedStore) -> Result<Cas, UpdateError> {
    store
        .set(CAS_PROBE_KEY, b"", None)
        .map_err(|_| StoreFault::Write)?;
    match read(store, CAS_PROBE_KEY)? {
        Some(probe) => Ok(probe.cas),
        None => Err(StoreFault::Read.into()),
    }
}

/// Creates `key` with `value` unless it exists; `Ok(true)` if this call created it.
/// `floor` comes from [`cas_floor`], read before this call (one floor serves a whole batch
/// of keys created at one configure). Atomic as explained in the module docs.
pub fn create_if_absent(
    store: &dyn SharedStore,
    key: &str,
    value: &[u8],
    floor: Cas,
) -> Result<bool, UpdateError> {
    for _ in 0..CREATE_ATTEMPTS {
        if read(store, key)?.is_some() {
            return Ok(false);
        }
        match store.set(key, value, Some(floor)) {
            Ok(()) => return Ok(true),
            // Somebody created it after our read (or a fault was injected): look again.
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return Err(StoreFault::Write.into()),
        }
    }
    Err(UpdateError::Contended)
}

/// Configure time: makes sure `key` exists, creating it with `initial` if absent; `Ok(true)`
/// if this call created it. An existing value is left alone, so a reload keeps its state.
pub fn ensure_key(store: &dyn SharedStore, key: &str, initial: &[u8]) -> Result<bool, UpdateError> {
    let floor = cas_floor(store)?;
    create_if_absent(store, key, initial, floor)
}

/// Configure time: the value of a process-wide singleton (such as the hash secret), creating
/// it from `fresh` if it is absent or empty. Returns what is stored after the call — the
/// winner's value if several workers raced — so every worker that reads afterwards agrees.
/// `fresh` must not be empty.
pub fn get_or_create(
    store: &dyn SharedStore,
    key: &str,
    fresh: &[u8],
) -> Result<Vec<u8>, UpdateError> {
    let mut floor = None;
    for _ in 0..CREATE_ATTEMPTS {
        let expected = match read(store, key)? {
            Some(current) if !current.value.is_empty() => return Ok(current.value),
            // Exists but empty: a plain CAS from its version claims it atomically.
            Some(current) => current.cas,
            None => match floor {
                Some(floor) => floor,
                None => {
                    let f = cas_floor(store)?;
                    floor = Some(f);
                    // The floor must be read before the `get` that saw the key absent.
                    continue;
                }
            },
        };
        match store.set(key, fresh, Some(expected)) {
            // Loop once more and return what is there, not what we think we wrote.
            Ok(()) | Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host) => return Err(StoreFault::Write.into()),
        }
    }
    Err(UpdateError::Contended)
}

fn read(store: &dyn SharedStore, key: &str) -> Result<Option<Versioned>, StoreFault> {
    store.get(key).map_err(|_| StoreFault::Read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn increment(current: Option<&Versioned>) -> Step<u64> {
        let value = current.map(|v| v.value.as_slice()).unwrap_or_default();
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
            update_key(&store, "k", 4, increment),
            Err(UpdateError::Missing)
        );
        assert_eq!(store.key_count(), 0);
    }

    #[test]
    fn update_writes_what_the_closure_computed() {
        let store = MemoryStore::new();
        ensure_key(&store, "k", b"").unwrap();
        assert_eq!(update_key(&store, "k", 4, increment), Ok(1));
        assert_eq!(update_key(&store, "k", 4, increment), Ok(2));
    }

    #[test]
    fn keep_does_not_write() {
        let store = MemoryStore::new();
        ensure_key(&store, "k", b"x").unwrap();
        let sets = store.stats().sets;
        assert_eq!(
            update_key(&store, "k", 4, |v| Step::Keep(v.map(|v| v.value.len()))),
            Ok(Some(1))
        );
        assert_eq!(store.stats().sets, sets);
    }

    #[test]
    fn conflicts_rerun_the_closure_on_fresh_state() {
        let store = MemoryStore::new();
        ensure_key(&store, "k", b"").unwrap();
        store.fail_next_cas(3);
        let mut runs = 0;
        let out = update_key(&store, "k", 4, |v| {
            runs += 1;
            increment(v)
        });
        assert_eq!((out, runs), (Ok(1), 4));
    }

    #[test]
    fn exhausted_attempts_are_contended_and_leave_the_value() {
        let store = MemoryStore::new();
        ensure_key(&store, "k", b"").unwrap();
        store.fail_next_cas(4);
        assert_eq!(
            update_key(&store, "k", 4, increment),
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
            update_key(&store, "k", 4, increment),
            Err(UpdateError::Store(StoreFault::Write))
        );
        store.fail_writes(false);
        store.fail_reads(true);
        assert_eq!(
            update_key(&store, "k", 4, increment),
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
}
