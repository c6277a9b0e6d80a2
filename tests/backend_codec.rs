//! levee's hand-written protobuf codec against the official generated classes (Python:
//! `xds-protos` for the rate limit service, the `etcd3` package's `etcdserverpb` for etcd), run
//! by `tests/peers/codec_peer.py` in `.venv-peers`.
//!
//! Both directions: messages the official classes build field by field must decode to the
//! values levee's types name, and levee must encode those values to the very same bytes; then
//! many generated messages encoded by levee must parse with the official classes, survive their
//! proto3 JSON (which drops any field the class does not know) and serialize back to levee's
//! bytes, which levee decodes to the original.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::peers::peers_python;
use levee::backend::etcd::*;
use levee::backend::rls::*;
use levee::backend::Message;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

fn run_peer(roundtrip: &[(&str, Vec<u8>)]) -> Value {
    let script = harness::crate_root().join("tests/peers/codec_peer.py");
    let mut child = Command::new(peers_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the codec peer");
    let items: Vec<Value> = roundtrip
        .iter()
        .map(|(t, b)| json!({ "type": t, "hex": hex(b) }))
        .collect();
    let input = json!({ "roundtrip": items }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "codec peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn header() -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 11,
        member_id: 12,
        revision: 13,
        raft_term: 14,
    })
}

fn kv(key: &[u8]) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b"record\x00\xff".to_vec(),
        lease: -5,
    }
}

/// Decodes the official bytes to `want`, then encodes `want` to the official bytes.
fn check<M: Message + PartialEq + std::fmt::Debug>(
    fixtures: &Value,
    name: &str,
    want: M,
    same_bytes: bool,
) {
    let bytes = unhex(
        fixtures[name]
            .as_str()
            .unwrap_or_else(|| panic!("fixture {name}")),
    );
    assert_eq!(
        M::decode(&bytes).unwrap(),
        want,
        "decoding the official {name}"
    );
    if same_bytes {
        assert_eq!(
            hex(&want.encode()),
            hex(&bytes),
            "levee's encoding of {name}"
        );
    }
}

#[test]
fn messages_built_by_the_official_classes_decode_to_the_same_values_and_bytes() {
    let peer = run_peer(&[]);
    let f = &peer["fixtures"];
    let claim = TxnRequest {
        compare: vec![Compare::absent(b"levee/k")],
        success: vec![RequestOp::Put(PutRequest {
            key: b"levee/k".to_vec(),
            value: b"v".to_vec(),
            lease: 7,
            ..PutRequest::default()
        })],
        failure: vec![RequestOp::Range(RangeRequest {
            key: b"levee/k".to_vec(),
            ..RangeRequest::default()
        })],
    };
    check(f, "txn_claim", claim, true);

    let fenced = TxnRequest {
        compare: vec![
            Compare::mod_revision_is(b"k", 42),
            Compare::new(b"k", CompareResult::Greater, CompareTarget::Version(3)),
            Compare {
                range_end: b"z".to_vec(),
                ..Compare::new(
                    b"k",
                    CompareResult::NotEqual,
                    CompareTarget::Value(b"v".to_vec()),
                )
            },
            Compare::new(b"k", CompareResult::Less, CompareTarget::Lease(9)),
        ],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"w".to_vec(),
                lease: 0,
                prev_kv: true,
                ignore_value: true,
                ignore_lease: true,
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                prev_kv: true,
            }),
        ],
        failure: vec![RequestOp::Range(RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            limit: 5,
            serializable: true,
            keys_only: true,
            count_only: true,
        })],
    };
    check(f, "txn_fenced", fenced, true);

    let resp = TxnResponse {
        header: header(),
        succeeded: false,
        responses: vec![
            ResponseOp::Range(RangeResponse {
                header: header(),
                kvs: vec![kv(b"levee/k")],
                more: true,
                count: 2,
            }),
            ResponseOp::Put(PutResponse {
                header: header(),
                prev_kv: Some(kv(b"levee/k")),
            }),
            ResponseOp::DeleteRange(DeleteRangeResponse {
                header: header(),
                deleted: 1,
                prev_kvs: vec![kv(b"levee/j")],
            }),
        ],
    };
    check(f, "txn_response", resp, true);

    let ok = TxnResponse {
        header: Some(ResponseHeader {
            revision: -1,
            ..header().unwrap()
        }),
        succeeded: true,
        responses: vec![ResponseOp::Put(PutResponse {
            header: Some(ResponseHeader {
                revision: 99,
                ..ResponseHeader::default()
            }),
            prev_kv: None,
        })],
    };
    check(f, "txn_response_succeeded", ok, true);
    check(
        f,
        "lease_grant_request",
        LeaseGrantRequest { ttl: 60, id: 0 },
        true,
    );
    let lease = LeaseGrantResponse {
        header: header(),
        id: 7587,
        ttl: 60,
        error: "x".to_string(),
    };
    check(f, "lease_grant_response", lease, true);

    let entry = |k: &str, v: &str| Entry {
        key: k.to_string(),
        value: v.to_string(),
    };
    let req = RateLimitRequest {
        domain: "levee".to_string(),
        descriptors: vec![
            Descriptor {
                entries: vec![entry("levee_limit", "per-api-key"), entry("key", "abc")],
                limit: Some(LimitOverride {
                    requests_per_unit: 100,
                    unit: Unit::Minute,
                }),
                hits_addend: Some(3),
            },
            Descriptor {
                entries: vec![entry("a", "b")],
                limit: None,
                hits_addend: Some(0),
            },
        ],
        hits_addend: 2,
    };
    check(f, "rls_request", req, true);

    let header_value = |k: &str, v: &str, raw: &[u8]| HeaderValue {
        key: k.to_string(),
        value: v.to_string(),
        raw_value: raw.to_vec(),
    };
    let resp = RateLimitResponse {
        overall_code: Code::OverLimit,
        statuses: vec![
            DescriptorStatus {
                code: Code::Ok,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: 100,
                    unit: Unit::Minute,
                    name: "per-api-key".to_string(),
                }),
                limit_remaining: 99,
                duration_until_reset: Some(ProtoDuration {
                    seconds: 12,
                    nanos: 500_000_000,
                }),
                quota: Some(Quota {
                    requests: 5,
                    valid_until: Some(ProtoDuration {
                        seconds: 1_700_000_000,
                        nanos: 1,
                    }),
                    id: "q".to_string(),
                }),
            },
            DescriptorStatus {
                code: Code::OverLimit,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: 1,
                    unit: Unit::Week,
                    name: String::new(),
                }),
                limit_remaining: 0,
                duration_until_reset: None,
                quota: None,
            },
        ],
        response_headers_to_add: vec![
            header_value("X-RateLimit-Limit", "10", b""),
            header_value("X-RateLimit-Raw", "", b"\x01\x02"),
        ],
        request_headers_to_add: vec![header_value("x-seen", "1", b"")],
        raw_body: b"slow down".to_vec(),
        quota: Some(Quota {
            requests: 1,
            valid_until: None,
            id: String::new(),
        }),
    };
    check(f, "rls_response", resp, true);

    // `dynamic_metadata` (a google.protobuf.Struct) is not modelled: skipped, the rest read.
    let limitador = RateLimitResponse {
        overall_code: Code::Ok,
        response_headers_to_add: vec![header_value("X-RateLimit-Remaining", "4", b"")],
        ..RateLimitResponse::default()
    };
    check(f, "rls_response_with_metadata", limitador, false);
}

