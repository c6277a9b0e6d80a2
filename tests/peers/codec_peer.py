"""The official protobuf classes, as a peer for levee's hand-written codec (tests/backend_codec.rs).

Reads one JSON object on stdin: {"roundtrip": [{"type": NAME, "hex": BYTES}, ...]}.
Writes one JSON object on stdout:
  "fixtures":  {case: hex}  messages built field by field with the official classes, which
               levee must decode to known values and re-encode to the same bytes;
  "roundtrip": [{"hex": ...} | {"error": ...}]  each input parsed by the official class, passed
               through proto3 JSON (so fields the class does not know are dropped) and serialized
               again.

Classes: envoy.service.ratelimit.v3 from PyPI xds-protos; etcdserverpb from the etcd3 package's
generated rpc_pb2 (old generated code: needs PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python).
"""

import json
import os
import sys

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import etcd3  # noqa: E402  (only to find the package; its generated code is imported below)
sys.path.insert(0, os.path.join(os.path.dirname(etcd3.__file__), "etcdrpc"))

import kv_pb2  # noqa: E402
import rpc_pb2  # noqa: E402
from envoy.service.ratelimit.v3 import rls_pb2  # noqa: E402
from google.protobuf import json_format  # noqa: E402

TYPES = {
    "TxnRequest": rpc_pb2.TxnRequest,
    "TxnResponse": rpc_pb2.TxnResponse,
    "LeaseGrantRequest": rpc_pb2.LeaseGrantRequest,
    "LeaseGrantResponse": rpc_pb2.LeaseGrantResponse,
    "RateLimitRequest": rls_pb2.RateLimitRequest,
    "RateLimitResponse": rls_pb2.RateLimitResponse,
}


def header(h):
    h.cluster_id, h.member_id, h.revision, h.raft_term = 11, 12, 13, 14


def full_kv(kv, key=b"levee/k"):
    kv.key, kv.create_revision, kv.mod_revision = key, 2, 3
    kv.version, kv.value, kv.lease = 4, b"record\x00\xff", -5


def fixtures():
    out = {}
    C = rpc_pb2.Compare

    claim = rpc_pb2.TxnRequest()
    c = claim.compare.add(result=C.EQUAL, target=C.CREATE, key=b"levee/k")
    c.create_revision = 0  # a oneof member holding 0 is still set
    claim.success.add().request_put.CopyFrom(rpc_pb2.PutRequest(key=b"levee/k", value=b"v", lease=7))
    claim.failure.add().request_range.CopyFrom(rpc_pb2.RangeRequest(key=b"levee/k"))
    out["txn_claim"] = claim

    fenced = rpc_pb2.TxnRequest()
    fenced.compare.add(result=C.EQUAL, target=C.MOD, key=b"k", mod_revision=42)
    fenced.compare.add(result=C.GREATER, target=C.VERSION, key=b"k", version=3)
    fenced.compare.add(result=C.NOT_EQUAL, target=C.VALUE, key=b"k", value=b"v", range_end=b"z")
    fenced.compare.add(result=C.LESS, target=C.LEASE, key=b"k", lease=9)
    fenced.success.add().request_put.CopyFrom(rpc_pb2.PutRequest(
        key=b"k", value=b"w", prev_kv=True, ignore_value=True, ignore_lease=True))
    fenced.success.add().request_delete_range.CopyFrom(rpc_pb2.DeleteRangeRequest(
        key=b"a", range_end=b"b", prev_kv=True))
    fenced.failure.add().request_range.CopyFrom(rpc_pb2.RangeRequest(
        key=b"a", range_end=b"\x00", limit=5, serializable=True, keys_only=True, count_only=True))
    out["txn_fenced"] = fenced

    resp = rpc_pb2.TxnResponse(succeeded=False)
    header(resp.header)
    rng = resp.responses.add().response_range
    header(rng.header)
    full_kv(rng.kvs.add())
    rng.more, rng.count = True, 2
    put = resp.responses.add().response_put
    header(put.header)
    full_kv(put.prev_kv)
    dele = resp.responses.add().response_delete_range
    header(dele.header)
    dele.deleted = 1
    full_kv(dele.prev_kvs.add(), key=b"levee/j")
    out["txn_response"] = resp

    ok = rpc_pb2.TxnResponse(succeeded=True)
    header(ok.header)
    ok.header.revision = -1
    ok.responses.add().response_put.header.revision = 99
    out["txn_response_succeeded"] = ok

    out["lease_grant_request"] = rpc_pb2.LeaseGrantRequest(TTL=60, ID=0)
    lg = rpc_pb2.LeaseGrantResponse(ID=7587, TTL=60, error="x")
    header(lg.header)
    out["lease_grant_response"] = lg

    req = rls_pb2.RateLimitRequest(domain="levee", hits_addend=2)
    d = req.descriptors.add()
    d.entries.add(key="levee_limit", value="per-api-key")
    d.entries.add(key="key", value="abc")
    d.limit.requests_per_unit, d.limit.unit = 100, 2  # MINUTE
    d.hits_addend.value = 3
    d2 = req.descriptors.add()
    d2.entries.add(key="a", value="b")
    d2.hits_addend.SetInParent()  # present, holding 0
    out["rls_request"] = req

    R = rls_pb2.RateLimitResponse
    resp = R(overall_code=R.OVER_LIMIT, raw_body=b"slow down")
    s = resp.statuses.add(code=R.OK, limit_remaining=99)
    s.current_limit.requests_per_unit, s.current_limit.unit = 100, R.RateLimit.MINUTE
    s.current_limit.name = "per-api-key"
    s.duration_until_reset.seconds, s.duration_until_reset.nanos = 12, 500000000
    s.quota.requests, s.quota.id = 5, "q"
    s.quota.valid_until.seconds, s.quota.valid_until.nanos = 1700000000, 1
    s2 = resp.statuses.add(code=R.OVER_LIMIT)
    s2.current_limit.requests_per_unit, s2.current_limit.unit = 1, R.RateLimit.WEEK
    resp.response_headers_to_add.add(key="X-RateLimit-Limit", value="10")
    resp.response_headers_to_add.add(key="X-RateLimit-Raw", raw_value=b"\x01\x02")
    resp.request_headers_to_add.add(key="x-seen", value="1")
    resp.quota.requests = 1
    out["rls_response"] = resp

    limitador = R(overall_code=R.OK)
    limitador.response_headers_to_add.add(key="X-RateLimit-Remaining", value="4")
    limitador.dynamic_metadata.update({"ignored": "by levee"})
    out["rls_response_with_metadata"] = limitador

    return {name: m.SerializeToString(deterministic=True).hex() for name, m in out.items()}


def roundtrip(item):
    cls = TYPES[item["type"]]
    try:
        m = cls.FromString(bytes.fromhex(item["hex"]))
        again = json_format.ParseDict(
            json_format.MessageToDict(m, preserving_proto_field_name=True), cls())
        return {"hex": again.SerializeToString(deterministic=True).hex()}
    except Exception as e:  # the official parser refused the bytes
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    request = json.load(sys.stdin)
    json.dump({
        "fixtures": fixtures(),
        "roundtrip": [roundtrip(i) for i in request.get("roundtrip", [])],
    }, sys.stdout)


if __name__ == "__main__":
    main()
