//! Between the record machine's etcd calls and the request core's backend calls: a [`Call`]
//! as a gRPC call to the configured etcd backend, and the call's ending as an [`EtcdAnswer`].
//!
//! Envoy reports a refused connection, a reset, no healthy host and a timeout all as
//! UNAVAILABLE; the elapsed time tells them apart. A call answered at once without being sent
//! (the backend's breaker open, a dispatch Envoy refused: elapsed 0) was certainly not applied;
//! any other transport failure may have been. An answer that does not decode is treated as a
//! failure of unknown fate: etcd may have applied the write it answers.

use crate::backend::call::{RemoteAnswer, RemoteCall};
use crate::backend::etcd::{
    TxnResponse, KV_SERVICE, LEASE_GRANT_METHOD, LEASE_SERVICE, TXN_METHOD,
};
use crate::backend::Message;

use super::calls::{failure_of, grant_answer, Call, EtcdAnswer, Failure};

/// The header that carries the claim's revision (the fencing token) to the upstream.
pub const FENCE_HEADER: &str = "x-levee-fence";

/// `call` to the etcd backend number `backend`, with its timeout.
pub fn remote_call(backend: usize, timeout_ms: u64, call: &Call) -> RemoteCall {
    let (service, method, message) = match call {
        Call::Txn(t) => (KV_SERVICE, TXN_METHOD, t.encode()),
        Call::Grant(g) => (LEASE_SERVICE, LEASE_GRANT_METHOD, g.encode()),
    };
    RemoteCall {
        backend,
        service,
        method,
        message,
        timeout_ms,
    }
}

/// What `answer` to `call` means for the record machine.
pub fn etcd_answer(call: &Call, answer: &RemoteAnswer) -> EtcdAnswer {
    let sent = answer.elapsed_ns > 0;
    match call {
        Call::Grant(_) => grant_answer(answer.status, sent),
        Call::Txn(_) if answer.is_ok() => match TxnResponse::decode(&answer.message) {
            Ok(r) => EtcdAnswer::Txn(r),
            Err(_) => EtcdAnswer::Failed(Failure::FateUnknown),
        },
        Call::Txn(_) => EtcdAnswer::Failed(failure_of(answer.status, sent)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::etcd::{create_if_absent, LeaseGrantRequest, ResponseHeader};

    fn answer(status: u32, message: Vec<u8>, elapsed_ns: u64) -> RemoteAnswer {
        RemoteAnswer {
            status,
            message,
            elapsed_ns,
        }
    }

    #[test]
    fn calls_name_etcds_services_and_carry_the_encoded_message() {
        let txn = create_if_absent(b"k", b"v", 0);
        let rc = remote_call(2, 250, &Call::Txn(txn.clone()));
        assert_eq!(
            (rc.backend, rc.service, rc.method),
            (2, "etcdserverpb.KV", "Txn")
        );
        assert_eq!(rc.message, txn.encode());
        let grant = Call::Grant(LeaseGrantRequest { ttl: 60, id: 7 });
        let rc = remote_call(0, 250, &grant);
        assert_eq!(
            (rc.service, rc.method),
            ("etcdserverpb.Lease", "LeaseGrant")
        );
    }

    #[test]
    fn answers_read_as_the_machine_needs_them() {
        let txn = Call::Txn(create_if_absent(b"k", b"v", 0));
        let ok = TxnResponse {
            header: Some(ResponseHeader {
                revision: 5,
                ..ResponseHeader::default()
            }),
            succeeded: true,
            responses: vec![],
        };
        assert_eq!(
            etcd_answer(&txn, &answer(0, ok.encode(), 1_000)),
            EtcdAnswer::Txn(ok)
        );
        // Refused at once (open breaker): not applied. Timed out or reset: maybe applied.
        assert_eq!(
            etcd_answer(&txn, &RemoteAnswer::unavailable()),
            EtcdAnswer::Failed(Failure::NotApplied)
        );
        assert_eq!(
            etcd_answer(&txn, &answer(14, vec![], 250_000_000)),
            EtcdAnswer::Failed(Failure::FateUnknown)
        );
        // Quota exhausted: refused, and so will every write be.
        assert_eq!(
            etcd_answer(&txn, &answer(8, vec![], 1_000)),
            EtcdAnswer::Failed(Failure::Exhausted)
        );
        assert_eq!(
            etcd_answer(&txn, &answer(0, vec![0xff, 0xff], 1_000)),
            EtcdAnswer::Failed(Failure::FateUnknown)
        );
        let grant = Call::Grant(LeaseGrantRequest { ttl: 60, id: 7 });
        assert_eq!(
            etcd_answer(&grant, &answer(9, vec![], 1_000)),
            EtcdAnswer::Granted
        );
    }
}
