//! A tiny in-memory etcd for the remote record machine's tests: one revision counter, keys
//! with create / mod revisions and leases, and Txns evaluated as etcd does for the guards
//! levee sends (create revision, mod revision; a missing key has revision 0).

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::etcd::{
    Compare, CompareResult, CompareTarget, DeleteRangeResponse, KeyValue, LeaseGrantRequest,
    PutResponse, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};

use super::calls::{Call, EtcdAnswer, Failure};

#[derive(Debug, Default)]
pub struct FakeEtcd {
    pub revision: i64,
    pub kvs: BTreeMap<Vec<u8>, KeyValue>,
    pub leases: BTreeSet<i64>,
    /// While true every call fails before reaching the store.
    pub down: bool,
    /// While true the database is full: grants and every Txn that may write are refused with
    /// "database space exceeded", reads are served (etcd's `NOSPACE` alarm).
    pub full: bool,
    /// Calls refused because the database is full.
    pub refused_full: u32,
    /// The next N Txns are applied but their answers are lost (fate unknown).
    pub lose_answers: u32,
    pub txns: u32,
    pub grants: u32,
}

impl FakeEtcd {
    pub fn call(&mut self, call: &Call) -> EtcdAnswer {
        if self.down {
            return EtcdAnswer::Failed(Failure::NotApplied);
        }
        let writes = |ops: &[RequestOp]| ops.iter().any(|op| !matches!(op, RequestOp::Range(_)));
        match call {
            Call::Grant(_) if self.full => {
                self.refused_full += 1;
                EtcdAnswer::Failed(Failure::Exhausted)
            }
            Call::Txn(t) if self.full && (writes(&t.success) || writes(&t.failure)) => {
                self.refused_full += 1;
                EtcdAnswer::Failed(Failure::Exhausted)
            }
            Call::Grant(g) => self.grant(g),
            Call::Txn(t) => {
                let answer = self.txn(t);
                if self.lose_answers > 0 {
                    self.lose_answers -= 1;
                    return EtcdAnswer::Failed(Failure::FateUnknown);
                }
                EtcdAnswer::Txn(answer)
            }
        }
    }

    fn grant(&mut self, g: &LeaseGrantRequest) -> EtcdAnswer {
        self.grants += 1;
        self.leases.insert(g.id);
        EtcdAnswer::Granted
    }

    fn holds(&self, c: &Compare) -> bool {
        let kv = self.kvs.get(&c.key);
        let actual = match c.target {
            CompareTarget::CreateRevision(_) => kv.map_or(0, |k| k.create_revision),
            CompareTarget::ModRevision(_) => kv.map_or(0, |k| k.mod_revision),
            CompareTarget::Version(_) => kv.map_or(0, |k| k.version),
            CompareTarget::Lease(_) => kv.map_or(0, |k| k.lease),
            CompareTarget::Value(_) => return false,
        };
        let wanted = match c.target {
            CompareTarget::CreateRevision(v)
            | CompareTarget::ModRevision(v)
            | CompareTarget::Version(v)
            | CompareTarget::Lease(v) => v,
            CompareTarget::Value(_) => 0,
        };
        match c.result {
            CompareResult::Equal => actual == wanted,
            CompareResult::NotEqual => actual != wanted,
            CompareResult::Greater => actual > wanted,
            CompareResult::Less => actual < wanted,
        }
    }

    pub fn txn(&mut self, t: &TxnRequest) -> TxnResponse {
        self.txns += 1;
        let succeeded = t.compare.iter().all(|c| self.holds(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let writes = ops.iter().any(|op| !matches!(op, RequestOp::Range(_)));
        if writes {
            self.revision += 1;
        }
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(RangeResponse {
                    kvs: self.kvs.get(&r.key).cloned().into_iter().collect(),
                    ..RangeResponse::default()
                }),
                RequestOp::Put(p) => {
                    assert!(
                        p.lease == 0 || self.leases.contains(&p.lease),
                        "lease not granted"
                    );
                    let previous = self.kvs.get(&p.key);
                    let kv = KeyValue {
                        key: p.key.clone(),
                        create_revision: previous.map_or(self.revision, |k| k.create_revision),
                        mod_revision: self.revision,
                        version: previous.map_or(1, |k| k.version + 1),
                        value: p.value.clone(),
                        lease: p.lease,
                    };
                    self.kvs.insert(p.key.clone(), kv);
                    ResponseOp::Put(PutResponse::default())
                }
                RequestOp::DeleteRange(d) => {
                    let deleted = i64::from(self.kvs.remove(&d.key).is_some());
                    ResponseOp::DeleteRange(DeleteRangeResponse {
                        deleted,
                        ..DeleteRangeResponse::default()
                    })
                }
            });
        }
        TxnResponse {
            header: Some(ResponseHeader {
                revision: self.revision,
                ..ResponseHeader::default()
            }),
            succeeded,
            responses,
        }
    }
}
