//! The calls the remote record machine asks its caller to make, the answers it reads back,
//! and how a failed call is classified.
//!
//! A failure is either *not applied* (etcd refused the write, or the call never left: no
//! healthy host, connection refused, the backend's breaker open) or *of unknown fate* (a
//! timeout or reset after the request went out: etcd may have applied it). A claim of unknown
//! fate is re-sent once — the owner nonce in the record makes that safe: finding a record that
//! carries our nonce means the first send won. etcd's "database space exceeded" (`8`,
//! `RESOURCE_EXHAUSTED`, once the quota is reached) is *exhausted*: etcd refuses every write,
//! not a read, so a claim then reads the record instead and can still replay a stored answer.

use crate::backend::etcd::{LeaseGrantRequest, TxnRequest, TxnResponse};
use crate::config::IdempotencyOnBackendError;
use crate::header_names::RETRY_AFTER;
use crate::idempotency::request::Claimed;
use crate::problem::{
    problem, LocalReply, ProblemKind, GRPC_INTERNAL, GRPC_RESOURCE_EXHAUSTED, GRPC_UNAVAILABLE,
};

/// One gRPC call to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `etcdserverpb.KV/Txn`.
    Txn(TxnRequest),
    /// `etcdserverpb.Lease/LeaseGrant`.
    Grant(LeaseGrantRequest),
}

/// Why a call gave no answer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Certainly not applied.
    NotApplied,
    /// Maybe applied (timeout or reset after sending).
    FateUnknown,
    /// Not applied: etcd's database is full (its `NOSPACE` alarm) and it refuses every write
    /// until an operator frees space; reads still work.
    Exhausted,
}

/// What came back for a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdAnswer {
    Txn(TxnResponse),
    /// The lease exists now (granted, or etcd said it already existed).
    Granted,
    Failed(Failure),
}

/// gRPC `DEADLINE_EXCEEDED`.
const DEADLINE_EXCEEDED: u32 = 4;
/// gRPC `UNKNOWN`: like `INTERNAL`, the stream ended without a status the server chose.
const UNKNOWN: u32 = 2;

/// Classifies a gRPC failure status. `sent`: whether the request may have reached etcd
/// (false when the call could not be dispatched at all).
pub fn failure_of(status: u32, sent: bool) -> Failure {
    match status {
        // UNAVAILABLE: Envoy's answer for a reset, a refused connection or no healthy host.
        DEADLINE_EXCEEDED | GRPC_UNAVAILABLE | UNKNOWN | GRPC_INTERNAL if sent => {
            Failure::FateUnknown
        }
        // etcd's "database space exceeded".
        GRPC_RESOURCE_EXHAUSTED => Failure::Exhausted,
        _ => Failure::NotApplied,
    }
}

/// The answer to a `LeaseGrant`: granted, or an existing lease (as good: another Envoy
/// granted the same bucket), or a failure.
pub fn grant_answer(status: u32, sent: bool) -> EtcdAnswer {
    match status {
        0 | super::lease::LEASE_EXISTS_CODE => EtcdAnswer::Granted,
        other => EtcdAnswer::Failed(failure_of(other, sent)),
    }
}

/// How long a client refused because the record store is unreachable should wait.
pub const BACKEND_RETRY_AFTER_SECS: u64 = 1;

/// `503` + `Retry-After`: the record store cannot be reached and `on_backend_error` is `deny`;
/// nothing was forwarded.
pub fn backend_unavailable() -> LocalReply {
    let mut reply = problem(
        ProblemKind::Internal,
        503,
        "the idempotency record store cannot be reached; the request was not forwarded",
        &[],
    );
    reply
        .headers
        .push((RETRY_AFTER.into(), BACKEND_RETRY_AFTER_SECS.to_string()));
    reply
}

/// What a claim becomes when the record store cannot be reached: refused with
/// [`backend_unavailable`] (`deny`), or forwarded without a record (`allow`; it may execute
/// twice, and the caller counts it).
pub fn on_backend_error(policy: IdempotencyOnBackendError) -> Claimed {
    match policy {
        IdempotencyOnBackendError::Deny => Claimed::Refuse(backend_unavailable()),
        IdempotencyOnBackendError::Allow => Claimed::Unkeyed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sent_call_that_ended_without_a_verdict_has_unknown_fate() {
        assert_eq!(failure_of(4, true), Failure::FateUnknown);
        assert_eq!(failure_of(14, true), Failure::FateUnknown);
        assert_eq!(failure_of(14, false), Failure::NotApplied);
        // Database space exceeded: refused, and every write will be until space is freed.
        assert_eq!(failure_of(8, true), Failure::Exhausted);
        assert_eq!(
            grant_answer(8, true),
            EtcdAnswer::Failed(Failure::Exhausted)
        );
        // Request too large: refused, not applied.
        assert_eq!(failure_of(3, true), Failure::NotApplied);
        assert_eq!(grant_answer(9, true), EtcdAnswer::Granted);
        assert_eq!(grant_answer(0, true), EtcdAnswer::Granted);
    }

    #[test]
    fn deny_refuses_and_allow_forwards_without_a_record() {
        assert!(matches!(
            on_backend_error(IdempotencyOnBackendError::Deny),
            Claimed::Refuse(r) if r.status == 503
        ));
        assert!(matches!(
            on_backend_error(IdempotencyOnBackendError::Allow),
            Claimed::Unkeyed
        ));
    }

    #[test]
    fn the_deny_answer_is_a_503_problem_with_retry_after() {
        let reply = backend_unavailable();
        assert_eq!(reply.status, 503);
        assert!(reply
            .headers
            .iter()
            .any(|(n, v)| n == RETRY_AFTER && v == "1"));
        assert!(reply
            .headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "application/problem+json"));
    }
}
