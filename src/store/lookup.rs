//! One read of a client key's bucket ([`Lookup`]), and how the slot table's read-compute-CAS
//! loop holds it ([`Seen`]).
//!
//! A rate limit reads every matching limit's bucket before it writes any (so that a rejected
//! request consumes nothing), then commits each from that first read. The loop therefore
//! starts from a lookup the caller already holds; it borrows it rather than moving it
//! through each step, and owns only the lookups it reads itself after a lost CAS.

use super::placement::Placement;
use super::Cas;
use std::ops::{Deref, Range};

/// One read of a key's bucket, ready to be committed. It keeps the bucket's value as the
/// host returned it; the key's state is a slice of it ([`Self::state`]).
#[derive(Debug, Clone)]
pub struct Lookup {
    pub placement: Placement,
    /// The bucket's version when read.
    pub cas: Cas,
    pub(super) fingerprint: u64,
    /// The bucket's shared-data key.
    pub(super) key: String,
    /// The bucket as read; emptied when it did not decode (such a bucket is empty).
    pub(super) value: Vec<u8>,
    /// Where the key's live state lies in `value`; `None` means "fresh".
    pub(super) state: Option<Range<usize>>,
}

impl Lookup {
    /// The key's state if it has a live entry; `None` means "fresh".
    pub fn state(&self) -> Option<&[u8]> {
        let range = self.state.clone()?;
        Some(self.value.get(range).unwrap_or(&[]))
    }
}

/// The lookup one attempt of the loop works on: the caller's, or one read after a conflict.
pub(super) enum Seen<'a> {
    Given(&'a Lookup),
    Read(Box<Lookup>),
}

impl Deref for Seen<'_> {
    type Target = Lookup;

    fn deref(&self) -> &Lookup {
        match self {
            Seen::Given(lookup) => lookup,
            Seen::Read(lookup) => lookup,
        }
    }
}