/// A small deterministic generator (xorshift), so the cases are the same on every run.
struct Gen(u64);

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
enum Any {
    TxnRequest(TxnRequest),
    TxnResponse(TxnResponse),
    LeaseGrantRequest(LeaseGrantRequest),
    LeaseGrantResponse(LeaseGrantResponse),
    RateLimitRequest(RateLimitRequest),
    RateLimitResponse(RateLimitResponse),
}

impl Any {
    fn generate(g: &mut Gen, i: usize) -> Any {
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

    fn type_and_bytes(&self) -> (&'static str, Vec<u8>) {
        match self {
            Any::TxnRequest(m) => ("TxnRequest", m.encode()),
            Any::TxnResponse(m) => ("TxnResponse", m.encode()),
            Any::LeaseGrantRequest(m) => ("LeaseGrantRequest", m.encode()),
            Any::LeaseGrantResponse(m) => ("LeaseGrantResponse", m.encode()),
            Any::RateLimitRequest(m) => ("RateLimitRequest", m.encode()),
            Any::RateLimitResponse(m) => ("RateLimitResponse", m.encode()),
        }
    }

    fn decode_like(&self, b: &[u8]) -> Any {
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

#[test]
fn generated_messages_encoded_by_levee_survive_the_official_classes_unchanged() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let cases: Vec<Any> = (0..600).map(|i| Any::generate(&mut g, i)).collect();
    let encoded: Vec<(&str, Vec<u8>)> = cases.iter().map(Any::type_and_bytes).collect();
    let peer = run_peer(&encoded);
    let answers = peer["roundtrip"].as_array().unwrap();
    assert_eq!(answers.len(), cases.len());
    for ((case, (ty, ours)), answer) in cases.iter().zip(&encoded).zip(answers) {
        let theirs = answer["hex"].as_str().unwrap_or_else(|| {
            panic!(
                "the official {ty} refused {}: {answer} ({case:?})",
                hex(ours)
            )
        });
        assert_eq!(
            theirs,
            hex(ours),
            "{ty} re-serialized by the official class: {case:?}"
        );
        assert_eq!(&case.decode_like(&unhex(theirs)), case);
    }
}
