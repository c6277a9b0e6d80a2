//! The byte layout of one slot-table bucket: up to [`WAYS`] entries in one shared-data value.
//! Both readers of a bucket share it: the owned [`super::bucket::Bucket`] and the in-place
//! [`super::bucket_view::BucketView`].
//!
//! Why several entries per key rather than one: a key must be placed among a few candidate
//! positions (one fixed position per key would make two colliding live idempotency keys fail
//! each other). If each candidate were its own shared-data key, deciding "this key is not
//! anywhere yet, claim that free one" would need a consistent snapshot of several keys, and
//! Envoy only offers CAS on one: two workers reading the candidates at slightly different
//! moments (say, one before and one after an entry came to rest) can claim two different
//! positions for the same client key and both admit. Keeping all candidates in one value makes
//! every placement decision one CAS, which is exact by construction, and costs one `get` and
//! at most one `set` per request whether the key is found or new.
//!
//! Layout (all integers little-endian), format version 1:
//!
//! ```text
//! bucket := version:u8 (=1) | occupied:u8 (bit i = way i holds an entry) | entry*
//! entry  := fingerprint:u64 (!= 0) | last_touched:u64 ns | at_rest_at:u64 ns
//!           | state_len:u32 | state:[u8; state_len]
//! ```
//!
//! Entries follow in way order; free ways take no bytes, and a bucket with no entry is the
//! empty value (a freshly created key). Ways keep their position, so `bucket * WAYS + way`
//! names an entry stably for as long as it lives (callers may key companion data by it).
//! Anything that does not decode — unknown version, short, trailing or zero-fingerprint
//! bytes — is treated by the table as an empty bucket: never a panic, at worst lost state.

use crate::time::UnixNanos;

/// Entries per bucket (per shared-data key).
pub const WAYS: usize = 4;
/// The layout version written in the first byte.
pub const FORMAT_VERSION: u8 = 1;
/// Version byte and occupancy bitmap.
pub const BUCKET_HEADER_BYTES: usize = 2;
/// Fingerprint, two timestamps and the state length.
pub const ENTRY_HEADER_BYTES: usize = 8 + 8 + 8 + 4;
/// The largest state one entry can hold (1 MiB). Every access copies the whole bucket under
/// Envoy's lock, so configurations implying states anywhere near this should be refused.
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// An [`Entry`] whose state is borrowed: what a write encodes without copying the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub fingerprint: u64,
    pub last_touched: UnixNanos,
    pub at_rest_at: UnixNanos,
    pub state: &'a [u8],
}

/// Why bytes are not a bucket (or a bucket cannot be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    UnknownVersion(u8),
    /// Occupancy bits beyond [`WAYS`].
    BadOccupancy(u8),
    Truncated,
    TrailingBytes,
    ZeroFingerprint,
    /// A state longer than [`MAX_STATE_BYTES`] cannot be encoded.
    StateTooLarge(usize),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::UnknownVersion(v) => write!(f, "unknown slot bucket format version {v}"),
            CodecError::BadOccupancy(b) => write!(
                f,
                "slot bucket occupancy {b:#010b} has bits beyond {WAYS} ways"
            ),
            CodecError::Truncated => f.write_str("slot bucket is truncated"),
            CodecError::TrailingBytes => f.write_str("slot bucket has trailing bytes"),
            CodecError::ZeroFingerprint => f.write_str("slot entry has fingerprint 0"),
            CodecError::StateTooLarge(n) => {
                write!(f, "slot state of {n} bytes exceeds {MAX_STATE_BYTES}")
            }
        }
    }
}

impl std::error::Error for CodecError {}
