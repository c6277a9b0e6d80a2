//! Stored answers: one blob key per record slot, and the byte counter that bounds them all.
//!
//! Shared data has no delete, so an answer's bytes are freed by writing its key empty, and
//! `max_stored_bytes` is enforced by a counter (`levee:v1:idem:budget`) that must equal the
//! bytes the blob keys hold. Two rules keep it exact, whatever the interleaving of workers:
//!
//! - **Every change of a blob key is a CAS on that key, and the counter moves by exactly what
//!   that CAS changed.** Storing reserves the new size first (refused past the cap), then
//!   CASes the blob against the version it read, then releases the size of the value the CAS
//!   replaced — or, if the CAS lost, releases its reservation. Freeing CASes the blob to empty
//!   and releases what it held. Two workers freeing one blob: one CAS wins, one release.
//!   The counter is never below the bytes held (so the cap is a hard bound) and returns to
//!   them exactly when every writer is done (a failed shared-data call can only leave it
//!   high: answers then fall back to "status only" sooner, memory never passes the cap).
//! - **An answer is freed only when no other live record can name it.** A record names the
//!   blob of its own slot ([`BodyRef::slot`]), so a blob is dead once its slot holds no live
//!   record, or holds the record of the request that is freeing it. [`free_dead_answer`] reads
//!   the blob, *then* the slot's record, then CASes the blob: a record that takes the slot in
//!   between writes its answer after claiming, which moves the blob's version and fails the
//!   CAS — so a new record's answer is never freed, not even one byte-identical to the dead one.
//!
//! When answers die: a claim takes a slot (its previous record's answer, or an evicted
//! record's), a bucket write drops records that came to rest (their expired answers: the
//! slot table reports which, and exactly one writer drops each), a request that lost its key
//! (`NotOwner`) gives back the answer it wrote. A record can also come to rest in a bucket that
//! nobody writes for a while; if the counter is full, a store first sweeps a few buckets for
//! such answers ([`SWEEP_BUCKETS`]) before settling for "status only".
//!
//! [`free_dead_answer`]: IdempotencyLayer::free_dead_answer

use crate::idempotency::record::{BodyRef, Record};
use crate::idempotency::response::StoredResponse;
use crate::store::bucket::WAYS;
use crate::store::cas::{retry_cas, update_key, Attempt, Exhausted, Step};
use crate::store::{SharedStore, WriteError};
use crate::time::UnixNanos;

use super::layer::IdempotencyLayer;
use super::shared_keys::{body_key, BUDGET_KEY};
/// Record buckets a store looks through for expired answers when the counter is full: at
/// most this many extra bucket reads (plus the frees), and only when an answer would
/// otherwise be kept by status only — which, with a counter full of *live* answers, is
/// every store until some expire.
pub const SWEEP_BUCKETS: u32 = 16;

impl IdempotencyLayer {
    pub fn body_key(slot: u32) -> String {
        body_key(slot)
    }

    /// Writes the answer's blob in `slot` (the storing request's own record slot) if the
    /// counter has room, after a sweep for expired answers if it has not; the reference the
    /// record will carry, or `None` (remember the status only).
    pub(super) fn store_answer(
        &self,
        store: &dyn SharedStore,
        slot: u32,
        resp: &StoredResponse,
        now: UnixNanos,
    ) -> Option<BodyRef> {
        let encoded = resp.encode().ok()?;
        let key = body_key(slot);
        let new = encoded.blob.len() as u64;
        let mut swept = false;
        // Not a pure read-compute-CAS: each attempt reserves bytes on the counter between its
        // read and its CAS, and gives them back if the CAS loses.
        let stored = retry_cas(|| {
            let current = store.get(&key).ok().flatten().ok_or(StatusOnly)?;
            if !self.reserve(store, new) {
                if !swept {
                    swept = true;
                    self.sweep(store, slot, now);
                    return Ok(Attempt::Again);
                }
                log::warn!(
                    "levee idempotency: max_stored_bytes reached; remembering the status only"
                );
                return Err(StatusOnly);
            }
            match store.set(&key, &encoded.blob, Some(current.cas)) {
                Ok(()) => {
                    self.release(store, current.value.len() as u64);
                    Ok(Attempt::Done(()))
                }
                Err(WriteError::CasMismatch) => {
                    self.release(store, new);
                    Ok(Attempt::Again)
                }
                Err(WriteError::Host) => {
                    self.release(store, new);
                    Err(StatusOnly)
                }
            }
        });
        stored.ok().map(|()| encoded.body_ref(slot, now))
    }

