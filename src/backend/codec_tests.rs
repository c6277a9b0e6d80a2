//! Property tests of the backend codecs: every message survives encode → decode unchanged,
//! and decoding arbitrary or mutated bytes returns a value or an error, never a panic.

use super::etcd::*;
use super::rls::*;
use super::wire::{DecodeError, Message};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..12)
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9_\\-é]{0,8}"
}

fn header() -> impl Strategy<Value = ResponseHeader> {
    (any::<u64>(), any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(c, m, r, t)| {
        ResponseHeader {
            cluster_id: c,
            member_id: m,
            revision: r,
            raft_term: t,
        }
    })
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (
        bytes(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        bytes(),
        any::<i64>(),
    )
        .prop_map(
            |(key, create_revision, mod_revision, version, value, lease)| KeyValue {
                key,
                create_revision,
                mod_revision,
                version,
                value,
                lease,
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::Greater),
        Just(CompareResult::Less),
        Just(CompareResult::NotEqual)
    ];
    let target = prop_oneof![
        any::<i64>().prop_map(CompareTarget::Version),
        any::<i64>().prop_map(CompareTarget::CreateRevision),
        any::<i64>().prop_map(CompareTarget::ModRevision),
        bytes().prop_map(CompareTarget::Value),
        any::<i64>().prop_map(CompareTarget::Lease),
    ];
    (result, target, bytes(), bytes()).prop_map(|(result, target, key, range_end)| Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn request_op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(
            |(key, range_end, limit, b)| {
                RequestOp::Range(RangeRequest {
                    key,
                    range_end,
                    limit,
                    serializable: b[0],
                    keys_only: b[1],
                    count_only: b[2],
                })
            }
        ),
        (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, b)| {
            RequestOp::Put(PutRequest {
                key,
                value,
                lease,
                prev_kv: b[0],
                ignore_value: b[1],
                ignore_lease: b[2],
            })
        }),
        (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
            RequestOp::DeleteRange(DeleteRangeRequest {
                key,
                range_end,
                prev_kv,
            })
        }),
    ]
}

