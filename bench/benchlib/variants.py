"""What each benchmark variant runs: the Envoy filter chain, levee's plugin JSON, the request.

All scenario-1 variants answer from a `direct_response` route and receive the very same
request (`GET /` with `x-user: bench-user`), so the only difference between them is the filter.
Every limit is so high that nothing is ever rejected: the filters do all their work and admit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import envoy as E
from .load import Request

NEVER = 1_000_000_000  # levee's largest `limit`: a bucket that never runs dry at bench rates
USER_HEADER = "x-user"
S1_REQUEST = Request(headers={USER_HEADER: "bench-user"})


def _limit(name: str, key: list[str]) -> dict:
    return {"name": name, "key": key, "algorithm": "token_bucket", "limit": NEVER, "window": "1s"}


LEVEE_EMPTY: dict = {}

# Per-IP token bucket that never rejects + a breaker on the route's upstream (router mode:
# levee observes each answer) + idempotency on POST (GETs only pay for the method match).
LEVEE_TYPICAL = {
    "rate_limits": [_limit("per-ip", ["source_ip"])],
    "idempotency": {"methods": ["POST"]},
    "upstreams": {"backend": {"forward": "router", "circuit_breaker": {}}},
    "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
}

LEVEE_FIVE_LIMITS = {
    "rate_limits": [
        _limit("per-ip", ["source_ip"]),
        _limit("per-user", [f"header:{USER_HEADER}"]),
        _limit("per-path", ["method", "path"]),
        _limit("per-user-path", [f"header:{USER_HEADER}", "path"]),
        _limit("global", []),
    ],
}

LEVEE_ROUTER = {
    "upstreams": {"backend": {"forward": "router", "circuit_breaker": {}}},
    "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
}

LEVEE_CALLOUT = {
    "upstreams": {"backend": {"forward": "callout", "cluster": "upstream", "timeout": "5s",
                              "circuit_breaker": {}}},
    "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
}

LEVEE_IDEMPOTENCY = {"idempotency": {"methods": ["POST"]}}


def levee_memory(max_tracked_keys: int) -> dict:
    return {"limits": {"max_tracked_keys": max_tracked_keys},
            "rate_limits": [_limit("per-user", [f"header:{USER_HEADER}"])]}


# Global limits: one hot key (every request carries the same `x-user`), a token bucket so
# large that nothing is rejected during a run (1,000,000 per hour, also the service's
# window), local-only vs. kept mesh-wide by the rate limit service in `exact` / `reserve` mode.
RLS_CLUSTER = "ratelimit"
GLOBAL_LIMIT = 1_000_000


def levee_hot_key(mode: str | None) -> dict:
    limit = {"name": "hot", "key": [f"header:{USER_HEADER}"], "algorithm": "token_bucket",
             "limit": GLOBAL_LIMIT, "window": "1h"}
    if mode is None:
        return {"rate_limits": [limit]}
    limit["global"] = {"backend": "limits", "mode": mode, "on_backend_error": "local"}
    return {"backends": {"limits": {"rls": {"cluster": RLS_CLUSTER, "domain": "levee", "timeout": "1s"}}},
            "rate_limits": [limit]}


@dataclass
class Variant:
    key: str
    label: str
    filter: str  # "none" | "native" | "noop" | "levee"
    plugin: dict | None = None
    request: Request = field(default_factory=lambda: S1_REQUEST)
    max_dynamic: int = 65536
    expect_header: str | None = None  # the probe's answer must carry it (proof the feature ran)
    na: str | None = None  # why this variant cannot run (set at start-up)

    def filters(self, wasm: dict[str, Path | None]) -> list[dict]:
        if self.filter == "none":
            return []
        if self.filter == "native":
            return [E.native_local_ratelimit(USER_HEADER, self.max_dynamic)]
        path = wasm[self.filter]
        if path is None:
            raise FileNotFoundError(f"{self.filter} wasm not found")
        plugin = json.dumps(self.plugin if self.plugin is not None else {})
        return [E.wasm_filter(path, plugin, "levee" if self.filter == "levee" else "noop")]

    def plugin_text(self) -> str | None:
        return None if self.plugin is None else json.dumps(self.plugin, separators=(",", ":"))


def scenario1() -> list[Variant]:
    return [
        Variant("none", "no filter", "none"),
        Variant("native", "native local_ratelimit (per-client descriptor)", "native"),
        Variant("noop", "no-op wasm filter", "noop", {}),
        Variant("levee_empty", "levee `{}`", "levee", LEVEE_EMPTY),
        Variant("levee_typical", "levee typical (per-IP bucket + breaker + idempotency on POST)", "levee", LEVEE_TYPICAL),
        Variant("levee_five", "levee, five matching limits", "levee", LEVEE_FIVE_LIMITS),
    ]


POST_BODY = '{"amount":42}'


def scenario2() -> list[Variant]:
    post = Request(method="POST", headers={"content-type": "application/json"}, body=POST_BODY,
                   unique="Idempotency-Key", prefix="key-")
    get = Request()
    return [
        Variant("router", "Envoy router → upstream", "none", request=get),
        Variant("levee_router", "levee router mode (route + breaker)", "levee", LEVEE_ROUTER, request=get),
        Variant("levee_callout", "levee callout mode (route + breaker)", "levee", LEVEE_CALLOUT, request=get,
                expect_header="x-levee-attempts"),
        Variant("router_post", "Envoy router, POST with a unique Idempotency-Key (no filter)", "none", request=post),
        Variant("levee_idem_post", "levee idempotency, POST with a unique key each", "levee", LEVEE_IDEMPOTENCY,
                request=post, expect_header="x-idempotency-key"),
    ]


def scenario3(max_tracked_keys: int) -> list[Variant]:
    return [
        Variant("noop", "no-op wasm filter (Envoy alone)", "noop", {}),
        Variant("native", f"native local_ratelimit, max_dynamic_descriptors {max_tracked_keys}", "native",
                max_dynamic=max_tracked_keys),
        Variant("levee", f"levee per-user token bucket, max_tracked_keys {max_tracked_keys}", "levee",
                levee_memory(max_tracked_keys)),
    ]


def global_limits() -> list[Variant]:
    return [
        Variant("local_only", "levee token bucket, hot key, local only", "levee", levee_hot_key(None)),
        Variant("global_exact", "same limit, global `exact` (one service call per request)", "levee",
                levee_hot_key("exact")),
        Variant("global_reserve", "same limit, global `reserve` (one call per batch)", "levee",
                levee_hot_key("reserve")),
    ]


# Keyed POSTs with the records in this Envoy's shared data vs. in etcd (one member on
# loopback). Each request carries a distinct Idempotency-Key, so each is a real claim and
# completion; the replay variants send one key over and over (every request after the first
# is answered from the record). The etcd timeout is generous so a busy 2-CPU machine measures
# latency, not timeouts.
ETCD_CLUSTER = "etcd"
KEY_HEADER = "Idempotency-Key"


def levee_keyed(backend: str) -> dict:
    idem = {"methods": ["POST"]}
    if backend == "shared":
        return {"idempotency": idem}
    return {"backends": {"records": {"etcd": {"cluster": ETCD_CLUSTER, "timeout": "2s"}}},
            "idempotency": {**idem, "backend": "records"}}


def keyed_posts() -> list[Variant]:
    unique = Request(method="POST", headers={"content-type": "application/json"}, body=POST_BODY,
                     unique=KEY_HEADER, prefix="key-")
    same = Request(method="POST", headers={"content-type": "application/json", KEY_HEADER: "replayed-key"},
                   body=POST_BODY)
    return [
        Variant("router_post", "Envoy router, POST with a distinct Idempotency-Key (no filter)", "none",
                request=unique),
        Variant("shared_post", "levee, records in shared data, a distinct key each", "levee",
                levee_keyed("shared"), request=unique, expect_header="x-idempotency-key"),
        Variant("etcd_post", "levee, records in etcd, a distinct key each", "levee", levee_keyed("etcd"),
                request=unique, expect_header="x-idempotency-key"),
        Variant("shared_replay", "levee, records in shared data, the same key (replays)", "levee",
                levee_keyed("shared"), request=same, expect_header="x-idempotency-key"),
        Variant("etcd_replay", "levee, records in etcd, the same key (replays)", "levee", levee_keyed("etcd"),
                request=same, expect_header="x-idempotency-key"),
    ]
