//! Read-compute-CAS: the one way shared state changes, and creating keys without Envoy's
//! create race.
//!
//! Every piece of shared state in levee changes the same way: read the value and its version,
//! compute the next value with a **pure** closure, write it back only if the version has not
//! moved, and start over if it has. [`read_compute_cas`] is that loop, and [`retry_cas`] is
//! the bounded retry under it; every table and counter runs through them, so one bound
//! ([`MAX_CAS_ATTEMPTS`]) holds everywhere and "retries ran out" is one outcome ([`Exhausted`],
//! which each caller's error type turns into its own `Contended`). The compute closure may
//! run several times for one logical update, each time on a fresh read; it must not have side
//! effects. [`update_key`] is the loop over one plain key; `SlotTable::update` the loop over
//! one client's entry of a slot table.
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

/// How many times any read-compute-CAS in levee runs before it gives up with [`Exhausted`].
/// A lost race means another worker's write landed, so the workers as a whole always make
/// progress; the bound only caps how long one request keeps losing on a hot key. When it runs
/// out, the layer decides (a limit's or the idempotency layer's `on_internal_error`, the
/// breaker fails open, the retry budget refuses) and `levee_internal_errors` counts it.
pub const MAX_CAS_ATTEMPTS: u32 = 16;

/// What the compute closure decided: write `value` (a byte value for a plain key; whatever
/// the write step takes for a table) if the version has not moved, or leave the state alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T, V = Vec<u8>> {
    /// Write `value` (if the version has not moved) and return `result`.
    Write { value: V, result: T },
    /// Leave the key as it is and return this.
    Keep(T),
}

/// How one attempt came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Finished with this.
    Done(T),
    /// The version moved under us (a lost CAS): read again and recompute.
    Again,
}

/// Every one of the [`MAX_CAS_ATTEMPTS`] attempts lost its race. Each caller's error type
/// converts it into its own "too contended" value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

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

impl From<Exhausted> for UpdateError {
    fn from(_: Exhausted) -> Self {
        UpdateError::Contended
    }
}

/// Runs `attempt` until it is done or fails, at most [`MAX_CAS_ATTEMPTS`] times; after that,
/// [`Exhausted`]. The one retry loop under every change of shared state: prefer
/// [`read_compute_cas`], and use this directly only where an attempt must do more than read,
/// compute and write (such as reserving bytes on another key between the read and the write).
pub fn retry_cas<T, E: From<Exhausted>>(
    mut attempt: impl FnMut() -> Result<Attempt<T>, E>,
) -> Result<T, E> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        if let Attempt::Done(done) = attempt()? {
            return Ok(done);
        }
    }
    Err(Exhausted.into())
}

/// Read-compute-CAS, at most [`MAX_CAS_ATTEMPTS`] times: `read` takes a snapshot (value and
/// version), the pure `compute` decides from it, and `write` stores the decided value against
/// the snapshot's version — [`Attempt::Again`] when the version moved, which starts over with
/// a fresh read. Returns the decision's result and what the write reported (`D::default()`
/// when `compute` kept the state).
pub fn read_compute_cas<S, V, T, D: Default, E: From<Exhausted>>(
    mut read: impl FnMut() -> Result<S, E>,
    mut compute: impl FnMut(&S) -> Step<T, V>,
    mut write: impl FnMut(S, V) -> Result<Attempt<D>, E>,
) -> Result<(T, D), E> {
    retry_cas(|| {
        let seen = read()?;
        Ok(match compute(&seen) {
            Step::Keep(result) => Attempt::Done((result, D::default())),
            Step::Write { value, result } => match write(seen, value)? {
                Attempt::Done(written) => Attempt::Done((result, written)),
                Attempt::Again => Attempt::Again,
            },
        })
    })
}

/// Read-compute-CAS on an existing plain key ([`read_compute_cas`]).
///
/// `f` must be pure. It sees the current value and version; a missing key is
/// [`UpdateError::Missing`] and `f` is not called. A key created empty shows an empty value.
pub fn update_key<T>(
    store: &dyn SharedStore,
    key: &str,
    f: impl FnMut(&Versioned) -> Step<T>,
) -> Result<T, UpdateError> {
    update_key_announcing(store, key, f, |_, _| {})
}

/// [`update_key`] that calls `announce(seen, next)` right before every write attempt, with the
/// value the attempt read and the value it is about to write: for a mirror of the key that must
/// never lag behind a write, so it is moved before the write lands.
pub fn update_key_announcing<T>(
    store: &dyn SharedStore,
    key: &str,
    f: impl FnMut(&Versioned) -> Step<T>,
    mut announce: impl FnMut(&[u8], &[u8]),
) -> Result<T, UpdateError> {
    read_compute_cas(
        || read(store, key)?.ok_or(UpdateError::Missing),
        f,
        |current, value| {
            announce(&current.value, &value);
            conditional_set(store, key, &value, current.cas)
        },
    )
    .map(|(result, ())| result)
}

/// `set` against version `cas`: a mismatch is [`Attempt::Again`], any other refusal a fault.
fn conditional_set(
    store: &dyn SharedStore,
    key: &str,
    value: &[u8],
    cas: Cas,
) -> Result<Attempt<()>, UpdateError> {
    match store.set(key, value, Some(cas)) {
        Ok(()) => Ok(Attempt::Done(())),
        Err(WriteError::CasMismatch) => Ok(Attempt::Again),
        Err(WriteError::Host) => Err(StoreFault::Write.into()),
    }
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
    read_compute_cas(
        || Ok(read(store, key)?),
        |current| match current {
            Some(_) => Step::Keep(false),
            None => Step::Write {
                value: (),
                result: true,
            },
        },
        // A mismatch: somebody created it after our read (or a fault was injected).
        |_, ()| conditional_set(store, key, value, floor),
    )
    .map(|(created, ())| created)
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
    retry_cas(|| {
        let expected = match read(store, key)? {
            Some(current) if !current.value.is_empty() => return Ok(Attempt::Done(current.value)),
            // Exists but empty: a plain CAS from its version claims it atomically.
            Some(current) => current.cas,
            None => match floor {
                Some(floor) => floor,
                None => {
                    floor = Some(cas_floor(store)?);
                    // The floor must be read before the `get` that saw the key absent.
                    return Ok(Attempt::Again);
                }
            },
        };
        match store.set(key, fresh, Some(expected)) {
            // Read once more and return what is there, not what we think we wrote.
            Ok(()) | Err(WriteError::CasMismatch) => Ok(Attempt::Again),
            Err(WriteError::Host) => Err(StoreFault::Write.into()),
        }
    })
}

fn read(store: &dyn SharedStore, key: &str) -> Result<Option<Versioned>, StoreFault> {
    store.get(key).map_err(|_| StoreFault::Read)
}
