//! A decoded slot-table bucket with owned entries (layout in [`super::bucket_layout`]): what a
//! caller that keeps or rewrites whole entries works with. The request path reads buckets in
//! place instead ([`super::bucket_view`]).

pub use super::bucket_layout::{
    CodecError, EntryRef, BUCKET_HEADER_BYTES, ENTRY_HEADER_BYTES, FORMAT_VERSION, MAX_STATE_BYTES,
    WAYS,
};
use super::bucket_view::{write_entry, BucketView};
use crate::time::UnixNanos;

/// One client key's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fingerprint: u64,
    /// When the entry was last written.
    pub last_touched: UnixNanos,
    /// From this instant on the entry is equivalent to no entry and may be reused at no loss.
    pub at_rest_at: UnixNanos,
    /// The caller's opaque state.
    pub state: Vec<u8>,
}

impl Entry {
    /// Live entries still carry information; entries at rest are as good as empty.
    pub fn is_live(&self, now: UnixNanos) -> bool {
        self.at_rest_at > now
    }

    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            fingerprint: self.fingerprint,
            last_touched: self.last_touched,
            at_rest_at: self.at_rest_at,
            state: &self.state,
        }
    }
}

/// A decoded bucket; `ways[i]` is `None` when way `i` is free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub ways: [Option<Entry>; WAYS],
}

impl Bucket {
    /// Decodes a stored value; the empty value is an empty bucket. Accepts and refuses
    /// exactly what [`BucketView::decode`] does (it is that decoder, with each state copied).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let view = BucketView::decode(bytes)?;
        let mut bucket = Bucket::default();
        for (slot, at) in bucket.ways.iter_mut().zip(view.ways) {
            *slot = at.map(|at| Entry {
                fingerprint: at.fingerprint,
                last_touched: at.last_touched,
                at_rest_at: at.at_rest_at,
                state: at.state(bytes).to_vec(),
            });
        }
        Ok(bucket)
    }

    /// Like [`Self::decode`], but bytes that do not decode are an empty bucket.
    pub fn decode_or_empty(bytes: &[u8]) -> Self {
        Self::decode(bytes).unwrap_or_default()
    }

    /// The stored form; a bucket without entries encodes as the empty value.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        self.encode_with(WAYS, None)
    }

    /// The stored form of this bucket with way `way` holding `entry` instead (`None`: free);
    /// `way` ≥ [`WAYS`] changes nothing. What a write stores, without first copying the
    /// written state into an [`Entry`].
    pub fn encode_with(
        &self,
        way: usize,
        entry: Option<EntryRef<'_>>,
    ) -> Result<Vec<u8>, CodecError> {
        let at = |w: usize| -> Option<EntryRef<'_>> {
            if w == way {
                entry
            } else {
                self.ways[w].as_ref().map(Entry::as_ref)
            }
        };
        let len: usize = (0..WAYS)
            .filter_map(at)
            .map(|e| ENTRY_HEADER_BYTES + e.state.len())
            .sum();
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(BUCKET_HEADER_BYTES + len);
        out.push(FORMAT_VERSION);
        out.push(0);
        let mut occupied = 0u8;
        for w in 0..WAYS {
            let Some(entry) = at(w) else { continue };
            write_entry(&mut out, entry)?;
            occupied |= 1 << w;
        }
        out[1] = occupied;
        Ok(out)
    }

    /// Bytes [`Self::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        let entries = self.ways.iter().flatten();
        let mut len = 0;
        for entry in entries {
            len += ENTRY_HEADER_BYTES + entry.state.len();
        }
        if len == 0 {
            0
        } else {
            BUCKET_HEADER_BYTES + len
        }
    }

    /// Largest encoded size of a bucket whose states are at most `max_state_bytes` long.
    pub fn max_encoded_len(max_state_bytes: usize) -> usize {
        BUCKET_HEADER_BYTES + WAYS * (ENTRY_HEADER_BYTES + max_state_bytes.min(MAX_STATE_BYTES))
    }
}

