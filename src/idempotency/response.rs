//! The stored-response codec: status, headers and body ↔ one blob of bytes.
//!
//! A replay must be the first answer byte for byte, so the blob keeps every header in order
//! (repeated names included) and the body as raw bytes (not necessarily UTF-8). The blob lives
//! under its own shared-data key, apart from the small hot record, and the record names it by
//! a [`BodyRef`] carrying the blob's length and checksum: a replay uses the blob only if both
//! match, so a blob overwritten by a later record (the body table reuses entries) or a torn
//! or stale value is detected and never replayed as the wrong answer.
//!
//! Layout (little-endian):
//!
//! | size | field |
//! |---|---|
//! | 1 | version = 1 |
//! | 2 | status |
//! | 2 | header count *n* |
//! | n × (2 + name + 4 + value) | name length u16, name, value length u32, value (UTF-8) |
//! | 4 | body length *b* |
//! | b | body |
//! | 8 | checksum: SipHash-1-3 (fixed key) of every byte before it |

use siphasher::sip::SipHasher13;
use std::fmt;
use std::hash::Hasher;

use super::record::BodyRef;

const VERSION: u8 = 1;
const CHECKSUM_KEY: [u8; 16] = *b"levee-idem-rsp-1";
/// Bytes a blob needs besides its header names, values and body.
pub const FIXED_OVERHEAD: usize = 1 + 2 + 2 + 4 + 8;
/// Bytes each header needs besides its name and value.
pub const PER_HEADER_OVERHEAD: usize = 2 + 4;

/// An answer as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredResponse {
    pub status: u16,
    /// In the order the upstream sent them; names as Envoy gives them (lower case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a blob cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Length or checksum differ from the record's [`BodyRef`]: not the blob it wrote.
    NotThisRecord,
    /// The blob's own checksum fails: torn or corrupted.
    Corrupt,
    /// Another version or a malformed layout.
    Malformed,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotThisRecord => "stored response does not belong to this record",
            Self::Corrupt => "stored response failed its checksum",
            Self::Malformed => "stored response is malformed",
        })
    }
}

impl std::error::Error for DecodeError {}

/// An encoded answer: the blob to write, and what the record must say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedResponse {
    pub blob: Vec<u8>,
    pub checksum: u64,
}

impl EncodedResponse {
    /// The [`BodyRef`] naming this blob at the body table's entry `slot` / `generation`.
    pub fn body_ref(&self, slot: u32, generation: u64) -> BodyRef {
        BodyRef {
            slot,
            generation,
            // `encode` refuses blobs over u32::MAX bytes.
            len: u32::try_from(self.blob.len()).unwrap_or(u32::MAX),
            checksum: self.checksum,
        }
    }
}

/// Why an answer cannot be encoded: a field over the layout's limits (`u16` header count
/// and name length, `u32` value and body length, `u32` total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLargeToEncode;

impl StoredResponse {
    /// The blob size this answer encodes to, without encoding it.
    pub fn encoded_len(&self) -> usize {
        self.headers
            .iter()
            .map(|(n, v)| PER_HEADER_OVERHEAD + n.len() + v.len())
            .sum::<usize>()
            .saturating_add(FIXED_OVERHEAD + self.body.len())
    }

    /// Encodes the blob (see [`EncodedResponse::body_ref`] for the record's side).
    pub fn encode(&self) -> Result<EncodedResponse, TooLargeToEncode> {
        let total = self.encoded_len();
        u32::try_from(total).map_err(|_| TooLargeToEncode)?;
        let count = u16::try_from(self.headers.len()).map_err(|_| TooLargeToEncode)?;
        let mut out = Vec::with_capacity(total);
        out.push(VERSION);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for (name, value) in &self.headers {
            let n = u16::try_from(name.len()).map_err(|_| TooLargeToEncode)?;
            let v = u32::try_from(value.len()).map_err(|_| TooLargeToEncode)?;
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        let b = u32::try_from(self.body.len()).map_err(|_| TooLargeToEncode)?;
        out.extend_from_slice(&b.to_le_bytes());
        out.extend_from_slice(&self.body);
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(EncodedResponse {
            blob: out,
            checksum: sum,
        })
    }

    /// Decodes `blob` if it is exactly the one `body` names.
    pub fn decode_for(blob: &[u8], body: &BodyRef) -> Result<Self, DecodeError> {
        let len_matches = u32::try_from(blob.len()).is_ok_and(|n| n == body.len);
        if !len_matches || trailing_checksum(blob) != Some(body.checksum) {
            return Err(DecodeError::NotThisRecord);
        }
        Self::decode(blob)
    }

    /// Decodes a blob, checking its own checksum.
    pub fn decode(blob: &[u8]) -> Result<Self, DecodeError> {
        let split = blob.len().checked_sub(8).ok_or(DecodeError::Malformed)?;
        let (payload, _) = blob.split_at(split);
        if trailing_checksum(blob) != Some(checksum(payload)) {
            return Err(DecodeError::Corrupt);
        }
        parse(payload).ok_or(DecodeError::Malformed)
    }
}

fn trailing_checksum(blob: &[u8]) -> Option<u64> {
    let start = blob.len().checked_sub(8)?;
    Some(u64::from_le_bytes(blob.get(start..)?.try_into().ok()?))
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_key(&CHECKSUM_KEY);
    h.write(bytes);
    h.finish()
}

/// A bounds-checked cursor: every read is `None` past the end.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32_len(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()
    }
    fn utf8(&mut self, n: usize) -> Option<String> {
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }
}

