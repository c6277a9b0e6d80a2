//! One stale-cache index entry and its bytes: small and fixed-size, because it lives in a
//! slot-table bucket that every lookup of its neighbours copies under Envoy's lock.
//!
//! Layout (little-endian), [`ENTRY_LEN`] = 31 bytes:
//! `version u8 (=1) | status u16 | stored_at u64 ns | vary digest u64 | blob len u32 |
//! blob checksum u64`. The body blob itself lives under the body key of the entry's slot
//! (see [`super::cache`]). Anything else — another version, another length — decodes as "no
//! entry": at worst a miss, never a panic.

use crate::time::UnixNanos;

/// Encoded size of an [`Entry`].
pub const ENTRY_LEN: usize = 1 + 2 + 8 + 8 + 4 + 8;
const ENTRY_VERSION: u8 = 1;

/// One index entry (see [`ENTRY_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The answer's status (checked against the blob's).
    pub status: u16,
    /// When levee stored it.
    pub stored_at: UnixNanos,
    /// [`super::cacheable::VaryValues::digest`] of the storing request.
    pub vary_digest: u64,
    /// Length and checksum of the body blob this entry names.
    pub blob_len: u32,
    pub checksum: u64,
}

impl Entry {
    /// The [`ENTRY_LEN`] bytes of this entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_LEN);
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.stored_at.to_le_bytes());
        out.extend_from_slice(&self.vary_digest.to_le_bytes());
        out.extend_from_slice(&self.blob_len.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// `None` for anything but a version-1 entry of exactly [`ENTRY_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ENTRY_LEN || bytes[0] != ENTRY_VERSION {
            return None;
        }
        let (status, rest) = bytes[1..].split_first_chunk::<2>()?;
        let (stored_at, rest) = rest.split_first_chunk::<8>()?;
        let (vary_digest, rest) = rest.split_first_chunk::<8>()?;
        let (blob_len, rest) = rest.split_first_chunk::<4>()?;
        let (checksum, _) = rest.split_first_chunk::<8>()?;
        Some(Self {
            status: u16::from_le_bytes(*status),
            stored_at: u64::from_le_bytes(*stored_at),
            vary_digest: u64::from_le_bytes(*vary_digest),
            blob_len: u32::from_le_bytes(*blob_len),
            checksum: u64::from_le_bytes(*checksum),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_round_trips() {
        let e = Entry {
            status: 203,
            stored_at: 1,
            vary_digest: 2,
            blob_len: 3,
            checksum: 4,
        };
        assert_eq!(e.encode().len(), ENTRY_LEN);
        assert_eq!(Entry::decode(&e.encode()), Some(e));
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Entry::decode(&bytes);
        }
    }
}
