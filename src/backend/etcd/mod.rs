//! The etcd v3 messages levee sends and reads (`etcdserverpb`, etcd ≥ 3.4): `KV/Txn` for
//! idempotency records and `Lease/LeaseGrant` for their garbage collection.
//!
//! gRPC paths: service `etcdserverpb.KV`, method `Txn`; service `etcdserverpb.Lease`, method
//! `LeaseGrant`.
//!
//! How etcd 3.4 refuses, as a gRPC caller sees it (status code and message):
//! - a request above `--max-request-bytes` (1.5 MiB by default): `3` (INVALID_ARGUMENT),
//!   "etcdserver: request is too large";
//! - above gRPC's receive limit (that limit + 512 KiB): `8` (RESOURCE_EXHAUSTED),
//!   "grpc: received message larger than max";
//! - the backend quota exhausted (`--quota-backend-bytes`, NOSPACE alarm raised): `8`,
//!   "etcdserver: mvcc: database space exceeded" — writes are refused, reads still served.

pub mod kv;
pub mod lease;
pub mod ops;
pub mod txn;

pub use kv::{
    DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader,
};
pub use lease::{LeaseGrantRequest, LeaseGrantResponse};
pub use ops::{
    create_if_absent, delete_if_revision, first_kv, outcome, put_if_revision, read, TxnOutcome,
};
pub use txn::{
    Compare, CompareResult, CompareTarget, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

/// gRPC service of [`TxnRequest`].
pub const KV_SERVICE: &str = "etcdserverpb.KV";
/// gRPC method of [`TxnRequest`].
pub const TXN_METHOD: &str = "Txn";
/// gRPC service of [`LeaseGrantRequest`].
pub const LEASE_SERVICE: &str = "etcdserverpb.Lease";
/// gRPC method of [`LeaseGrantRequest`].
pub const LEASE_GRANT_METHOD: &str = "LeaseGrant";
