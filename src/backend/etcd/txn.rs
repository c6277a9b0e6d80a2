//! etcd's transaction: compare, then run the success or the failure operations, atomically.
//!
//! levee's idempotency records are written only by transactions: "create if absent" is a
//! compare on `create_revision == 0`, and every later write is conditioned on the record's
//! `mod_revision` (the fencing token), so an owner whose lock was taken over cannot overwrite
//! its successor. Field numbers are those of etcd's `api/etcdserverpb/rpc.proto`. A nested
//! transaction inside an operation (`request_txn`, etcd ≥ 3.3) is not modelled: levee never sends
//! one, and an answer carrying one is read as [`ResponseOp::Other`].

use super::kv::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader,
};
use crate::backend::wire::{
    for_each_field, put_bool, put_bytes, put_bytes_always, put_i32, put_message, put_u64_always,
    DecodeError, Message,
};

/// `etcdserverpb.Compare.CompareResult`: how the key's field must relate to the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    /// `EQUAL = 0`.
    Equal = 0,
    /// `GREATER = 1`.
    Greater = 1,
    /// `LESS = 2`.
    Less = 2,
    /// `NOT_EQUAL = 3` (etcd ≥ 3.1).
    NotEqual = 3,
}

/// The field of the key a [`Compare`] inspects, with the value to compare it to: the member
/// of `etcdserverpb.Compare`'s `target_union`; [`Compare`] derives `target` from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// `target = VERSION (0)`; field 4 of etcdserverpb.Compare (`int64 version`).
    Version(i64),
    /// `target = CREATE (1)`; field 5 of etcdserverpb.Compare (`int64 create_revision`);
    /// 0 means "the key does not exist".
    CreateRevision(i64),
    /// `target = MOD (2)`; field 6 of etcdserverpb.Compare (`int64 mod_revision`).
    ModRevision(i64),
    /// `target = VALUE (3)`; field 7 of etcdserverpb.Compare (`bytes value`).
    Value(Vec<u8>),
    /// `target = LEASE (4)`; field 8 of etcdserverpb.Compare (`int64 lease`).
    Lease(i64),
}

impl CompareTarget {
    fn code(&self) -> i32 {
        match self {
            CompareTarget::Version(_) => 0,
            CompareTarget::CreateRevision(_) => 1,
            CompareTarget::ModRevision(_) => 2,
            CompareTarget::Value(_) => 3,
            CompareTarget::Lease(_) => 4,
        }
    }
}

/// `etcdserverpb.Compare`: one predicate of a transaction's guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// Field 1 of etcdserverpb.Compare (`CompareResult result`).
    pub result: CompareResult,
    /// Field 2 (`CompareTarget target`) and the `target_union` (fields 4–8) of etcdserverpb.Compare.
    pub target: CompareTarget,
    /// Field 3 of etcdserverpb.Compare (`bytes key`).
    pub key: Vec<u8>,
    /// Field 64 of etcdserverpb.Compare (`bytes range_end`, etcd ≥ 3.3): empty compares `key` alone.
    pub range_end: Vec<u8>,
}

impl Compare {
    /// "`key` does not exist": `create_revision == 0`.
    pub fn absent(key: &[u8]) -> Compare {
        Compare::new(key, CompareResult::Equal, CompareTarget::CreateRevision(0))
    }

    /// "`key` was last written at `revision`": the fencing condition.
    pub fn mod_revision_is(key: &[u8], revision: i64) -> Compare {
        Compare::new(
            key,
            CompareResult::Equal,
            CompareTarget::ModRevision(revision),
        )
    }

    /// Any predicate on one key.
    pub fn new(key: &[u8], result: CompareResult, target: CompareTarget) -> Compare {
        Compare {
            result,
            target,
            key: key.to_vec(),
            range_end: Vec::new(),
        }
    }
}

impl Message for Compare {
    const NAME: &'static str = "etcdserverpb.Compare";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_i32(buf, 1, self.result as i32);
        put_i32(buf, 2, self.target.code());
        put_bytes(buf, 3, &self.key);
        // A oneof member is written even when it holds the default (0 or empty).
        match &self.target {
            CompareTarget::Version(v) => put_u64_always(buf, 4, *v as u64),
            CompareTarget::CreateRevision(v) => put_u64_always(buf, 5, *v as u64),
            CompareTarget::ModRevision(v) => put_u64_always(buf, 6, *v as u64),
            CompareTarget::Value(v) => put_bytes_always(buf, 7, v),
            CompareTarget::Lease(v) => put_u64_always(buf, 8, *v as u64),
        }
        put_bytes(buf, 64, &self.range_end);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut result = CompareResult::Equal;
        let mut target_code = 0;
        let mut target = None;
        let mut key = Vec::new();
        let mut range_end = Vec::new();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => {
                    result = match f.i32()? {
                        0 => CompareResult::Equal,
                        1 => CompareResult::Greater,
                        2 => CompareResult::Less,
                        3 => CompareResult::NotEqual,
                        _ => return Err(f.unknown_enum()),
                    }
                }
                2 => target_code = f.i32()?,
                3 => key = f.bytes()?.to_vec(),
                4 => target = Some(CompareTarget::Version(f.i64()?)),
                5 => target = Some(CompareTarget::CreateRevision(f.i64()?)),
                6 => target = Some(CompareTarget::ModRevision(f.i64()?)),
                7 => target = Some(CompareTarget::Value(f.bytes()?.to_vec())),
                8 => target = Some(CompareTarget::Lease(f.i64()?)),
                64 => range_end = f.bytes()?.to_vec(),
                _ => {}
            }
            Ok(())
        })?;
        // An unset union compares against the default of the field `target` names.
        let target = match (target, target_code) {
            (Some(t), _) => t,
            (None, 0) => CompareTarget::Version(0),
            (None, 1) => CompareTarget::CreateRevision(0),
            (None, 2) => CompareTarget::ModRevision(0),
            (None, 3) => CompareTarget::Value(Vec::new()),
            (None, 4) => CompareTarget::Lease(0),
            (None, _) => return Err(DecodeError::MissingOneof(Self::NAME)),
        };
        if target.code() != target_code {
            return Err(DecodeError::MissingOneof(Self::NAME));
        }
        Ok(Compare {
            result,
            target,
            key,
            range_end,
        })
    }
}