fn parse(payload: &[u8]) -> Option<StoredResponse> {
    let mut c = Cursor { rest: payload };
    if c.take(1)? != [VERSION] {
        return None;
    }
    let status = c.u16()?;
    let count = c.u16()?;
    // Each header needs at least PER_HEADER_OVERHEAD bytes, so `count` cannot make us
    // allocate more than the blob justifies.
    let mut headers =
        Vec::with_capacity(usize::from(count).min(payload.len() / PER_HEADER_OVERHEAD));
    for _ in 0..count {
        let n = usize::from(c.u16()?);
        let name = c.utf8(n)?;
        let v = c.u32_len()?;
        let value = c.utf8(v)?;
        headers.push((name, value));
    }
    let b = c.u32_len()?;
    let body = c.take(b)?.to_vec();
    if !c.rest.is_empty() {
        return None;
    }
    Some(StoredResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
                ("x-empty".into(), String::new()),
                ("x-utf8".into(), "naïve ✓".into()),
            ],
            body: vec![0xFF, 0x00, 0xC3, 0x28, b'{', b'}', 0x80],
        }
    }

    fn body_ref(len: u32, checksum: u64) -> BodyRef {
        BodyRef {
            slot: 3,
            generation: 9,
            len,
            checksum,
        }
    }

    /// (blob, len, checksum) of `r`.
    fn enc(r: &StoredResponse) -> (Vec<u8>, u32, u64) {
        let e = r.encode().unwrap();
        let b = e.body_ref(3, 9);
        (e.blob, b.len, b.checksum)
    }

    #[test]
    fn replay_codec_round_trips_byte_for_byte() {
        let r = sample();
        let (blob, len, sum) = enc(&r);
        assert_eq!(blob.len(), r.encoded_len());
        assert_eq!(len as usize, blob.len());
        let back = StoredResponse::decode_for(&blob, &body_ref(len, sum)).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.encode().unwrap().blob, blob);
    }

    #[test]
    fn empty_answer_round_trips() {
        let r = StoredResponse {
            status: 204,
            ..Default::default()
        };
        let (blob, len, sum) = enc(&r);
        assert_eq!(blob.len(), FIXED_OVERHEAD);
        assert_eq!(
            StoredResponse::decode_for(&blob, &body_ref(len, sum)),
            Ok(r)
        );
    }

    #[test]
    fn a_blob_with_another_checksum_is_not_this_records() {
        let (blob, len, sum) = enc(&sample());
        assert_eq!(
            StoredResponse::decode_for(&blob, &body_ref(len, sum ^ 1)),
            Err(DecodeError::NotThisRecord)
        );
        assert_eq!(
            StoredResponse::decode_for(&blob, &body_ref(len + 1, sum)),
            Err(DecodeError::NotThisRecord)
        );
        let other = StoredResponse {
            status: 200,
            ..sample()
        };
        let (other_blob, _, _) = enc(&other);
        assert_eq!(
            StoredResponse::decode_for(&other_blob, &body_ref(len, sum)),
            Err(DecodeError::NotThisRecord)
        );
        assert_eq!(
            StoredResponse::decode_for(&[], &body_ref(0, 0)),
            Err(DecodeError::NotThisRecord)
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let (mut blob, _, _) = enc(&sample());
        blob[10] ^= 0x40;
        assert_eq!(StoredResponse::decode(&blob), Err(DecodeError::Corrupt));
    }

    #[test]
    fn too_many_headers_are_refused_not_truncated() {
        let r = StoredResponse {
            status: 200,
            headers: vec![("a".into(), "b".into()); usize::from(u16::MAX) + 1],
            body: Vec::new(),
        };
        assert_eq!(r.encode(), Err(TooLargeToEncode));
    }

    proptest! {
        #[test]
        fn codec_round_trips_any_answer(
            status in any::<u16>(),
            headers in proptest::collection::vec((".{0,12}", ".{0,20}"), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let r = StoredResponse { status, headers, body };
            let (blob, len, sum) = enc(&r);
            prop_assert_eq!(StoredResponse::decode_for(&blob, &body_ref(len, sum)), Ok(r));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = StoredResponse::decode(&blob);
            let _ = StoredResponse::decode_for(&blob, &body_ref(blob.len() as u32, 0));
        }

        #[test]
        fn a_valid_checksum_over_garbage_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut blob = payload.clone();
            blob.extend_from_slice(&checksum(&payload).to_le_bytes());
            let _ = StoredResponse::decode(&blob);
        }
    }
}
