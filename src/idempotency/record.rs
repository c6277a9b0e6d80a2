//! One idempotency record and its byte encoding: the state of one (scope, key) entry.
//!
//! Records live in a slot table entry (the store decides which entry; this module only
//! produces and reads the entry's *state bytes* and says when the entry is at rest). Every
//! worker VM reads and CASes them, and Envoy copies the whole value under one lock on each
//! access — so a record is small and fixed-size, and the stored response (which may be large)
//! lives under a separate key, named by a [`BodyRef`].
//!
//! | state | meaning | at rest after |
//! |---|---|---|
//! | (empty) | nobody holds the key | always (0) |
//! | [`InFlight`] | `owner` is executing; others get `409` | `locked_until` |
//! | [`Completed`] | executed; the answer is replayed | `expires_at` |
//! | [`TooLarge`] | executed; the answer was too big to keep: `409` "completed with N" | `expires_at` |
//!
//! Encoding (little-endian; byte 0 = version 1, byte 1 = tag):
//!
//! | tag | layout after the 2 header bytes | total |
//! |---|---|---|
//! | 1 InFlight | owner u64, fingerprint 16 bytes, locked_until u64, started_at u64 | [`IN_FLIGHT_LEN`] = 42 |
//! | 2 Completed | fingerprint 16 bytes, status u16, stored_at u64, expires_at u64, has_body u8, slot u32, generation u64, len u32, checksum u64 | [`COMPLETED_LEN`] = 61 |
//! | 3 TooLarge | fingerprint 16 bytes, status u16, expires_at u64 | [`TOO_LARGE_LEN`] = 28 |
//!
//! **Garbage decodes as "no record"** (empty bytes, another version, a wrong length, an unknown
//! tag): a record that cannot be read cannot be honoured, and refusing the key forever would
//! be worse. With one writer per version this only happens after a downgrade.

use crate::time::UnixNanos;

use super::fingerprint::Fingerprint;

const VERSION: u8 = 1;
const TAG_IN_FLIGHT: u8 = 1;
const TAG_COMPLETED: u8 = 2;
const TAG_TOO_LARGE: u8 = 3;

pub const IN_FLIGHT_LEN: usize = 42;
pub const COMPLETED_LEN: usize = 61;
pub const TOO_LARGE_LEN: usize = 28;

/// Where a stored response lives: an entry of the body table, and what its bytes must be.
///
/// `slot` and `generation` are the body table's names for the entry (the generation changes
/// whenever the entry is reused); `len` and `checksum` are those of the encoded response
/// ([`super::response`]), so a replay uses the blob only if it is exactly the one written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    pub slot: u32,
    pub generation: u64,
    pub len: u32,
    pub checksum: u64,
}

/// A request is executing under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Random id of the executing request (unique per request, not per worker).
    pub owner: u64,
    pub fingerprint: Fingerprint,
    /// The owner renews this every `lock_timeout / 3`; once it passes, the key may be retaken.
    pub locked_until: UnixNanos,
    pub started_at: UnixNanos,
}

/// The request completed and its answer is kept until `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub fingerprint: Fingerprint,
    pub status: u16,
    pub stored_at: UnixNanos,
    pub expires_at: UnixNanos,
    /// `None`: the answer could not be kept (no room under `max_stored_bytes`, or the body
    /// write failed); later requests get `409` "completed with `status`", as for [`TooLarge`].
    pub body: Option<BodyRef>,
}

/// The request completed but its answer was over `max_body_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub fingerprint: Fingerprint,
    pub status: u16,
    pub expires_at: UnixNanos,
}

/// A decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    InFlight(InFlight),
    Completed(Completed),
    TooLarge(TooLarge),
}

impl Record {
    /// Decodes state bytes; `None` for empty or unreadable bytes (see the module doc).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if *bytes.first()? != VERSION {
            return None;
        }
        let mut r = Reader { bytes, at: 2 };
        let record = match *bytes.get(1)? {
            TAG_IN_FLIGHT if bytes.len() == IN_FLIGHT_LEN => Self::InFlight(InFlight {
                owner: r.u64()?,
                fingerprint: r.fingerprint()?,
                locked_until: r.u64()?,
                started_at: r.u64()?,
            }),
            TAG_COMPLETED if bytes.len() == COMPLETED_LEN => {
                let fingerprint = r.fingerprint()?;
                let status = r.u16()?;
                let stored_at = r.u64()?;
                let expires_at = r.u64()?;
                let has_body = r.u8()?;
                let body = BodyRef {
                    slot: r.u32()?,
                    generation: r.u64()?,
                    len: r.u32()?,
                    checksum: r.u64()?,
                };
                Self::Completed(Completed {
                    fingerprint,
                    status,
                    stored_at,
                    expires_at,
                    body: match has_body {
                        0 => None,
                        1 => Some(body),
                        _ => return None,
                    },
                })
            }
            TAG_TOO_LARGE if bytes.len() == TOO_LARGE_LEN => Self::TooLarge(TooLarge {
                fingerprint: r.fingerprint()?,
                status: r.u16()?,
                expires_at: r.u64()?,
            }),
            _ => return None,
        };
        Some(record)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(COMPLETED_LEN);
        out.push(VERSION);
        match self {
            Self::InFlight(r) => {
                out.push(TAG_IN_FLIGHT);
                out.extend_from_slice(&r.owner.to_le_bytes());
                out.extend_from_slice(&r.fingerprint.0);
                out.extend_from_slice(&r.locked_until.to_le_bytes());
                out.extend_from_slice(&r.started_at.to_le_bytes());
            }
            Self::Completed(r) => {
                out.push(TAG_COMPLETED);
                out.extend_from_slice(&r.fingerprint.0);
                out.extend_from_slice(&r.status.to_le_bytes());
                out.extend_from_slice(&r.stored_at.to_le_bytes());
                out.extend_from_slice(&r.expires_at.to_le_bytes());
                let body = r.body.unwrap_or(BodyRef {
                    slot: 0,
                    generation: 0,
                    len: 0,
                    checksum: 0,
                });
                out.push(u8::from(r.body.is_some()));
                out.extend_from_slice(&body.slot.to_le_bytes());
                out.extend_from_slice(&body.generation.to_le_bytes());
                out.extend_from_slice(&body.len.to_le_bytes());
                out.extend_from_slice(&body.checksum.to_le_bytes());
            }
            Self::TooLarge(r) => {
                out.push(TAG_TOO_LARGE);
                out.extend_from_slice(&r.fingerprint.0);
                out.extend_from_slice(&r.status.to_le_bytes());
                out.extend_from_slice(&r.expires_at.to_le_bytes());
            }
        }
        out
    }

    /// The instant after which the entry holds nothing worth keeping and may be reused.
    pub fn at_rest_at(&self) -> UnixNanos {
        match self {
            Self::InFlight(r) => r.locked_until,
            Self::Completed(r) => r.expires_at,
            Self::TooLarge(r) => r.expires_at,
        }
    }

    /// True once `now` has reached [`Self::at_rest_at`]: the record no longer binds the key.
    pub fn is_at_rest(&self, now: UnixNanos) -> bool {
        now >= self.at_rest_at()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            Self::InFlight(r) => r.fingerprint,
            Self::Completed(r) => r.fingerprint,
            Self::TooLarge(r) => r.fingerprint,
        }
    }
}

