//! Shared state: the one place where levee's worker VMs meet.
//!
//! In Envoy this is the plugin's shared data: one process-wide map per `vm_id`, one mutex,
//! values copied in and out on every call, compare-and-swap on a per-key version (`cas`).
//! Two facts of proxy-wasm-cpp-host's `SharedData` shape everything here:
//! - a key that does not exist yet is created by *any* `set`, whatever `cas` is given, so
//!   "create if absent" is not atomic; and
//! - there is no delete, so keys derived from client input would grow memory forever.
//!
//! levee therefore never creates keys on the request path. Per-client entries live in
//! [`slots::SlotTable`]s: fixed, pre-created sets of keys in which "claim this entry" is a CAS
//! on a key that already exists.
//!
//! Every change to shared state, plain key or table entry, is one read-compute-CAS with one
//! retry bound ([`cas::read_compute_cas`], [`cas::MAX_CAS_ATTEMPTS`]).

pub mod bucket;
mod bucket_key;
pub mod bucket_layout;
pub mod bucket_view;
pub mod cas;
pub mod hash;
mod lookup;
pub mod memory;
pub mod placement;
pub mod slots;
mod table_error;

#[cfg(test)]
mod cas_tests;
#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod slots_tests;

pub use cas::{
    ensure_key, get_or_create, read_compute_cas, retry_cas, update_key, Attempt, Exhausted, Step,
    StoreFault, UpdateError, MAX_CAS_ATTEMPTS,
};
pub use hash::{KeyHash, KeyHasher};
pub use memory::MemoryStore;
pub use slots::{Dropped, Eviction, Lookup, Placement, SlotStep, SlotTable, TableError};

/// The version a shared-data value carries; a write with a stale one is refused.
pub type Cas = u32;

/// One read of a shared-data key that exists. An empty `value` is a key that was created
/// (or set) empty — shared data has no delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub cas: Cas,
}

/// Why a write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Somebody else wrote the key since we read it: read again and recompute.
    CasMismatch,
    /// The host refused the call for another reason.
    Host,
}

/// Why a read did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError;

/// The shared key-value store with compare-and-swap: Envoy shared data in production,
/// [`memory::MemoryStore`] in tests.
pub trait SharedStore {
    /// `Ok(None)` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError>;

    /// Writes `value`. `cas: Some(c)` succeeds only if the key's version is still `c`;
    /// `cas: None` is unconditional. Like Envoy, a missing key is created whatever `cas` says.
    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError>;
}

impl<S: SharedStore + ?Sized> SharedStore for &S {
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError> {
        (**self).set(key, value, cas)
    }
}
