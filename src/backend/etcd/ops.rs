//! The few transactions a record store on etcd needs, and what their answers mean.
//!
//! Every write is conditioned: creation on the key being absent, later writes and deletes on
//! the revision the writer last saw (its fencing token). Each transaction's failure branch reads
//! the key, so a lost race costs no second round trip: the answer carries the record that won.

use super::kv::{DeleteRangeRequest, KeyValue, PutRequest, RangeRequest};
use super::txn::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse};

/// What a conditioned transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The condition held and the write happened at `revision` (the new fencing token).
    Applied {
        /// The store's revision after the write.
        revision: i64,
    },
    /// The condition failed; `current` is the key as it is now (`None`: absent).
    Conflict {
        /// The key's current record.
        current: Option<KeyValue>,
    },
}

fn read_op(key: &[u8]) -> RequestOp {
    RequestOp::Range(RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    })
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..PutRequest::default()
    })
}

/// Writes `value` (attached to `lease`, 0 for none) only if `key` does not exist.
pub fn create_if_absent(key: &[u8], value: &[u8], lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare::absent(key)],
        success: vec![put_op(key, value, lease)],
        failure: vec![read_op(key)],
    }
}

/// Replaces `key`'s value only if it was last written at `revision`.
pub fn put_if_revision(key: &[u8], revision: i64, value: &[u8], lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare::mod_revision_is(key, revision)],
        success: vec![put_op(key, value, lease)],
        failure: vec![read_op(key)],
    }
}

/// Deletes `key` only if it was last written at `revision`.
pub fn delete_if_revision(key: &[u8], revision: i64) -> TxnRequest {
    let delete = DeleteRangeRequest {
        key: key.to_vec(),
        ..DeleteRangeRequest::default()
    };
    TxnRequest {
        compare: vec![Compare::mod_revision_is(key, revision)],
        success: vec![RequestOp::DeleteRange(delete)],
        failure: vec![read_op(key)],
    }
}

/// Reads `key` (a transaction without conditions, so every call is a Txn).
pub fn read(key: &[u8]) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: vec![read_op(key)],
        failure: Vec::new(),
    }
}

/// What `answer` to one of this module's transactions means.
pub fn outcome(answer: &TxnResponse) -> TxnOutcome {
    if answer.succeeded {
        return TxnOutcome::Applied {
            revision: answer.revision(),
        };
    }
    TxnOutcome::Conflict {
        current: first_kv(answer),
    }
}

/// The record a [`read`] (or a failed conditional write) returned.
pub fn first_kv(answer: &TxnResponse) -> Option<KeyValue> {
    answer.responses.iter().find_map(|op| match op {
        ResponseOp::Range(r) => r.kvs.first().cloned(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::etcd::{CompareTarget, RangeResponse, ResponseHeader};

    #[test]
    fn writes_are_conditioned_and_read_the_key_when_the_condition_fails() {
        let c = create_if_absent(b"k", b"v", 7);
        assert_eq!(c.compare[0].target, CompareTarget::CreateRevision(0));
        assert_eq!(c.failure, vec![read_op(b"k")]);
        assert_eq!(
            put_if_revision(b"k", 9, b"v", 0).compare[0].target,
            CompareTarget::ModRevision(9)
        );
        assert_eq!(delete_if_revision(b"k", 9).failure, vec![read_op(b"k")]);
    }

    #[test]
    fn outcomes_name_the_new_revision_or_the_winning_record() {
        let header = Some(ResponseHeader {
            revision: 42,
            ..ResponseHeader::default()
        });
        let applied = TxnResponse {
            header: header.clone(),
            succeeded: true,
            responses: vec![],
        };
        assert_eq!(outcome(&applied), TxnOutcome::Applied { revision: 42 });
        let kv = KeyValue {
            key: b"k".to_vec(),
            mod_revision: 40,
            ..KeyValue::default()
        };
        let range = RangeResponse {
            kvs: vec![kv.clone()],
            ..RangeResponse::default()
        };
        let lost = TxnResponse {
            header,
            succeeded: false,
            responses: vec![ResponseOp::Range(range)],
        };
        assert_eq!(outcome(&lost), TxnOutcome::Conflict { current: Some(kv) });
    }
}
