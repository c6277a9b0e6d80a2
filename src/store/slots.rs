//! Bounded slot tables: per-client state in a fixed, pre-created set of shared-data keys.
//!
//! Shared data has no delete, so one key per client IP or idempotency key would grow Envoy's
//! memory without bound, and creating keys on the request path races in Envoy's host. A
//! [`SlotTable`] instead owns `buckets` keys, `levee:v1:<layer>:<name>:<bucket>`, created
//! empty at configure time ([`SlotTable::ensure_created`]); each holds up to [`WAYS`] entries
//! (layout and the reason for buckets in [`super::bucket`]). Its memory is fixed the moment it
//! is created ([`SlotTable::memory_bound`]), however many distinct clients come by.
//!
//! # Placement
//! A client key hashes ([`super::hash::KeyHasher`]) to a `slot_seed`, which picks one bucket
//! by jump consistent hashing, and a `fingerprint`, which names its entry there. In the
//! bucket, the key uses its own entry if present; otherwise a free way, else a way whose entry
//! is at rest (`at_rest_at <= now`: equivalent to empty, reused at no loss), else, depending
//! on [`Eviction`], the least recently written live entry (of those the policy allows) or
//! nothing ([`TableError::Full`]); see [`super::placement`].
//!
//! # Entries that a write drops
//! A write drops the bucket's entries of other keys that are at rest, which keeps values
//! small. Callers that keep companion data per slot (the idempotency layer's stored answers)
//! learn which slots a successful write emptied ([`Dropped`]): since the write was one CAS
//! against the version that still held those entries, exactly one writer ever drops each of
//! them, so exactly one caller frees their companion data.
//!
//! # Why there is never more than one live entry per key
//! A key can live only in its one bucket, every placement decision is computed from one read
//! of that bucket, and the result is written back with CAS against that read's version. Two
//! workers that both find the key absent and claim (even different) ways both try to replace
//! the same version; exactly one succeeds, the other reads again, finds the winner's entry and
//! updates it. So all updates of one key are serialised by one CAS word, as if on one key.
//!
//! # Reloads
//! Key names depend on nothing but the layer, the name and the bucket index. Changing the
//! table size moves few client keys (jump hashing: growing from n to m buckets moves
//! (m-n)/m of them); a moved key starts fresh and its old entry ages out. When a table
//! shrinks, buckets past the new size are simply unused: shared data has no delete, so their
//! memory stays until Envoy restarts.

use super::bucket::{Bucket, CodecError, Entry, EntryRef, MAX_STATE_BYTES, WAYS};
use super::bucket_key;
use super::bucket_view::{BucketView, EntryAt};
use super::cas::{cas_floor, create_if_absent, read_compute_cas, Attempt, Step, StoreFault};
use super::hash::{jump_bucket, KeyHash};
pub use super::lookup::Lookup;
use super::lookup::Seen;
use super::placement::place;
pub use super::placement::{Evicted, Eviction, Placement};
pub use super::table_error::TableError;
use super::{SharedStore, Versioned, WriteError};
use crate::time::UnixNanos;

/// Estimated bytes Envoy spends per shared-data key besides the key and value bytes: its map
/// is `std::unordered_map<std::string, std::pair<std::string, uint32_t>>`, so one hash node
/// (next pointer 8 + cached hash 8 + two `std::string`s 2×32 + cas 4, padded: 88), one bucket
/// pointer (8), and allocator rounding and headers for the node and the two heap strings
/// (at most 3×16 + 16). Rounded up to 160.
pub const ENVOY_PER_KEY_OVERHEAD_BYTES: u64 = 160;

/// Slots whose entries a successful write dropped because they were at rest: entries of
/// other keys, never the way written (its [`Placement`] says what that replaced). See the
/// module docs.
pub type Dropped = Vec<u32>;

/// What the update closure decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStep<T> {
    /// Store `state` for the key until `at_rest_at` (at or before `now`: drop the entry).
    Write {
        state: Vec<u8>,
        at_rest_at: UnixNanos,
        result: T,
    },
    /// Change nothing.
    Keep(T),
}

