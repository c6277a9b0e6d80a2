"""A rate limit service for tests: envoy.service.ratelimit.v3 ShouldRateLimit on a real Redis,
with envoyproxy/ratelimit's semantics, and faults a test can switch on.

Semantics (as envoyproxy/ratelimit's Redis cache):
- a descriptor's limit is its `limit` override if it has one, else the first configured rule
  of the request's domain whose entries match (a rule value of null matches any value, and each
  value counts apart); a domain absent from the config limits nothing (OK, no current_limit);
- fixed windows aligned to the unit: the counter key is domain + entries + the window's start,
  `INCRBY hits` then `EXPIRE unit`, so hits are counted even when over the limit;
- hits: the descriptor's `hits_addend` when present (may be 0), else the request's, at least 1;
- per descriptor: OK or OVER_LIMIT, current_limit, limit_remaining, duration_until_reset
  (the unit minus the seconds elapsed in the window); overall OVER_LIMIT if any is.

Usage: rls_peer.py --redis-port P --config JSON. Prints "ready <grpc port> <control port>".
Control (HTTP on 127.0.0.1): PUT /fault {"delay_ms", "grpc_status" (e.g. "UNAVAILABLE"),
"overall_unknown", "no_statuses"} (the object replaces the previous one; {} clears it);
GET /calls -> {"calls": n, "requests": [last 200 requests as proto3 JSON]};
GET /counters -> {redis key: value}.
"""

import argparse
import json
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import json_format

R = rls_pb2.RateLimitResponse
UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400, 7: 604800}
UNIT_NAMES = {"SECOND": 1, "MINUTE": 2, "HOUR": 3, "DAY": 4, "WEEK": 7}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.fault = {}
        self.calls = 0
        self.requests = []

    def record(self, request):
        with self.lock:
            self.calls += 1
            self.requests.append(json_format.MessageToDict(request, preserving_proto_field_name=True))
            del self.requests[:-200]
            return dict(self.fault)


class Service(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, redis_client, config, state):
        self.redis = redis_client
        self.config = config  # [{"domain", "entries": [[key, value|None]], "requests_per_unit", "unit", "name"}]
        self.state = state

    def limit_for(self, domain, descriptor):
        """(requests_per_unit, unit number, name) or None."""
        if not any(rule["domain"] == domain for rule in self.config):
            return None
        if descriptor.HasField("limit"):
            return (descriptor.limit.requests_per_unit, descriptor.limit.unit, "")
        pairs = [(e.key, e.value) for e in descriptor.entries]
        for rule in self.config:
            entries = rule["entries"]
            if rule["domain"] != domain or len(entries) != len(pairs):
                continue
            if all(k == rk and (rv is None or v == rv) for (k, v), (rk, rv) in zip(pairs, entries)):
                return (rule["requests_per_unit"], UNIT_NAMES[rule["unit"]], rule.get("name", ""))
        return None

    def ShouldRateLimit(self, request, context):
        fault = self.state.record(request)
        if fault.get("delay_ms"):
            time.sleep(fault["delay_ms"] / 1000)
        if fault.get("grpc_status"):
            context.abort(getattr(grpc.StatusCode, fault["grpc_status"]), "injected by the test")
        if fault.get("overall_unknown"):
            return R(overall_code=R.UNKNOWN)

        now = int(time.time())
        plans = []
        pipe = self.redis.pipeline(transaction=False)
        for d in request.descriptors:
            limit = self.limit_for(request.domain, d)
            if limit is None or limit[1] not in UNIT_SECONDS:
                plans.append(None)
                continue
            unit_s = UNIT_SECONDS[limit[1]]
            hits = d.hits_addend.value if d.HasField("hits_addend") else max(1, request.hits_addend)
            window = now - now % unit_s
            key = "_".join([request.domain] + [f"{e.key}_{e.value}" for e in d.entries] + [str(window)])
            pipe.incrby(key, hits)
            pipe.expire(key, unit_s)
            plans.append((limit, unit_s, hits))
        counts = pipe.execute()[0::2]

        response = R(overall_code=R.OK)
        headers = None
        for plan in plans:
            if plan is None:
                response.statuses.add(code=R.OK)
                continue
            (per_unit, unit, name), unit_s, hits = plan
            after = counts.pop(0)
            over = after > per_unit
            status = response.statuses.add(
                code=R.OVER_LIMIT if over else R.OK,
                limit_remaining=0 if over else per_unit - after)
            status.current_limit.requests_per_unit = per_unit
            status.current_limit.unit = unit
            status.current_limit.name = name
            status.duration_until_reset.seconds = unit_s - now % unit_s
            if over:
                response.overall_code = R.OVER_LIMIT
            if headers is None:
                headers = (per_unit, unit_s, status.limit_remaining, unit_s - now % unit_s)
        if fault.get("no_statuses"):
            # As Limitador answers: no statuses, the draft-03 headers instead.
            del response.statuses[:]
            if headers is not None:
                per_unit, unit_s, remaining, reset = headers
                response.response_headers_to_add.add(key="X-RateLimit-Limit", value=f"{per_unit}, {per_unit};w={unit_s}")
                response.response_headers_to_add.add(key="X-RateLimit-Remaining", value=str(remaining))
                response.response_headers_to_add.add(key="X-RateLimit-Reset", value=str(reset))
        return response


def control_handler(state, redis_client):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, obj):
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)) or 0)
            if self.path == "/fault":
                with state.lock:
                    state.fault = json.loads(body or b"{}")
                self.reply({"fault": state.fault})
            else:
                self.send_error(404)

        do_POST = do_PUT

        def do_GET(self):
            if self.path == "/calls":
                with state.lock:
                    self.reply({"calls": state.calls, "requests": list(state.requests)})
            elif self.path == "/counters":
                keys = redis_client.keys("*")
                self.reply({k.decode(): int(redis_client.get(k) or 0) for k in keys})
            else:
                self.send_error(404)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--config", default="[]")
    args = parser.parse_args()
    # No client-side retries: a Redis outage fails the call at once, as the test expects.
    redis_client = redis.Redis(
        host="127.0.0.1", port=args.redis_port, socket_timeout=1, socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0))
    state = State()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
        Service(redis_client, json.loads(args.config), state), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    control = ThreadingHTTPServer(("127.0.0.1", 0), control_handler(state, redis_client))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(f"ready {grpc_port} {control.server_address[1]}", flush=True)
    # Exit with the test: the harness closes stdin (or dies).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
