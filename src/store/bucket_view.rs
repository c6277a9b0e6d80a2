//! A bucket read in place: the entries' headers decoded, their states left where they are in
//! the value the host returned.
//!
//! Every rate-limited request reads one bucket per matching limit and writes it back with one
//! entry changed. Decoding into owned entries ([`super::bucket::Bucket`]) would copy every
//! entry's state into its own allocation only to copy it back into the written value; a
//! [`BucketView`] instead records where each entry lies in the value, hands out states as
//! slices of it, and builds the next value by copying the untouched entries' bytes straight
//! across. It accepts and refuses exactly the bytes [`super::bucket::Bucket::decode`] does
//! (that decoder is built on this one), so a bucket that does not decode still reads as empty.

use super::bucket_layout::{
    CodecError, EntryRef, BUCKET_HEADER_BYTES, ENTRY_HEADER_BYTES, FORMAT_VERSION, MAX_STATE_BYTES,
    WAYS,
};
use crate::time::UnixNanos;

/// One entry's header, and where its bytes lie in the value it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryAt {
    pub fingerprint: u64,
    pub last_touched: UnixNanos,
    pub at_rest_at: UnixNanos,
    /// Offset of the entry (its header) in the value.
    start: usize,
    /// Length of its state, which follows the header.
    state_len: usize,
}

impl EntryAt {
    pub fn is_live(&self, now: UnixNanos) -> bool {
        self.at_rest_at > now
    }

    /// The entry's state in `value`, the bytes this entry was decoded from.
    pub fn state<'a>(&self, value: &'a [u8]) -> &'a [u8] {
        value.get(self.state_range()).unwrap_or(&[])
    }

    /// Where the entry's state lies in the value it was decoded from.
    pub fn state_range(&self) -> std::ops::Range<usize> {
        let from = self.start + ENTRY_HEADER_BYTES;
        from..from + self.state_len
    }

    /// The whole entry (header and state) in `value`.
    fn bytes<'a>(&self, value: &'a [u8]) -> Option<&'a [u8]> {
        value.get(self.start..self.start + ENTRY_HEADER_BYTES + self.state_len)
    }
}

/// A decoded bucket's ways; `ways[i]` is `None` when way `i` is free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketView {
    pub ways: [Option<EntryAt>; WAYS],
}

impl BucketView {
    /// Decodes a stored value's entry headers; the empty value is an empty bucket.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut view = BucketView::default();
        let Some((&version, rest)) = bytes.split_first() else {
            return Ok(view);
        };
        if version != FORMAT_VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        let (&occupied, mut rest) = rest.split_first().ok_or(CodecError::Truncated)?;
        if u32::from(occupied) >> WAYS != 0 {
            return Err(CodecError::BadOccupancy(occupied));
        }
        for (way, slot) in view.ways.iter_mut().enumerate() {
            if occupied & (1 << way) == 0 {
                continue;
            }
            let start = bytes.len() - rest.len();
            let (header, tail) = rest
                .split_first_chunk::<ENTRY_HEADER_BYTES>()
                .ok_or(CodecError::Truncated)?;
            let field = |at: usize| {
                let mut word = [0u8; 8];
                word.copy_from_slice(&header[at..at + 8]);
                u64::from_le_bytes(word)
            };
            let fingerprint = field(0);
            let mut len = [0u8; 4];
            len.copy_from_slice(&header[24..28]);
            let state_len = u32::from_le_bytes(len) as usize;
            if fingerprint == 0 {
                return Err(CodecError::ZeroFingerprint);
            }
            rest = tail.get(state_len..).ok_or(CodecError::Truncated)?;
            *slot = Some(EntryAt {
                fingerprint,
                last_touched: field(8),
                at_rest_at: field(16),
                start,
                state_len,
            });
        }
        if rest.is_empty() {
            Ok(view)
        } else {
            Err(CodecError::TrailingBytes)
        }
    }

    /// The value this bucket (decoded from `value`) stores with way `way` holding `entry`
    /// instead (`None`: free), and of the other ways only those `keep` accepts; `way` ≥
    /// [`WAYS`] changes nothing. Kept entries are copied from `value` as they are. `then`
    /// gets the encoded value, built on the stack when it is small (as a rate limit's is).
    pub fn encode_with<R>(
        &self,
        value: &[u8],
        way: usize,
        entry: Option<EntryRef<'_>>,
        keep: impl Fn(&EntryAt) -> bool,
        then: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, CodecError> {
        let entry = entry.filter(|_| way < WAYS);
        let kept = |w: usize| self.ways[w].filter(|e| w != way && keep(e));
        let mut len = entry.map_or(0, |e| ENTRY_HEADER_BYTES + e.state.len());
        for w in 0..WAYS {
            if let Some(e) = kept(w) {
                len += ENTRY_HEADER_BYTES + e.state_len;
            }
        }
        if len == 0 {
            return Ok(then(&[]));
        }
        let len = BUCKET_HEADER_BYTES + len;
        let mut stack = [0u8; STACK_VALUE_BYTES];
        let mut heap = Vec::new();
        let out = match stack.get_mut(..len) {
            Some(out) => out,
            None => {
                heap.resize(len, 0);
                &mut heap[..]
            }
        };
        let mut cursor = Cursor { out, at: 0 };
        cursor.put(&[FORMAT_VERSION, 0])?;
        let mut occupied = 0u8;
        for w in 0..WAYS {
            if w == way {
                let Some(entry) = entry else { continue };
                write_entry(&mut cursor, entry)?;
            } else {
                let Some(e) = kept(w) else { continue };
                if e.state_len > MAX_STATE_BYTES {
                    return Err(CodecError::StateTooLarge(e.state_len));
                }
                cursor.put(e.bytes(value).ok_or(CodecError::Truncated)?)?;
            }
            occupied |= 1 << w;
        }
        let out = cursor.out;
        if let Some(byte) = out.get_mut(1) {
            *byte = occupied;
        }
        Ok(then(out))
    }
}