/// A fixed set of pre-created shared-data keys holding per-client entries; see module docs.
#[derive(Debug, Clone)]
pub struct SlotTable {
    prefix: String,
    domain: String,
    buckets: u32,
    max_state_bytes: usize,
}

impl SlotTable {
    /// A table of at least `slots` entries (rounded up to whole buckets of [`WAYS`]).
    /// `layer` is a fixed word such as `rl`, `idem`, `cache`; neither it nor `name` should
    /// contain `:` (names stay unambiguous anyway: the bucket index is the last field).
    pub fn new(layer: &str, name: &str, slots: u32) -> Self {
        let ways = WAYS as u32;
        Self {
            prefix: format!("levee:v1:{layer}:{name}:"),
            domain: format!("{layer}:{name}"),
            buckets: slots.div_ceil(ways).max(1),
            max_state_bytes: MAX_STATE_BYTES,
        }
    }

    /// Refuse states over `max` bytes (default and ceiling: [`MAX_STATE_BYTES`]), so that
    /// [`Self::memory_bound`] holds even if a caller miscounts.
    pub fn with_max_state_bytes(mut self, max: usize) -> Self {
        self.max_state_bytes = max.min(MAX_STATE_BYTES);
        self
    }

    /// Entries the table can hold.
    pub fn slots(&self) -> u32 {
        self.buckets.saturating_mul(WAYS as u32)
    }