fn txn_request() -> impl Strategy<Value = TxnRequest> {
    (
        vec(compare(), 0..3),
        vec(request_op(), 0..3),
        vec(request_op(), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn response_op() -> impl Strategy<Value = ResponseOp> {
    prop_oneof![
        (
            option::of(header()),
            vec(key_value(), 0..3),
            any::<bool>(),
            any::<i64>()
        )
            .prop_map(
                |(header, kvs, more, count)| ResponseOp::Range(RangeResponse {
                    header,
                    kvs,
                    more,
                    count
                })
            ),
        (option::of(header()), option::of(key_value()))
            .prop_map(|(header, prev_kv)| ResponseOp::Put(PutResponse { header, prev_kv })),
        (option::of(header()), any::<i64>(), vec(key_value(), 0..2)).prop_map(
            |(header, deleted, prev_kvs)| {
                ResponseOp::DeleteRange(DeleteRangeResponse {
                    header,
                    deleted,
                    prev_kvs,
                })
            }
        ),
        Just(ResponseOp::Other),
    ]
}

fn txn_response() -> impl Strategy<Value = TxnResponse> {
    (
        option::of(header()),
        any::<bool>(),
        vec(response_op(), 0..3),
    )
        .prop_map(|(header, succeeded, responses)| TxnResponse {
            header,
            succeeded,
            responses,
        })
}

fn unit() -> impl Strategy<Value = Unit> {
    (0i32..8).prop_map(Unit::from_i32)
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    let entry = (text(), text()).prop_map(|(key, value)| Entry { key, value });
    let limit = (any::<u32>(), unit()).prop_map(|(requests_per_unit, unit)| LimitOverride {
        requests_per_unit,
        unit,
    });
    (
        vec(entry, 0..3),
        option::of(limit),
        option::of(any::<u64>()),
    )
        .prop_map(|(entries, limit, hits_addend)| Descriptor {
            entries,
            limit,
            hits_addend,
        })
}

fn rls_request() -> impl Strategy<Value = RateLimitRequest> {
    (text(), vec(descriptor(), 0..3), any::<u32>()).prop_map(
        |(domain, descriptors, hits_addend)| RateLimitRequest {
            domain,
            descriptors,
            hits_addend,
        },
    )
}

fn code() -> impl Strategy<Value = Code> {
    prop_oneof![Just(Code::Unknown), Just(Code::Ok), Just(Code::OverLimit)]
}

fn duration() -> impl Strategy<Value = ProtoDuration> {
    (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| ProtoDuration { seconds, nanos })
}

fn quota() -> impl Strategy<Value = Quota> {
    (any::<u32>(), option::of(duration()), text()).prop_map(|(requests, valid_until, id)| Quota {
        requests,
        valid_until,
        id,
    })
}

fn status() -> impl Strategy<Value = DescriptorStatus> {
    let limit =
        (any::<u32>(), unit(), text()).prop_map(|(requests_per_unit, unit, name)| CurrentLimit {
            requests_per_unit,
            unit,
            name,
        });
    (
        code(),
        option::of(limit),
        any::<u32>(),
        option::of(duration()),
        option::of(quota()),
    )
        .prop_map(
            |(code, current_limit, limit_remaining, duration_until_reset, quota)| {
                DescriptorStatus {
                    code,
                    current_limit,
                    limit_remaining,
                    duration_until_reset,
                    quota,
                }
            },
        )
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    (text(), text(), bytes()).prop_map(|(key, value, raw_value)| HeaderValue {
        key,
        value,
        raw_value,
    })
}

fn rls_response() -> impl Strategy<Value = RateLimitResponse> {
    (
        code(),
        vec(status(), 0..3),
        vec(header_value(), 0..3),
        vec(header_value(), 0..2),
        bytes(),
        option::of(quota()),
    )
        .prop_map(
            |(overall_code, statuses, resp, req, raw_body, quota)| RateLimitResponse {
                overall_code,
                statuses,
                response_headers_to_add: resp,
                request_headers_to_add: req,
                raw_body,
                quota,
            },
        )
}

/// Decodes `bytes` as every message type; each must return, whatever the bytes.
fn decode_all(bytes: &[u8]) {
    let _ = TxnRequest::decode(bytes);
    let _ = TxnResponse::decode(bytes);
    let _ = LeaseGrantRequest::decode(bytes);
    let _ = LeaseGrantResponse::decode(bytes);
    let _ = RateLimitRequest::decode(bytes);
    let _ = RateLimitResponse::decode(bytes);
}

proptest! {
    #[test]
    fn txn_requests_round_trip(m in txn_request()) {
        prop_assert_eq!(TxnRequest::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn txn_responses_round_trip(m in txn_response()) {
        prop_assert_eq!(TxnResponse::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn lease_grants_round_trip(ttl in any::<i64>(), id in any::<i64>(), h in option::of(header()), error in text()) {
        let req = LeaseGrantRequest { ttl, id };
        prop_assert_eq!(LeaseGrantRequest::decode(&req.encode()), Ok(req));
        let resp = LeaseGrantResponse { header: h, id, ttl, error };
        prop_assert_eq!(LeaseGrantResponse::decode(&resp.encode()), Ok(resp));
    }

    #[test]
    fn rate_limit_requests_round_trip(m in rls_request()) {
        prop_assert_eq!(RateLimitRequest::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn rate_limit_responses_round_trip(m in rls_response()) {
        prop_assert_eq!(RateLimitResponse::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(b in vec(any::<u8>(), 0..256)) {
        decode_all(&b);
    }

    #[test]
    fn mutated_valid_messages_never_panic_the_decoders(
        txn in txn_response(), rls in rls_response(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()
    ) {
        for mut b in [txn.encode(), rls.encode()] {
            if !b.is_empty() {
                let i = at % b.len();
                b[i] = byte;
                b.truncate(cut % (b.len() + 1));
            }
            decode_all(&b);
        }
    }

    #[test]
    fn unknown_fields_are_skipped(m in rls_response(), field in 8u32..1000, payload in bytes()) {
        let mut b = m.encode();
        crate::backend::wire::put_bytes_always(&mut b, field, &payload);
        crate::backend::wire::put_u64_always(&mut b, field + 1000, 7);
        prop_assert_eq!(RateLimitResponse::decode(&b), Ok(m));
    }
}

#[test]
fn a_create_if_absent_compare_writes_the_zero_revision_explicitly() {
    // result EQUAL (0) and the key are as usual; target CREATE = 1, then field 5 holding 0.
    let bytes = Compare::absent(b"k").encode();
    assert_eq!(bytes, [0x10, 0x01, 0x1a, 0x01, b'k', 0x28, 0x00]);
}

#[test]
fn a_string_field_that_is_not_utf8_is_an_error() {
    let bad = [0x0a, 0x02, 0xff, 0xfe];
    assert_eq!(
        RateLimitRequest::decode(&bad),
        Err(DecodeError::InvalidUtf8 {
            message: RateLimitRequest::NAME,
            field: 1
        })
    );
}

#[test]
fn a_known_field_with_another_wire_type_is_an_error() {
    // TxnResponse field 2 (`succeeded`, varint) sent as length-delimited.
    let bad = [0x12, 0x00];
    assert!(matches!(
        TxnResponse::decode(&bad),
        Err(DecodeError::WrongWireType { field: 2, .. })
    ));
}

#[test]
fn unknown_codes_and_units_read_as_unknown() {
    let m = RateLimitResponse::decode(&[0x08, 0x09]).unwrap();
    assert_eq!(m.overall_code, Code::Unknown);
    assert_eq!(Unit::from_i32(99), Unit::Unknown);
}
