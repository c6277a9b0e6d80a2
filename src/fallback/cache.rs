//! The stale cache: kept copies of an upstream's good answers, in Envoy's shared data.
//!
//! Every worker VM must see what any worker stored, and shared data has no delete, so the
//! cache is two fixed, pre-created sets of keys per upstream:
//!
//! - an **index** [`SlotTable`] (layer `cache`, name = the upstream), whose entries are small
//!   ([`ENTRY_LEN`] bytes): the answer's status, when it was stored, the digest of its
//!   [`VaryValues`], and the length and checksum of its body blob;
//! - a **body table**: keys `levee:v1:cachebody:<upstream>:<slot>`, one per index slot, each
//!   holding one encoded answer ([`StoredResponse`], the idempotency layer's codec). An index
//!   entry at slot `s` (`bucket × WAYS + way`, stable while the entry lives) owns body key
//!   `s`. Bodies never share a key with the hot index buckets, because every shared-data
//!   access copies the whole value under Envoy's one lock.
//!
//! # Writing and reading without locks
//! A store writes the body blob first, then commits the index entry naming it by length and
//! checksum (one CAS on the bucket). A lookup reads the index entry, then the body, and uses
//! the body only if length and checksum match ([`StoredResponse::decode_for`]). So a body slot
//! that is being rewritten, was reused by a newer entry, or lost a race between two writers is
//! never served as the wrong answer: the worst case is a miss. Hot keys are not rewritten on
//! every request: an entry younger than [`StaleCache::refresh_after_ns`] is kept as it is.
//!
//! # Time
//! `cache.ttl` bounds *storage*: an entry comes to rest (its slot reusable, its answer gone)
//! `ttl` after it was stored. `max_stale` (per fallback entry) bounds how old a *served* copy
//! may be, counted from when levee stored it; so the effective limit is the smaller of the two.
//! Served copies carry `Age` = the upstream's own `Age` when stored + the seconds since
//! ([`super::headers::stale_headers`]).
//!
//! # Memory: `cache.max_total_bytes` bounds the whole store
//! One stored answer is at most `blob = max_body_bytes + MAX_STORED_HEADER_BYTES + 17` bytes.
//! Each body slot costs `blob + body key + ENVOY_PER_KEY_OVERHEAD_BYTES`, plus a quarter of an
//! index bucket. The cache has
//! `slots = min(max_tracked_keys, max_total_bytes / per-slot cost)`, rounded down to whole
//! buckets of [`WAYS`], so [`StaleCache::memory_bound`] — index + bodies, keys and Envoy's
//! per-key overhead included — never exceeds `max_total_bytes`. (If not even one bucket fits,
//! the table keeps fewer slots than its one bucket has ways and refuses placements in the
//! others; the bound is then that of one answer.) With the defaults (64 KiB bodies, 32 MiB)
//! that is about 476 answers. Simple and honest: every slot is sized for the largest answer; small
//! answers do not let more fit.

use crate::config::CacheConfig;
use crate::idempotency::record::BodyRef;
use crate::idempotency::response::{StoredResponse, FIXED_OVERHEAD};
use crate::store::bucket::{Bucket, WAYS};
use crate::store::cas::{cas_floor, create_if_absent, read_compute_cas, Attempt, Step};
use crate::store::slots::ENVOY_PER_KEY_OVERHEAD_BYTES;
use crate::store::{Eviction, KeyHasher, Lookup, Placement, SharedStore, SlotTable, TableError};
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};

use super::cache_outcome::{CacheError, Miss, StaleHit, Stored};
use super::cacheable::{vary_names, VaryValues, MAX_STORED_HEADER_BYTES};
use super::index_entry::{Entry, ENTRY_LEN};

/// Layer word of the index table.
pub const INDEX_LAYER: &str = "cache";
/// Layer word of the body keys.
pub const BODY_LAYER: &str = "cachebody";
/// Digits of the largest slot number (`u32::MAX`).
const MAX_SLOT_DIGITS: usize = 10;

/// The stale cache of one upstream; see the module docs.
#[derive(Debug, Clone)]
pub struct StaleCache {
    index: SlotTable,
    body_prefix: String,
    body_slots: u32,
    ttl_ns: u64,
    max_body_bytes: u64,
    max_blob_bytes: usize,
}