    /// Shared-data keys the table uses.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    pub fn max_state_bytes(&self) -> usize {
        self.max_state_bytes
    }

    /// `<layer>:<name>`: the domain to hash this table's client keys in.
    pub fn domain(&self) -> &[u8] {
        self.domain.as_bytes()
    }

    /// The shared-data key of bucket `index`.
    pub fn key_of(&self, index: u32) -> String {
        bucket_key::owned(&self.prefix, index)
    }

    /// The bucket a client key lives in.
    pub fn bucket_of(&self, key: KeyHash) -> u32 {
        jump_bucket(key.slot_seed, self.buckets)
    }

    /// Configure time: creates the bucket keys that do not exist yet (atomically, see
    /// [`super::cas`]), leaving existing ones and their entries alone. Returns how many it
    /// created.
    pub fn ensure_created(&self, store: &dyn SharedStore) -> Result<u32, TableError> {
        let floor = cas_floor(store)?;
        let mut created = 0;
        for index in 0..self.buckets {
            if create_if_absent(store, &self.key_of(index), b"", floor)? {
                created += 1;
            }
        }
        Ok(created)
    }

    /// The most bytes this table can occupy in Envoy's shared data:
    /// `buckets × (longest key + largest bucket value + ENVOY_PER_KEY_OVERHEAD_BYTES)`, where
    /// the largest value is `2 + WAYS × (28 + max_state_bytes)`, for callers whose states never
    /// exceed `max_state_bytes`.
    pub fn memory_bound(&self, max_state_bytes: usize) -> u64 {
        let key = self.prefix.len()
            + self
                .buckets
                .saturating_sub(1)
                .checked_ilog10()
                .map_or(1, |d| d as usize + 1);
        let value = Bucket::max_encoded_len(max_state_bytes.min(self.max_state_bytes));
        u64::from(self.buckets) * (key as u64 + value as u64 + ENVOY_PER_KEY_OVERHEAD_BYTES)
    }

    /// Reads the key's bucket (one `get`) and decides where a write would go.
    pub fn lookup(
        &self,
        store: &dyn SharedStore,
        key: KeyHash,
        now: UnixNanos,
        eviction: Eviction,
    ) -> Result<Lookup, TableError> {
        let index = self.bucket_of(key);
        let key_name = self.key_of(index);
        let Versioned { mut value, cas } = store
            .get(&key_name)
            .map_err(|_| TableError::Store(StoreFault::Read))?
            .ok_or(TableError::Missing)?;
        let bucket = BucketView::decode(&value).unwrap_or_else(|_| {
            value.clear();
            BucketView::default()
        });
        let slot = |way: usize| index.saturating_mul(WAYS as u32).saturating_add(way as u32);
        let placement = place(&bucket, &value, key.fingerprint, now, eviction, slot);
        let mut state = None;
        if let Placement::Existing { slot } = placement {
            let way = slot as usize % WAYS;
            if let Some(entry) = bucket.ways[way].filter(|e| e.is_live(now)) {
                state = Some(entry.state_range());
            }
        }
        Ok(Lookup {
            placement,
            cas,
            fingerprint: key.fingerprint,
            key: key_name,
            value,
            state,
        })
    }

    /// Writes the key's new `state` where `lookup` placed it (one CAS `set`), provided the
    /// bucket has not changed since: `Err(CasMismatch)` means look up again. Entries of other
    /// keys that are at rest are dropped on the way, which keeps values small; `at_rest_at <=
    /// now` drops the key's own entry. Refusals other than a conflict (`Full`, a state over
    /// the table's maximum, `key` not the looked-up key) are `Err(Host)`: use
    /// [`Self::try_commit`] to learn which (and which entries the write dropped).
    pub fn commit(
        &self,
        store: &dyn SharedStore,
        lookup: &Lookup,
        key: KeyHash,
        state: &[u8],
        at_rest_at: UnixNanos,
        now: UnixNanos,
    ) -> Result<(), WriteError> {
        if key.fingerprint != lookup.fingerprint {
            return Err(WriteError::Host);
        }
        match self.try_commit(store, lookup, state, at_rest_at, now) {
            Ok(_) => Ok(()),
            Err(TableError::Conflict) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Host),
        }
    }

    /// [`Self::commit`] with the reason for a refusal ([`TableError::Conflict`]: look up
    /// again), and on success the slots of other keys' entries it dropped.
    pub fn try_commit(
        &self,
        store: &dyn SharedStore,
        lookup: &Lookup,
        state: &[u8],
        at_rest_at: UnixNanos,
        now: UnixNanos,
    ) -> Result<Dropped, TableError> {
        self.write(store, lookup, state, at_rest_at, now)
    }

    /// The commit itself: the looked-up value with the key's entry replaced and entries at
    /// rest left out, the others' bytes copied as they were read.
    fn write(
        &self,
        store: &dyn SharedStore,
        lookup: &Lookup,
        state: &[u8],
        at_rest_at: UnixNanos,
        now: UnixNanos,
    ) -> Result<Dropped, TableError> {
        let max = self.max_state_bytes;
        if state.len() > max {
            return Err(TableError::StateTooLarge {
                len: state.len(),
                max,
            });
        }
        let slot = lookup.placement.slot().ok_or(TableError::Full)?;
        let way = slot as usize % WAYS;
        let first = slot - way as u32;
        // The lookup emptied a value that did not decode, so this decodes.
        let bucket = BucketView::decode(&lookup.value).unwrap_or_default();
        let mut dropped = Dropped::new();
        for (w, entry) in bucket.ways.iter().enumerate() {
            if w != way && entry.is_some_and(|e| !e.is_live(now)) {
                dropped.push(first + w as u32);
            }
        }
        // The written entry is encoded from the borrowed state: no copy of it in between.
        let written = (at_rest_at > now).then_some(EntryRef {
            fingerprint: lookup.fingerprint,
            last_touched: now,
            at_rest_at,
            state,
        });
        let set = |bytes: &[u8]| store.set(&lookup.key, bytes, Some(lookup.cas));
        let live = |e: &EntryAt| e.is_live(now);
        let stored = bucket
            .encode_with(&lookup.value, way, written, live, set)
            .map_err(|e| match e {
                CodecError::StateTooLarge(len) => TableError::StateTooLarge { len, max },
                _ => TableError::Store(StoreFault::Write),
            })?;
        match stored {
            Ok(()) => Ok(dropped),
            Err(WriteError::CasMismatch) => Err(TableError::Conflict),
            Err(WriteError::Host) => Err(TableError::Store(StoreFault::Write)),
        }
    }

    /// Read-compute-CAS on one client key's entry ([`read_compute_cas`]). `f` sees the key's
    /// live state (`None`: fresh) and must be pure: it runs again after a conflict. Common
    /// case: one `get` and, if `f` writes, one `set`.
    pub fn update<T>(
        &self,
        store: &dyn SharedStore,
        key: KeyHash,
        now: UnixNanos,
        eviction: Eviction,
        f: impl FnMut(Option<&[u8]>) -> SlotStep<T>,
    ) -> Result<T, TableError> {
        self.update_dropping(store, key, now, eviction, f)
            .map(|(result, _)| result)
    }

    /// [`Self::update`], also returning the slots of other keys' entries that the successful
    /// write dropped (empty when `f` kept the state).
    pub fn update_dropping<T>(
        &self,
        store: &dyn SharedStore,
        key: KeyHash,
        now: UnixNanos,
        eviction: Eviction,
        mut f: impl FnMut(Option<&[u8]>) -> SlotStep<T>,
    ) -> Result<(T, Dropped), TableError> {
        self.update_lookup(store, key, now, eviction, None, |lookup| f(lookup.state()))
            .map(|(result, (dropped, _))| (result, dropped))
    }

    /// [`Self::update_dropping`] in full: `f` sees the whole [`Lookup`] (state and
    /// placement), and `first`, a lookup of `key` the caller already made, serves the first
    /// attempt instead of a second read of the same bucket. Also hands back the state the
    /// successful write stored (empty when `f` kept the state): a caller that must remember
    /// it needs no copy. The caller's lookup is borrowed, not moved through the loop; only a
    /// fresh read is owned.
    pub fn update_lookup<T>(
        &self,
        store: &dyn SharedStore,
        key: KeyHash,
        now: UnixNanos,
        eviction: Eviction,
        first: Option<&Lookup>,
        mut f: impl FnMut(&Lookup) -> SlotStep<T>,
    ) -> Result<(T, (Dropped, Vec<u8>)), TableError> {
        let mut first = first.filter(|l| l.fingerprint == key.fingerprint);
        read_compute_cas(
            || match first.take() {
                Some(lookup) => Ok(Seen::Given(lookup)),
                None => Ok(Seen::Read(Box::new(
                    self.lookup(store, key, now, eviction)?,
                ))),
            },
            |lookup| match f(lookup) {
                SlotStep::Write {
                    state,
                    at_rest_at,
                    result,
                } => Step::Write {
                    value: (state, at_rest_at),
                    result,
                },
                SlotStep::Keep(result) => Step::Keep(result),
            },
            |lookup, (state, at_rest_at)| match self.write(store, &lookup, &state, at_rest_at, now)
            {
                Ok(dropped) => Ok(Attempt::Done((dropped, state))),
                Err(TableError::Conflict) => Ok(Attempt::Again),
                Err(e) => Err(e),
            },
        )
    }

    /// Bucket `index` as stored now (entries live and at rest; one that does not decode is
    /// empty). One `get`.
    pub fn read_bucket(&self, store: &dyn SharedStore, index: u32) -> Result<Bucket, TableError> {
        let current = store
            .get(&self.key_of(index))
            .map_err(|_| TableError::Store(StoreFault::Read))?
            .ok_or(TableError::Missing)?;
        Ok(Bucket::decode_or_empty(&current.value))
    }

    /// The entry in `slot` as stored now (live or at rest; `None`: the way is free). One `get`.
    pub fn entry(&self, store: &dyn SharedStore, slot: u32) -> Result<Option<Entry>, TableError> {
        let mut bucket = self.read_bucket(store, slot / WAYS as u32)?;
        Ok(bucket.ways[slot as usize % WAYS].take())
    }
}