/// Entries for property tests: any non-zero fingerprint and touch time, `at_rest_at` from
/// `at_rest_at`, states shorter than `max_state` bytes.
#[cfg(test)]
pub(super) fn arb_entry_with(
    at_rest_at: impl proptest::strategy::Strategy<Value = UnixNanos>,
    max_state: usize,
) -> impl proptest::strategy::Strategy<Value = Entry> {
    use proptest::prelude::*;
    (
        1..=u64::MAX,
        any::<u64>(),
        at_rest_at,
        proptest::collection::vec(any::<u8>(), 0..max_state),
    )
        .prop_map(|(fingerprint, last_touched, at_rest_at, state)| Entry {
            fingerprint,
            last_touched,
            at_rest_at,
            state,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(fingerprint: u64, state: &[u8]) -> Entry {
        Entry {
            fingerprint,
            last_touched: 10,
            at_rest_at: 20,
            state: state.to_vec(),
        }
    }

    #[test]
    fn empty_value_is_an_empty_bucket_and_back() {
        assert_eq!(Bucket::decode(b""), Ok(Bucket::default()));
        assert_eq!(Bucket::default().encode(), Ok(Vec::new()));
    }

    #[test]
    fn ways_keep_their_positions() {
        let mut bucket = Bucket::default();
        bucket.ways[2] = Some(entry(7, b"abc"));
        let bytes = bucket.encode().unwrap();
        assert_eq!(bytes.len(), bucket.encoded_len());
        assert_eq!(bytes[..2], [FORMAT_VERSION, 0b100]);
        assert_eq!(Bucket::decode(&bytes), Ok(bucket));
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let mut bucket = Bucket::default();
        bucket.ways[0] = Some(entry(7, b"abc"));
        let bytes = bucket.encode().unwrap();
        assert_eq!(
            Bucket::decode(&bytes[..bytes.len() - 1]),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            Bucket::decode(&[bytes.as_slice(), b"x"].concat()),
            Err(CodecError::TrailingBytes)
        );
        assert_eq!(Bucket::decode(&[2, 0]), Err(CodecError::UnknownVersion(2)));
        assert_eq!(
            Bucket::decode(&[1, 0b1_0000]),
            Err(CodecError::BadOccupancy(0b1_0000))
        );
        let mut zero = bytes.clone();
        zero[2..10].fill(0);
        assert_eq!(Bucket::decode(&zero), Err(CodecError::ZeroFingerprint));
        assert_eq!(Bucket::decode_or_empty(&zero), Bucket::default());
    }

    #[test]
    fn oversized_state_is_refused_by_the_encoder() {
        let mut bucket = Bucket::default();
        bucket.ways[0] = Some(entry(1, &vec![0; MAX_STATE_BYTES + 1]));
        assert_eq!(
            bucket.encode(),
            Err(CodecError::StateTooLarge(MAX_STATE_BYTES + 1))
        );
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        arb_entry_with(any::<u64>(), 64)
    }

    proptest! {
        #[test]
        fn codec_round_trips(ways in proptest::array::uniform4(proptest::option::of(arb_entry()))) {
            let bucket = Bucket { ways };
            let bytes = bucket.encode().unwrap();
            prop_assert_eq!(bytes.len(), bucket.encoded_len());
            prop_assert!(bytes.len() <= Bucket::max_encoded_len(64));
            prop_assert_eq!(Bucket::decode(&bytes), Ok(bucket));
        }

        #[test]
        fn encoding_with_a_borrowed_entry_is_encoding_the_bucket_holding_it(
            ways in proptest::array::uniform4(proptest::option::of(arb_entry())),
            way in 0..WAYS,
            written in proptest::option::of(arb_entry()),
        ) {
            let bucket = Bucket { ways };
            let mut holding = bucket.clone();
            holding.ways[way] = written.clone();
            prop_assert_eq!(bucket.encode_with(way, written.as_ref().map(Entry::as_ref)), holding.encode());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(bucket) = Bucket::decode(&bytes) {
                // Whatever decodes re-encodes to a value that decodes the same.
                prop_assert_eq!(Bucket::decode(&bucket.encode().unwrap()), Ok(bucket));
            }
        }

        #[test]
        fn decoding_near_valid_bytes_never_panics(
            ways in proptest::array::uniform4(proptest::option::of(arb_entry())),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut bytes = Bucket { ways }.encode().unwrap();
            if !bytes.is_empty() {
                let i = flip.0.index(bytes.len());
                bytes[i] ^= flip.1;
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let _ = Bucket::decode(&bytes);
        }
    }
}