/// [`Record::at_rest_at`] of state bytes: 0 for empty or unreadable bytes.
pub fn at_rest_at(state: &[u8]) -> UnixNanos {
    Record::decode(state).map_or(0, |r| r.at_rest_at())
}

/// Whether the record table may evict a *live* entry holding these state bytes to make room
/// for a new key: anything but an [`InFlight`] record. Forgetting a finished answer means a
/// later retry of that key executes again; forgetting an in-flight one would let a retry
/// execute while the first execution is still running. (Unreadable bytes are no record.)
pub fn evictable(state: &[u8]) -> bool {
    !matches!(Record::decode(state), Some(Record::InFlight(_)))
}

/// A bounds-checked little-endian cursor; every read is `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.at.checked_add(N)?;
        let out = self.bytes.get(self.at..end)?.try_into().ok()?;
        self.at = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn fingerprint(&mut self) -> Option<Fingerprint> {
        self.take().map(Fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 16])
    }

    fn samples() -> Vec<Record> {
        vec![
            Record::InFlight(InFlight {
                owner: u64::MAX - 3,
                fingerprint: fp(1),
                locked_until: 30,
                started_at: 10,
            }),
            Record::Completed(Completed {
                fingerprint: fp(2),
                status: 201,
                stored_at: 5,
                expires_at: 99,
                body: Some(BodyRef {
                    slot: 7,
                    generation: 1 << 40,
                    len: 1234,
                    checksum: 0xDEAD_BEEF_0BAD_F00D,
                }),
            }),
            Record::Completed(Completed {
                fingerprint: fp(3),
                status: 500,
                stored_at: 5,
                expires_at: 99,
                body: None,
            }),
            Record::TooLarge(TooLarge {
                fingerprint: fp(4),
                status: 200,
                expires_at: 77,
            }),
        ]
    }

    #[test]
    fn every_state_round_trips_at_its_documented_size() {
        for r in samples() {
            let bytes = r.encode();
            let want = match r {
                Record::InFlight(_) => IN_FLIGHT_LEN,
                Record::Completed(_) => COMPLETED_LEN,
                Record::TooLarge(_) => TOO_LARGE_LEN,
            };
            assert_eq!(bytes.len(), want);
            assert_eq!(Record::decode(&bytes), Some(r));
        }
    }

    #[test]
    fn at_rest_at_follows_the_state() {
        let s = samples();
        assert_eq!(s[0].at_rest_at(), 30);
        assert_eq!(s[1].at_rest_at(), 99);
        assert_eq!(s[3].at_rest_at(), 77);
        assert_eq!(at_rest_at(&[]), 0);
        assert_eq!(at_rest_at(&s[0].encode()), 30);
        assert!(!s[0].is_at_rest(29));
        assert!(s[0].is_at_rest(30));
    }

    #[test]
    fn only_in_flight_records_are_never_evictable() {
        let s = samples();
        assert!(!evictable(&s[0].encode()), "in flight");
        assert!(evictable(&s[1].encode()) && evictable(&s[2].encode()));
        assert!(evictable(&s[3].encode()), "too large");
        assert!(evictable(&[]) && evictable(b"garbage"));
    }

    #[test]
    fn garbage_decodes_as_no_record() {
        let good = samples()[1].encode();
        assert_eq!(Record::decode(&[]), None);
        assert_eq!(Record::decode(&good[..good.len() - 1]), None);
        let mut other_version = good.clone();
        other_version[0] = 2;
        assert_eq!(Record::decode(&other_version), None);
        let mut bad_tag = good.clone();
        bad_tag[1] = 9;
        assert_eq!(Record::decode(&bad_tag), None);
        let mut bad_flag = good;
        bad_flag[2 + 16 + 2 + 8 + 8] = 2;
        assert_eq!(Record::decode(&bad_flag), None);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(r) = Record::decode(&bytes) {
                prop_assert_eq!(Record::decode(&r.encode()), Some(r));
            }
        }
    }
}