/// `etcdserverpb.RequestOp`: one operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    /// Field 1 of etcdserverpb.RequestOp (`RangeRequest request_range`).
    Range(RangeRequest),
    /// Field 2 of etcdserverpb.RequestOp (`PutRequest request_put`).
    Put(PutRequest),
    /// Field 3 of etcdserverpb.RequestOp (`DeleteRangeRequest request_delete_range`).
    DeleteRange(DeleteRangeRequest),
}

impl Message for RequestOp {
    const NAME: &'static str = "etcdserverpb.RequestOp";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        match self {
            RequestOp::Range(r) => put_message(buf, 1, r),
            RequestOp::Put(r) => put_message(buf, 2, r),
            RequestOp::DeleteRange(r) => put_message(buf, 3, r),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut op = None;
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => op = Some(RequestOp::Range(f.message()?)),
                2 => op = Some(RequestOp::Put(f.message()?)),
                3 => op = Some(RequestOp::DeleteRange(f.message()?)),
                _ => {}
            }
            Ok(())
        })?;
        op.ok_or(DecodeError::MissingOneof(Self::NAME))
    }
}

/// `etcdserverpb.ResponseOp`: the result of one operation, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    /// Field 1 of etcdserverpb.ResponseOp (`RangeResponse response_range`).
    Range(RangeResponse),
    /// Field 2 of etcdserverpb.ResponseOp (`PutResponse response_put`).
    Put(PutResponse),
    /// Field 3 of etcdserverpb.ResponseOp (`DeleteRangeResponse response_delete_range`).
    DeleteRange(DeleteRangeResponse),
    /// A member this codec does not read (a nested transaction's answer) or none at all.
    Other,
}

impl Message for ResponseOp {
    const NAME: &'static str = "etcdserverpb.ResponseOp";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        match self {
            ResponseOp::Range(r) => put_message(buf, 1, r),
            ResponseOp::Put(r) => put_message(buf, 2, r),
            ResponseOp::DeleteRange(r) => put_message(buf, 3, r),
            ResponseOp::Other => {}
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut op = ResponseOp::Other;
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => op = ResponseOp::Range(f.message()?),
                2 => op = ResponseOp::Put(f.message()?),
                3 => op = ResponseOp::DeleteRange(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(op)
    }
}

/// `etcdserverpb.TxnRequest`: `if all(compare) then success else failure`, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Field 1 of etcdserverpb.TxnRequest (`repeated Compare compare`): a conjunction.
    pub compare: Vec<Compare>,
    /// Field 2 of etcdserverpb.TxnRequest (`repeated RequestOp success`).
    pub success: Vec<RequestOp>,
    /// Field 3 of etcdserverpb.TxnRequest (`repeated RequestOp failure`).
    pub failure: Vec<RequestOp>,
}

impl Message for TxnRequest {
    const NAME: &'static str = "etcdserverpb.TxnRequest";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        for c in &self.compare {
            put_message(buf, 1, c);
        }
        for op in &self.success {
            put_message(buf, 2, op);
        }
        for op in &self.failure {
            put_message(buf, 3, op);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.compare.push(f.message()?),
                2 => m.success.push(f.message()?),
                3 => m.failure.push(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.TxnResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Field 1 of etcdserverpb.TxnResponse (`ResponseHeader header`): `revision` is the
    /// store's revision after the transaction (the new record's `mod_revision` if it wrote).
    pub header: Option<ResponseHeader>,
    /// Field 2 of etcdserverpb.TxnResponse (`bool succeeded`): whether `compare` held.
    pub succeeded: bool,
    /// Field 3 of etcdserverpb.TxnResponse (`repeated ResponseOp responses`): one per
    /// operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// The store revision the answer reflects (0 without a header).
    pub fn revision(&self) -> i64 {
        self.header.as_ref().map_or(0, |h| h.revision)
    }
}

impl Message for TxnResponse {
    const NAME: &'static str = "etcdserverpb.TxnResponse";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        if let Some(h) = &self.header {
            put_message(buf, 1, h);
        }
        put_bool(buf, 2, self.succeeded);
        for op in &self.responses {
            put_message(buf, 3, op);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.header = Some(f.message::<ResponseHeader>()?),
                2 => m.succeeded = f.bool()?,
                3 => m.responses.push(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}
