//! Choosing the way of a bucket that a key's write goes to — its own file so that
//! `slots.rs` stays about reading and committing buckets.
//!
//! The order is fixed and the same for every table: the key's own entry; else a free way;
//! else the way whose entry came to rest first (equivalent to empty, reused at no loss); else,
//! only as the table's [`Eviction`] policy allows, a live entry of another key. Tables differ
//! only in that last step, because what forgetting a live entry costs depends on the layer:
//! a rate limit hands the evicted client a fresh allowance (cheaper than refusing a new
//! client), an idempotency record that is still executing must never be forgotten (a retry
//! would run a second time *while the first runs*), and a completed idempotency record may
//! be (a retry of that key executes again — bounded memory is worth more than a refusal of
//! every new key once the table holds `max_tracked_keys` finished answers).

use super::bucket_view::{BucketView, EntryAt};
use crate::time::UnixNanos;

/// What to do when a new key finds every way of its bucket held by a live entry.
#[derive(Debug, Clone, Copy)]
pub enum Eviction {
    /// Replace the live entry written longest ago. Its key starts fresh next time: for a rate
    /// limit that key may get a fresh allowance. Right where forgetting is cheaper than
    /// refusing (rate limits under a flood of distinct clients).
    LeastRecentlyTouched,
    /// Replace the live entry written longest ago *among those whose state the predicate
    /// accepts*; never one it refuses ([`super::TableError::Full`] when it refuses all). A
    /// plain function of the state bytes, so that the table stays ignorant of what states
    /// mean: the idempotency layer evicts completed records but never an in-flight one.
    LeastRecentlyTouchedWhere(fn(&[u8]) -> bool),
    /// Never replace a live entry: the write fails with [`super::TableError::Full`]. Right
    /// where forgetting breaks a promise.
    NeverLive,
}

/// A live entry that a write would replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub fingerprint: u64,
    pub last_touched: UnixNanos,
    pub at_rest_at: UnixNanos,
}

/// Where a write for the looked-up key would go. Slots are `bucket * WAYS + way`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The key has an entry here (live, or at rest and reused in place).
    Existing { slot: u32 },
    /// A free way, or one whose entry is at rest.
    Vacant { slot: u32 },
    /// A live entry of another key would be replaced.
    Evict { slot: u32, victim: Evicted },
    /// No way may be used (the [`Eviction`] policy allows no victim).
    Full,
}

impl Placement {
    pub fn slot(&self) -> Option<u32> {
        match *self {
            Placement::Existing { slot }
            | Placement::Vacant { slot }
            | Placement::Evict { slot, .. } => Some(slot),
            Placement::Full => None,
        }
    }
}

/// Where a write of the key with `fingerprint` goes in `bucket`, decoded from `value` (see
/// the module docs); `slot` names a way of this bucket as a table slot.
pub(super) fn place(
    bucket: &BucketView,
    value: &[u8],
    fingerprint: u64,
    now: UnixNanos,
    eviction: Eviction,
    slot: impl Fn(usize) -> u32,
) -> Placement {
    if let Some(way) = find(bucket, |e| e.fingerprint == fingerprint) {
        return Placement::Existing { slot: slot(way) };
    }
    if let Some(way) = find_vacant(bucket, now) {
        return Placement::Vacant { slot: slot(way) };
    }
    let victim = match eviction {
        Eviction::NeverLive => None,
        Eviction::LeastRecentlyTouched => least_recently_touched(bucket, |_| true),
        Eviction::LeastRecentlyTouchedWhere(evictable) => {
            least_recently_touched(bucket, |e| evictable(e.state(value)))
        }
    };
    match victim {
        Some((way, victim)) => Placement::Evict {
            slot: slot(way),
            victim,
        },
        None => Placement::Full,
    }
}

/// The way holding the entry `pred` accepts first.
fn find(bucket: &BucketView, pred: impl Fn(&EntryAt) -> bool) -> Option<usize> {
    bucket
        .ways
        .iter()
        .position(|e| e.as_ref().is_some_and(&pred))
}

/// The first free way, else the way whose entry came to rest first.
fn find_vacant(bucket: &BucketView, now: UnixNanos) -> Option<usize> {
    if let Some(way) = bucket.ways.iter().position(Option::is_none) {
        return Some(way);
    }
    let at_rest = bucket.ways.iter().enumerate().filter_map(|(way, e)| {
        let e = e.as_ref()?;
        (!e.is_live(now)).then_some((e.at_rest_at, way))
    });
    at_rest.min().map(|(_, way)| way)
}

/// Of the entries `evictable` accepts, the one written longest ago (ties: the lower way).
fn least_recently_touched(
    bucket: &BucketView,
    evictable: impl Fn(&EntryAt) -> bool,
) -> Option<(usize, Evicted)> {
    let candidates = bucket.ways.iter().enumerate().filter_map(|(way, e)| {
        let e = e.as_ref().filter(|e| evictable(e))?;
        Some((
            e.last_touched,
            way,
            Evicted {
                fingerprint: e.fingerprint,
                last_touched: e.last_touched,
                at_rest_at: e.at_rest_at,
            },
        ))
    });
    candidates
        .min_by_key(|&(touched, way, _)| (touched, way))
        .map(|(_, way, victim)| (way, victim))
}
