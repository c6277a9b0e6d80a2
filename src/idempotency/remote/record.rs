//! The idempotency record as it is stored in etcd: the same small record the shared-data
//! store keeps (state, owner nonce, fingerprint, lock deadline or expiry), followed for a
//! completed request by its encoded answer.
//!
//! Value layout: the record's own encoding ([`Record::encode`], 28–61 bytes, byte 0 = version,
//! byte 1 = tag, which fixes its length), the writer's nonce (u64, little-endian: the request
//! that wrote this value, so a writer that lost an answer recognises its own write even when
//! two completions would store the same record), then — only for a [`Record::Completed`]
//! whose `body` is set — the encoded answer ([`StoredResponse::encode`]), whose length and
//! checksum the record names (`BodyRef::slot` and `generation` are 0: the answer lives in the
//! same value). The times inside the record decide every lifetime: `locked_until` for an in-flight
//! record, `expires_at` for a completed one; etcd's leases only collect garbage.
//!
//! An answer whose encoding is over [`MAX_STORED_ANSWER`] is remembered by status only, so a
//! write never comes near etcd's request limit (1.5 MiB by default).

use crate::idempotency::record::{BodyRef, Completed, Record};
use crate::idempotency::replay::{replay, Replay};
use crate::idempotency::response::StoredResponse;

/// The largest encoded answer kept in an etcd record (1 MiB): with the key, the record and
/// the transaction's framing a write stays well under etcd's default 1.5 MiB request limit.
pub const MAX_STORED_ANSWER: usize = 1024 * 1024;

/// The record's length for a tag byte, as [`Record::encode`] writes it.
fn record_len(tag: u8) -> Option<usize> {
    use crate::idempotency::record::{COMPLETED_LEN, IN_FLIGHT_LEN, TOO_LARGE_LEN};
    match tag {
        1 => Some(IN_FLIGHT_LEN),
        2 => Some(COMPLETED_LEN),
        3 => Some(TOO_LARGE_LEN),
        _ => None,
    }
}

/// A record read from etcd, with the nonce of its writer and the answer bytes that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub record: Record,
    pub writer: u64,
    pub answer: Vec<u8>,
}

impl StoredRecord {
    /// Splits an etcd value; `None` for an empty or unreadable value (no record).
    pub fn decode(value: &[u8]) -> Option<Self> {
        let len = record_len(*value.get(1)?)?;
        let record = Record::decode(value.get(..len)?)?;
        let writer = u64::from_le_bytes(value.get(len..len + 8)?.try_into().ok()?);
        let answer = value.get(len + 8..).unwrap_or_default().to_vec();
        Some(Self {
            record,
            writer,
            answer,
        })
    }

    /// The answer a later same-key request gets, when the record is completed.
    pub fn replay(&self, completed: &Completed, key_echo: &str) -> Replay {
        let blob = (!self.answer.is_empty()).then_some(self.answer.as_slice());
        replay(completed, blob, key_echo)
    }
}

/// The etcd value of a record's encoding `head` written by `writer`, with `answer` (empty:
/// none) after it.
pub fn value(head: &[u8], writer: u64, answer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 8 + answer.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&writer.to_le_bytes());
    out.extend_from_slice(answer);
    out
}

/// A completed record naming its inline answer, and the answer's encoding. An answer that
/// cannot be encoded or is over [`MAX_STORED_ANSWER`] is left out and the record keeps the
/// status only (`body: None`).
pub fn completed(mut completed: Completed, answer: Option<&StoredResponse>) -> (Vec<u8>, Vec<u8>) {
    let encoded = answer
        .and_then(|a| a.encode().ok())
        .filter(|e| e.blob.len() <= MAX_STORED_ANSWER);
    completed.body = encoded.as_ref().map(|e| e.body_ref(0, 0));
    let head = Record::Completed(completed).encode();
    (head, encoded.map(|e| e.blob).unwrap_or_default())
}

/// Whether `body` names an answer stored inline (slot and generation 0).
pub fn names_inline_answer(body: &BodyRef) -> bool {
    body.slot == 0 && body.generation == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::record::{InFlight, TooLarge};
    use crate::idempotency::Fingerprint;

    fn completed_record(status: u16) -> Completed {
        Completed {
            fingerprint: Fingerprint([7; 16]),
            status,
            stored_at: 10,
            expires_at: 99,
            body: None,
        }
    }

    fn answer(body_len: usize) -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: vec![b'x'; body_len],
        }
    }

    fn encode_completed(c: Completed, a: Option<&StoredResponse>) -> Vec<u8> {
        let (head, blob) = completed(c, a);
        value(&head, 42, &blob)
    }

    #[test]
    fn a_completed_record_carries_its_writer_and_answer_and_replays_it_byte_for_byte() {
        let value = encode_completed(completed_record(201), Some(&answer(300)));
        let stored = StoredRecord::decode(&value).expect("a record");
        assert_eq!(stored.writer, 42);
        let Record::Completed(c) = stored.record else {
            panic!("completed expected: {stored:?}")
        };
        assert!(c.body.is_some_and(|b| names_inline_answer(&b)));
        match stored.replay(&c, "k1") {
            Replay::Answer(a) => {
                assert_eq!(a.status, 201);
                assert_eq!(a.body, vec![b'x'; 300]);
                assert!(a
                    .headers
                    .contains(&("idempotent-replayed".into(), "true".into())));
            }
            Replay::Gone { .. } => panic!("the answer should replay"),
        }
    }

    #[test]
    fn an_answer_over_the_limit_is_kept_by_status_only() {
        let value = encode_completed(completed_record(200), Some(&answer(MAX_STORED_ANSWER)));
        assert!(value.len() < 100, "{} bytes", value.len());
        let stored = StoredRecord::decode(&value).expect("a record");
        let Record::Completed(c) = stored.record else {
            panic!("completed expected")
        };
        assert_eq!(c.body, None);
        assert_eq!(stored.replay(&c, "k"), Replay::Gone { status: 200 });
    }

    #[test]
    fn a_damaged_answer_is_never_replayed() {
        let mut value = encode_completed(completed_record(201), Some(&answer(20)));
        let last = value.len() - 12;
        value[last] ^= 1;
        let stored = StoredRecord::decode(&value).expect("a record");
        let Record::Completed(c) = stored.record else {
            panic!("completed expected")
        };
        assert_eq!(stored.replay(&c, "k"), Replay::Gone { status: 201 });
    }

    #[test]
    fn bare_records_round_trip_and_garbage_is_no_record() {
        for record in [
            Record::InFlight(InFlight {
                owner: 5,
                fingerprint: Fingerprint([1; 16]),
                locked_until: 30,
                started_at: 1,
            }),
            Record::TooLarge(TooLarge {
                fingerprint: Fingerprint([2; 16]),
                status: 200,
                expires_at: 40,
            }),
        ] {
            let stored = StoredRecord::decode(&value(&record.encode(), 9, &[])).expect("a record");
            assert_eq!((stored.record, stored.writer), (record, 9));
            assert!(stored.answer.is_empty());
        }
        let short = record_len(1).map(|n| vec![1u8; n]).unwrap_or_default();
        for garbage in [&b""[..], b"\x01", b"\x01\x09abc", b"\x02\x01", &short] {
            assert_eq!(StoredRecord::decode(garbage), None);
        }
    }
}