    /// Frees the answer in `slot` unless a live record other than `ours` (an in-flight
    /// record's owner id) holds the slot; see the module docs. Returns the bytes freed.
    pub(super) fn free_dead_answer(
        &self,
        store: &dyn SharedStore,
        slot: u32,
        ours: Option<u64>,
        now: UnixNanos,
    ) -> u64 {
        let key = body_key(slot);
        let Ok(Some(blob)) = store.get(&key) else {
            return 0;
        };
        if blob.value.is_empty() {
            return 0;
        }
        // Read after the blob, on purpose (module docs).
        match self.table.entry(store, slot) {
            Ok(Some(e)) if e.is_live(now) && !is_owned_by(&e.state, ours) => return 0,
            Ok(_) => {}
            Err(_) => return 0,
        }
        if store.set(&key, &[], Some(blob.cas)).is_err() {
            return 0;
        }
        let freed = blob.value.len() as u64;
        self.release(store, freed);
        freed
    }

    /// Frees the answers of records a bucket write dropped ([`crate::store::Dropped`]).
    pub(super) fn free_dropped(&self, store: &dyn SharedStore, dropped: &[u32], now: UnixNanos) {
        for &slot in dropped {
            self.free_dead_answer(store, slot, None, now);
        }
    }

    /// Frees the answers of records at rest in up to [`SWEEP_BUCKETS`] buckets, starting with
    /// `slot`'s and wrapping around (so that different requests sweep different buckets).
    fn sweep(&self, store: &dyn SharedStore, slot: u32, now: UnixNanos) -> u64 {
        let buckets = self.table.buckets();
        let first = slot / WAYS as u32;
        let mut freed = 0;
        for i in 0..SWEEP_BUCKETS.min(buckets) {
            let index = first.wrapping_add(i) % buckets;
            let Ok(bucket) = self.table.read_bucket(store, index) else {
                return freed;
            };
            for (way, entry) in bucket.ways.iter().enumerate() {
                let dead = entry
                    .as_ref()
                    .is_some_and(|e| !e.is_live(now) && names_an_answer(&e.state));
                if dead {
                    let slot = index * WAYS as u32 + way as u32;
                    freed += self.free_dead_answer(store, slot, None, now);
                }
            }
        }
        freed
    }

    /// Adds `bytes` to the counter unless that would pass `max_stored_bytes` (false).
    fn reserve(&self, store: &dyn SharedStore, bytes: u64) -> bool {
        let max = self.config.max_stored_bytes;
        let result = update_key(store, BUDGET_KEY, |current| {
            let next = used(&current.value).saturating_add(bytes);
            if bytes > 0 && next > max {
                return Step::Keep(false);
            }
            Step::Write {
                value: next.to_le_bytes().to_vec(),
                result: true,
            }
        });
        matches!(result, Ok(true))
    }

    /// Takes `bytes` off the counter. Never refused by the cap; if shared data fails, the
    /// counter stays high (answers kept by status only sooner), never low.
    pub(super) fn release(&self, store: &dyn SharedStore, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let result = update_key(store, BUDGET_KEY, |current| {
            let next = used(&current.value).saturating_sub(bytes);
            Step::Write {
                value: next.to_le_bytes().to_vec(),
                result: (),
            }
        });
        if result.is_err() {
            log::warn!("levee idempotency: could not give back {bytes} stored bytes");
        }
    }
}

/// Why an answer is kept by status only: the counter is full, shared data failed, or every
/// attempt lost its race.
struct StatusOnly;

impl From<Exhausted> for StatusOnly {
    fn from(_: Exhausted) -> Self {
        StatusOnly
    }
}

/// The counter's value (empty: 0).
fn used(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Whether `state` is the in-flight record of the request `ours` (whose slot it is to clear).
fn is_owned_by(state: &[u8], ours: Option<u64>) -> bool {
    matches!((Record::decode(state), ours), (Some(Record::InFlight(r)), Some(o)) if r.owner == o)
}

/// Whether a record's state names a stored answer (the only records a sweep frees for).
fn names_an_answer(state: &[u8]) -> bool {
    matches!(Record::decode(state), Some(Record::Completed(c)) if c.body.is_some())
}
