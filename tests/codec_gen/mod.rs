//! Deterministic messages of every backend type for the codec conformance test: small,
//! large and negative numbers, empty and non-ASCII strings, optional parts present or not.

#![allow(clippy::unwrap_used)]

use levee::backend::etcd::*;
use levee::backend::rls::*;
use levee::backend::Message;

/// A small deterministic generator (xorshift), so the cases are the same on every run.
pub struct Gen(pub u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Small, large and negative numbers alike.
    fn int(&mut self) -> i64 {
        match self.below(4) {
            0 => 0,
            1 => self.below(300) as i64,
            2 => -(self.below(1 << 40) as i64),
            _ => self.next() as i64,
        }
    }
    fn bytes(&mut self) -> Vec<u8> {
        (0..self.below(6)).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self) -> String {
        let alphabet = ["a", "b", "-", "_", "é", "z", "0", "\u{1F600}"];
        (0..self.below(6))
            .map(|_| alphabet[self.below(8) as usize])
            .collect()
    }
    fn flag(&mut self) -> bool {
        self.below(2) == 1
    }
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Gen) -> T) -> Option<T> {
        if self.flag() {
            Some(f(self))
        } else {
            None
        }
    }
    fn many<T>(&mut self, max: u64, mut f: impl FnMut(&mut Gen) -> T) -> Vec<T> {
        (0..self.below(max + 1)).map(|_| f(self)).collect()
    }

    fn kv(&mut self) -> KeyValue {
        KeyValue {
            key: self.bytes(),
            create_revision: self.int(),
            mod_revision: self.int(),
            version: self.int(),
            value: self.bytes(),
            lease: self.int(),
        }
    }
    fn header(&mut self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.next(),
            member_id: self.next(),
            revision: self.int(),
            raft_term: self.next(),
        }
    }
    fn compare(&mut self) -> Compare {
        let result = [
            CompareResult::Equal,
            CompareResult::Greater,
            CompareResult::Less,
            CompareResult::NotEqual,
        ][self.below(4) as usize];
        let target = match self.below(5) {
            0 => CompareTarget::Version(self.int()),
            1 => CompareTarget::CreateRevision(self.int()),
            2 => CompareTarget::ModRevision(self.int()),
            3 => CompareTarget::Value(self.bytes()),
            _ => CompareTarget::Lease(self.int()),
        };
        Compare {
            result,
            target,
            key: self.bytes(),
            range_end: self.bytes(),
        }
    }
    fn request_op(&mut self) -> RequestOp {
        match self.below(3) {
            0 => RequestOp::Range(RangeRequest {
                key: self.bytes(),
                range_end: self.bytes(),
                limit: self.int(),
                serializable: self.flag(),
                keys_only: self.flag(),
                count_only: self.flag(),
            }),
            1 => RequestOp::Put(PutRequest {
                key: self.bytes(),
                value: self.bytes(),
                lease: self.int(),
                prev_kv: self.flag(),
                ignore_value: self.flag(),
                ignore_lease: self.flag(),
            }),
            _ => RequestOp::DeleteRange(DeleteRangeRequest {
                key: self.bytes(),
                range_end: self.bytes(),
                prev_kv: self.flag(),
            }),
        }
    }
    fn response_op(&mut self) -> ResponseOp {
        match self.below(3) {
            0 => ResponseOp::Range(RangeResponse {
                header: self.maybe(Gen::header),
                kvs: self.many(2, Gen::kv),
                more: self.flag(),
                count: self.int(),
            }),
            1 => ResponseOp::Put(PutResponse {
                header: self.maybe(Gen::header),
                prev_kv: self.maybe(Gen::kv),
            }),
            _ => ResponseOp::DeleteRange(DeleteRangeResponse {
                header: self.maybe(Gen::header),
                deleted: self.int(),
                prev_kvs: self.many(2, Gen::kv),
            }),
        }
    }
    fn unit(&mut self) -> Unit {
        Unit::from_i32(self.below(8) as i32)
    }
    /// Within proto3 JSON's range for Duration and Timestamp (the peer passes through JSON).
    fn duration(&mut self) -> ProtoDuration {
        ProtoDuration {
            seconds: self.below(250_000_000_000) as i64,
            nanos: self.below(1_000_000_000) as i32,
        }
    }
    fn code(&mut self) -> Code {
        [Code::Unknown, Code::Ok, Code::OverLimit][self.below(3) as usize]
    }
    fn quota(&mut self) -> Quota {
        Quota {
            requests: self.next() as u32,
            valid_until: self.maybe(Gen::duration),
            id: self.text(),
        }
    }
    fn header_value(&mut self) -> HeaderValue {
        HeaderValue {
            key: self.text(),
            value: self.text(),
            raw_value: self.bytes(),
        }
    }
    fn descriptor(&mut self) -> Descriptor {
        Descriptor {
            entries: self.many(3, |g| Entry {
                key: g.text(),
                value: g.text(),
            }),
            // The override's unit is an envoy.type.v3.RateLimitUnit, which has no WEEK.
            limit: self.maybe(|g| LimitOverride {
                requests_per_unit: g.next() as u32,
                unit: Unit::from_i32(g.below(7) as i32),
            }),
            hits_addend: self.maybe(|g| g.int() as u64),
        }
    }
    fn status(&mut self) -> DescriptorStatus {
        DescriptorStatus {
            code: self.code(),
            current_limit: self.maybe(|g| CurrentLimit {
                requests_per_unit: g.next() as u32,
                unit: g.unit(),
                name: g.text(),
            }),
            limit_remaining: self.next() as u32,
            duration_until_reset: self.maybe(Gen::duration),
            quota: self.maybe(Gen::quota),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Any {
    TxnRequest(TxnRequest),
    TxnResponse(TxnResponse),
    LeaseGrantRequest(LeaseGrantRequest),
    LeaseGrantResponse(LeaseGrantResponse),
    RateLimitRequest(RateLimitRequest),
    RateLimitResponse(RateLimitResponse),
}

impl Any {
    pub fn generate(g: &mut Gen, i: usize) -> Any {
        match i % 6 {
            0 => Any::TxnRequest(TxnRequest {
                compare: g.many(3, Gen::compare),
                success: g.many(3, Gen::request_op),
                failure: g.many(2, Gen::request_op),
            }),
            1 => Any::TxnResponse(TxnResponse {
                header: g.maybe(Gen::header),
                succeeded: g.flag(),
                responses: g.many(3, Gen::response_op),
            }),
            2 => Any::LeaseGrantRequest(LeaseGrantRequest {
                ttl: g.int(),
                id: g.int(),
            }),
            3 => Any::LeaseGrantResponse(LeaseGrantResponse {
                header: g.maybe(Gen::header),
                id: g.int(),
                ttl: g.int(),
                error: g.text(),
            }),
            4 => Any::RateLimitRequest(RateLimitRequest {
                domain: g.text(),
                descriptors: g.many(3, Gen::descriptor),
                hits_addend: g.next() as u32,
            }),
            _ => Any::RateLimitResponse(RateLimitResponse {
                overall_code: g.code(),
                statuses: g.many(3, Gen::status),
                response_headers_to_add: g.many(3, Gen::header_value),
                request_headers_to_add: g.many(2, Gen::header_value),
                raw_body: g.bytes(),
                quota: g.maybe(Gen::quota),
            }),
        }
    }

    pub fn type_and_bytes(&self) -> (&'static str, Vec<u8>) {
        match self {
            Any::TxnRequest(m) => ("TxnRequest", m.encode()),
            Any::TxnResponse(m) => ("TxnResponse", m.encode()),
            Any::LeaseGrantRequest(m) => ("LeaseGrantRequest", m.encode()),
            Any::LeaseGrantResponse(m) => ("LeaseGrantResponse", m.encode()),
            Any::RateLimitRequest(m) => ("RateLimitRequest", m.encode()),
            Any::RateLimitResponse(m) => ("RateLimitResponse", m.encode()),
        }
    }

    pub fn decode_like(&self, b: &[u8]) -> Any {
        match self {
            Any::TxnRequest(_) => Any::TxnRequest(TxnRequest::decode(b).unwrap()),
            Any::TxnResponse(_) => Any::TxnResponse(TxnResponse::decode(b).unwrap()),
            Any::LeaseGrantRequest(_) => {
                Any::LeaseGrantRequest(LeaseGrantRequest::decode(b).unwrap())
            }
            Any::LeaseGrantResponse(_) => {
                Any::LeaseGrantResponse(LeaseGrantResponse::decode(b).unwrap())
            }
            Any::RateLimitRequest(_) => Any::RateLimitRequest(RateLimitRequest::decode(b).unwrap()),
            Any::RateLimitResponse(_) => {
                Any::RateLimitResponse(RateLimitResponse::decode(b).unwrap())
            }
        }
    }
}