/// Encoded values up to this many bytes are built on the stack (a bucket of four entries
/// with states of up to 20 bytes: every rate-limit algorithm but the sliding log).
const STACK_VALUE_BYTES: usize = BUCKET_HEADER_BYTES + WAYS * (ENTRY_HEADER_BYTES + 20);

/// Where encoded bytes go.
pub(super) trait Put {
    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError>;
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A buffer of exactly the encoded length, filled from the front.
struct Cursor<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Put for Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        let end = self.at + bytes.len();
        let to = self
            .out
            .get_mut(self.at..end)
            .ok_or(CodecError::Truncated)?;
        to.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}

/// Appends one entry in the stored layout.
pub(super) fn write_entry(out: &mut impl Put, entry: EntryRef<'_>) -> Result<(), CodecError> {
    if entry.fingerprint == 0 {
        return Err(CodecError::ZeroFingerprint);
    }
    let len = u32::try_from(entry.state.len())
        .ok()
        .filter(|&len| len as usize <= MAX_STATE_BYTES)
        .ok_or(CodecError::StateTooLarge(entry.state.len()))?;
    out.put(&entry.fingerprint.to_le_bytes())?;
    out.put(&entry.last_touched.to_le_bytes())?;
    out.put(&entry.at_rest_at.to_le_bytes())?;
    out.put(&len.to_le_bytes())?;
    out.put(entry.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bucket::{arb_entry_with, Bucket, Entry};
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = Entry> {
        arb_entry_with(0..40u64, 40)
    }

    #[test]
    fn states_are_slices_of_the_value_read() {
        let mut bucket = Bucket::default();
        bucket.ways[1] = Some(Entry {
            fingerprint: 9,
            last_touched: 1,
            at_rest_at: 2,
            state: b"abc".to_vec(),
        });
        let value = bucket.encode().unwrap();
        let view = BucketView::decode(&value).unwrap();
        assert_eq!(view.ways[0], None);
        let at = view.ways[1].unwrap();
        assert_eq!((at.fingerprint, at.state(&value)), (9, &b"abc"[..]));
        assert_eq!(&value[at.state_range()], b"abc");
    }

    proptest! {
        #[test]
        fn the_view_refuses_exactly_what_the_owned_decoder_refuses(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            prop_assert_eq!(BucketView::decode(&bytes).err(), Bucket::decode(&bytes).err());
        }

        #[test]
        fn encoding_in_place_is_encoding_the_changed_bucket(
            ways in proptest::array::uniform4(proptest::option::of(arb_entry())),
            way in 0..WAYS + 1,
            written in proptest::option::of(arb_entry()),
            now in 0..40u64,
        ) {
            let bucket = Bucket { ways };
            let value = bucket.encode().unwrap();
            let view = BucketView::decode(&value).unwrap();
            let mut changed = bucket.clone();
            for (w, e) in changed.ways.iter_mut().enumerate() {
                if w == way {
                    *e = written.clone();
                } else if e.as_ref().is_some_and(|e| !e.is_live(now)) {
                    *e = None;
                }
            }
            let in_place = view.encode_with(
                &value,
                way,
                written.as_ref().map(Entry::as_ref),
                |e| e.is_live(now),
                <[u8]>::to_vec,
            );
            prop_assert_eq!(in_place, changed.encode());
        }
    }
}