impl StaleCache {
    /// The cache of upstream `upstream` (a validated name: no `:`).
    pub fn new(upstream: &str, cfg: &CacheConfig, max_tracked_keys: u32) -> Self {
        let max_blob_bytes = usize::try_from(cfg.max_body_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(MAX_STORED_HEADER_BYTES + FIXED_OVERHEAD);
        let body_prefix = format!("levee:v1:{BODY_LAYER}:{upstream}:");
        let index_key = format!("levee:v1:{INDEX_LAYER}:{upstream}:").len() + MAX_SLOT_DIGITS;
        let bucket_cost = index_key + Bucket::max_encoded_len(ENTRY_LEN);
        let per_slot = (max_blob_bytes + body_prefix.len() + MAX_SLOT_DIGITS) as u64
            + ENVOY_PER_KEY_OVERHEAD_BYTES
            + (bucket_cost as u64 + ENVOY_PER_KEY_OVERHEAD_BYTES).div_ceil(WAYS as u64);
        let fit = u32::try_from(cfg.max_total_bytes / per_slot).unwrap_or(u32::MAX);
        let mut body_slots = fit.min(max_tracked_keys);
        if body_slots >= WAYS as u32 {
            body_slots -= body_slots % WAYS as u32;
        }
        let body_slots = body_slots.max(1);
        Self {
            index: SlotTable::new(INDEX_LAYER, upstream, body_slots)
                .with_max_state_bytes(ENTRY_LEN),
            body_prefix,
            body_slots,
            ttl_ns: duration_nanos(cfg.ttl),
            max_body_bytes: cfg.max_body_bytes,
            max_blob_bytes,
        }
    }

    /// How many answers the cache can hold.
    pub fn body_slots(&self) -> u32 {
        self.body_slots
    }

    /// The index table.
    pub fn index(&self) -> &SlotTable {
        &self.index
    }

    /// The slot tables to pre-create (the index; [`Self::body_keys`] are plain keys).
    pub fn tables(&self) -> impl Iterator<Item = &SlotTable> {
        std::iter::once(&self.index)
    }

    /// The shared-data key of body slot `slot`.
    pub fn body_key(&self, slot: u32) -> String {
        format!("{}{slot}", self.body_prefix)
    }

    /// Every body key, to pre-create at configure time.
    pub fn body_keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.body_slots).map(|s| self.body_key(s))
    }

    /// Configure time: creates the index buckets and body keys that do not exist yet (empty),
    /// leaving existing ones alone. Returns how many keys it created.
    pub fn ensure_created(&self, store: &dyn SharedStore) -> Result<u32, TableError> {
        let mut created = self.index.ensure_created(store)?;
        let floor = cas_floor(store)?;
        for key in self.body_keys() {
            if create_if_absent(store, &key, b"", floor)? {
                created += 1;
            }
        }
        Ok(created)
    }

    /// The most shared-data bytes this cache can occupy (index + bodies, keys and Envoy's
    /// per-key overhead included); see the module docs.
    pub fn memory_bound(&self) -> u64 {
        let body_key = (self.body_prefix.len() + MAX_SLOT_DIGITS) as u64;
        self.index.memory_bound(ENTRY_LEN)
            + u64::from(self.body_slots)
                * (body_key + self.max_blob_bytes as u64 + ENVOY_PER_KEY_OVERHEAD_BYTES)
    }

    /// The largest encoded answer a slot takes.
    pub fn max_blob_bytes(&self) -> usize {
        self.max_blob_bytes
    }

    /// A key's copy is not rewritten while younger than this: `min(1 s, ttl / 4)`. Bounds
    /// the body writes of a hot key to one per second, at the cost of `Age` being up to that
    /// much older than the latest answer.
    pub fn refresh_after_ns(&self) -> u64 {
        NANOS_PER_SEC.min(self.ttl_ns / 4)
    }

    /// True when an answer for this key and variant would be written (one small index read):
    /// lets the caller skip buffering a body that [`Self::store_response`] would not keep.
    pub fn wants(
        &self,
        store: &dyn SharedStore,
        hasher: &KeyHasher,
        key_bytes: &[u8],
        vary: &VaryValues,
        now: UnixNanos,
    ) -> bool {
        let key = hasher.hash(self.index.domain(), key_bytes);
        match self
            .index
            .lookup(store, key, now, Eviction::LeastRecentlyTouched)
        {
            Ok(l) => !self.is_fresh(l.state(), vary.digest(hasher), now),
            Err(_) => false,
        }
    }

    /// Keeps `response` (already judged storable by [`super::cacheable::check`]) for the key:
    /// body blob first, then the index entry naming it. `vary` holds the request's values of
    /// the headers the response names in `Vary`.
    pub fn store_response(
        &self,
        store: &dyn SharedStore,
        hasher: &KeyHasher,
        key_bytes: &[u8],
        vary: &VaryValues,
        response: &StoredResponse,
        now: UnixNanos,
    ) -> Result<Stored, CacheError> {
        let body_max = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
        if response.body.len() > body_max {
            return Err(CacheError::TooLarge {
                len: response.body.len(),
                max: body_max,
            });
        }
        let len = response.encoded_len();
        if len > self.max_blob_bytes {
            return Err(CacheError::TooLarge {
                len,
                max: self.max_blob_bytes,
            });
        }
        let encoded = response.encode().map_err(|_| CacheError::TooLarge {
            len,
            max: self.max_blob_bytes,
        })?;
        let blob_len = u32::try_from(encoded.blob.len()).unwrap_or(u32::MAX);
        let digest = vary.digest(hasher);
        let entry = Entry {
            status: response.status,
            stored_at: now,
            vary_digest: digest,
            blob_len,
            checksum: encoded.checksum,
        }
        .encode();
        let key = hasher.hash(self.index.domain(), key_bytes);
        let at_rest_at = now.saturating_add(self.ttl_ns);
        let (stored, ()) = read_compute_cas(
            || {
                self.index
                    .lookup(store, key, now, Eviction::LeastRecentlyTouched)
                    .map_err(CacheError::Table)
            },
            |lookup| self.place(lookup, digest, now),
            // Body first, then the index entry naming it (module docs).
            |lookup, slot| {
                store
                    .set(&self.body_key(slot), &encoded.blob, None)
                    .map_err(|_| CacheError::BodyWrite)?;
                match self
                    .index
                    .try_commit(store, &lookup, &entry, at_rest_at, now)
                {
                    Ok(_) => Ok(Attempt::Done(())),
                    Err(TableError::Conflict) => Ok(Attempt::Again),
                    Err(e) => Err(CacheError::Table(e)),
                }
            },
        )?;
        stored
    }

    /// Where a store for this lookup would go: the body slot to write (with the answer it
    /// will give), or an answer without a write.
    fn place(
        &self,
        lookup: &Lookup,
        digest: u64,
        now: UnixNanos,
    ) -> Step<Result<Stored, CacheError>, u32> {
        if self.is_fresh(lookup.state(), digest, now) {
            return Step::Keep(Ok(Stored::AlreadyFresh));
        }
        let slot = match lookup.placement {
            Placement::Full => return Step::Keep(Err(CacheError::Table(TableError::Full))),
            p => p.slot().filter(|&slot| slot < self.body_slots),
        };
        match slot {
            Some(slot) => Step::Write {
                value: slot,
                result: Ok(Stored::Written { slot }),
            },
            None => Step::Keep(Err(CacheError::NoRoom)),
        }
    }

    /// The key's copy if it is at most `max_stale_ns` old, matches the current request's
    /// `Vary` values (`value_of` returns the request's first value of a lower-case header
    /// name) and its body slot still holds exactly the blob the entry names.
    pub fn find<'a>(
        &self,
        store: &dyn SharedStore,
        hasher: &KeyHasher,
        key_bytes: &[u8],
        value_of: impl Fn(&str) -> Option<&'a [u8]>,
        max_stale_ns: u64,
        now: UnixNanos,
    ) -> Result<StaleHit, Miss> {
        let key = hasher.hash(self.index.domain(), key_bytes);
        let lookup = self
            .index
            .lookup(store, key, now, Eviction::NeverLive)
            .map_err(|_| Miss::Store)?;
        let (Some(state), Placement::Existing { slot }) = (lookup.state(), lookup.placement) else {
            return Err(Miss::NoEntry);
        };
        let entry = Entry::decode(state).ok_or(Miss::NoEntry)?;
        let resident_ns = now.saturating_sub(entry.stored_at);
        let age_seconds = resident_ns / NANOS_PER_SEC;
        if resident_ns > max_stale_ns {
            return Err(Miss::TooOld { age_seconds });
        }
        let blob = store
            .get(&self.body_key(slot))
            .map_err(|_| Miss::Store)?
            .ok_or(Miss::BodyMismatch)?;
        let body_ref = BodyRef {
            slot,
            generation: 0,
            len: entry.blob_len,
            checksum: entry.checksum,
        };
        let response =
            StoredResponse::decode_for(&blob.value, &body_ref).map_err(|_| Miss::BodyMismatch)?;
        if response.status != entry.status {
            return Err(Miss::BodyMismatch);
        }
        let names = vary_names(&response.headers).map_err(|_| Miss::VaryMismatch)?;
        if VaryValues::capture(&names, value_of).digest(hasher) != entry.vary_digest {
            return Err(Miss::VaryMismatch);
        }
        Ok(StaleHit {
            response,
            age_seconds,
        })
    }

    /// [`Self::find`] as an option: the answer and its seconds since stored.
    pub fn lookup_stale<'a>(
        &self,
        store: &dyn SharedStore,
        hasher: &KeyHasher,
        key_bytes: &[u8],
        value_of: impl Fn(&str) -> Option<&'a [u8]>,
        max_stale_ns: u64,
        now: UnixNanos,
    ) -> Option<(StoredResponse, u64)> {
        self.find(store, hasher, key_bytes, value_of, max_stale_ns, now)
            .ok()
            .map(|hit| (hit.response, hit.age_seconds))
    }

    /// A live entry of the same variant stored less than the refresh interval ago.
    fn is_fresh(&self, state: Option<&[u8]>, digest: u64, now: UnixNanos) -> bool {
        state.and_then(Entry::decode).is_some_and(|e| {
            e.vary_digest == digest && now.saturating_sub(e.stored_at) < self.refresh_after_ns()
        })
    }
}
