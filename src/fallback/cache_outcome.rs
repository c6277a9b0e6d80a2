//! What the stale cache answers: a store's outcome and failures, a lookup's hit or the reason
//! for a miss. Its own file so that `cache.rs` stays about where copies live.

use std::fmt;

use crate::idempotency::response::StoredResponse;
use crate::store::{Exhausted, TableError};

/// What [`StaleCache::store_response`](super::cache::StaleCache::store_response) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written at this slot.
    Written { slot: u32 },
    /// The key already has a copy of the same variant younger than the refresh interval.
    AlreadyFresh,
}

/// Why an answer was not stored (the request itself is unaffected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheError {
    /// Over `max_body_bytes` or the header allowance.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// The key's bucket has no usable slot (only when the table is smaller than a bucket).
    NoRoom,
    Table(TableError),
    /// Writing the body blob failed.
    BodyWrite,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(f, "answer of {len} bytes over {max}"),
            Self::NoRoom => f.write_str("no usable cache slot"),
            Self::Table(e) => write!(f, "cache index: {e}"),
            Self::BodyWrite => f.write_str("writing the cached body failed"),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<Exhausted> for CacheError {
    fn from(e: Exhausted) -> Self {
        Self::Table(e.into())
    }
}

/// A copy found by [`StaleCache::find`](super::cache::StaleCache::find).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleHit {
    /// As stored (pass its headers through [`super::headers::stale_headers`] before sending).
    pub response: StoredResponse,
    /// Whole seconds since levee stored it.
    pub age_seconds: u64,
}

/// Why no copy is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No live entry for the key.
    NoEntry,
    /// The copy is older than `max_stale`.
    TooOld { age_seconds: u64 },
    /// The body slot does not hold the blob the entry names (reused, torn or missing).
    BodyMismatch,
    /// The copy was stored for other values of the headers it varies on.
    VaryMismatch,
    /// Shared data could not be read.
    Store,
}
