#!/usr/bin/env python3
"""`make profile`: what levee costs Envoy per request, in instructions, and where it goes.

    python3 bench/profile.py                 # host-call costs, scenario-1 and -2 variants
    python3 bench/profile.py --parts calls   # only the host-call table
    python3 bench/profile.py --requests 500

Counts the instructions Envoy executes per request under callgrind (bench/benchlib/callgrind.py):
deterministic, so a change to levee's request path can be measured on a busy machine, where
`make bench`'s req/s move by ±10 %. Four parts:

- calls: what each kind of host call costs, from bench/hostcall-probe (the same call made
  20 times per request; the difference to the probe making none, divided by 20);
- s1: the scenario-1 filter chains of `make bench` (direct_response);
- s2: router vs. levee router mode vs. levee callout mode through a real upstream;
- headers: one per-IP limit under each `rate_limit_headers` mode (none, x-ratelimit, ietf, both).
- global (only when asked: `--parts global`): a hot-key token bucket local only, and global in
  `exact` and `reserve` mode against the rate limit service (needs redis-server, `make peers`).
- etcd (only when asked: `--parts etcd`): keyed POSTs through an upstream, each with a distinct
  Idempotency-Key, with levee's records in shared data vs. in etcd, and the same key over and
  over (replays) in both (needs etcd: `make etcd`).

Writes bench/results/profile.md and profile.json. Slow: Envoy compiles levee.wasm under
valgrind (2–5 min per part). Needs valgrind (installed from Debian when missing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import envoy as E  # noqa: E402
from benchlib import variants as V  # noqa: E402
from benchlib.callgrind import CallgrindEnvoy, ensure_valgrind  # noqa: E402
from benchlib.peers import Etcd, RateLimitService  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RELEASE = REPO / "target/wasm32-wasip1/release"
# LEVEE_WASM / NOOP_WASM override the built files (as for `make bench`): profile another build.
LEVEE_WASM = Path(os.environ.get("LEVEE_WASM", RELEASE / "levee.wasm"))
NOOP_WASM = Path(os.environ.get("NOOP_WASM", RELEASE / "noop_filter.wasm"))
CALLS = 20
PROBE_KINDS = ["none", "property", "header_map", "header", "absent_header", "shared_get", "shared_set",
               "metric", "metric_get", "response_header", "response_replace", "response_status", "time"]
PROBE_LABELS = {
    "property": "get_property(source.address)",
    "header_map": "get_header_map_pairs (whole request map)",
    "header": "get_header_map_value (one request header)",
    "absent_header": "get_header_map_value (a request header that is not there)",
    "shared_get": "get_shared_data (17-byte value)",
    "shared_set": "set_shared_data (17-byte value)",
    "metric": "increment_metric",
    "metric_get": "get_metric",
    "response_header": "add_header_map_value (response)",
    "response_replace": "replace_header_map_value (response)",
    "response_status": "get_header_map_value (response `:status`)",
    "time": "get_current_time_nanoseconds",
}


def named(filters: list[dict], name: str) -> list[dict]:
    """Gives each wasm plugin its listener's name: one Envoy runs them all, VMs shared by vm_id."""
    for f in filters:
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["name"] = name
    return filters


def part_calls(envoy_bin: str, work: Path, n: int) -> dict:
    probe = RELEASE / "hostcall_probe.wasm"
    listeners = [E.listener(f"probe_{k}", E.direct_route(),
                            named([E.wasm_filter(probe, f"{k}:{0 if k == 'none' else CALLS}", "hostcall-probe")], f"probe_{k}"))
                 for k in PROBE_KINDS]
    env = CallgrindEnvoy(envoy_bin, work / "calls", listeners)
    env.start()
    try:
        raw = {k: env.per_request(f"probe_{k}", n, headers={"x-user": "bench-user"}) for k in PROBE_KINDS}
    finally:
        env.stop()
    base = raw["none"]["instructions_per_request"]
    rows = [{"call": k, "label": PROBE_LABELS[k],
             "instructions_per_call": (raw[k]["instructions_per_request"] - base) / CALLS}
            for k in PROBE_KINDS if k != "none"]
    return {"probe_floor_per_request": base, "rows": rows, "raw": raw}


def part_s1(envoy_bin: str, work: Path, n: int) -> dict:
    wasm = {"levee": LEVEE_WASM, "noop": NOOP_WASM}
    listeners = [E.listener(v.key, E.direct_route(), named(v.filters(wasm), v.key)) for v in V.scenario1()]
    env = CallgrindEnvoy(envoy_bin, work / "s1", listeners)
    env.start()
    try:
        rows = {v.key: dict(env.per_request(v.key, n, headers=v.request.headers), label=v.label)
                for v in V.scenario1()}
    finally:
        env.stop()
    return {"rows": rows}


HEADER_MODES = ["none", "x-ratelimit", "ietf", "both"]


def part_headers(envoy_bin: str, work: Path, n: int) -> dict:
    """One per-IP token bucket that never rejects, once per `rate_limit_headers` mode: what
    each mode's response headers cost (the difference to "none")."""
    variants = [V.Variant(f"headers_{m}", f"per-IP bucket, rate_limit_headers \"{m}\"", "levee",
                          {"rate_limit_headers": m, "rate_limits": V.LEVEE_TYPICAL["rate_limits"]})
                for m in HEADER_MODES]
    wasm = {"levee": LEVEE_WASM, "noop": None}
    listeners = [E.listener(v.key, E.direct_route(), named(v.filters(wasm), v.key)) for v in variants]
    env = CallgrindEnvoy(envoy_bin, work / "headers", listeners)
    env.start()
    try:
        rows = {v.key: dict(env.per_request(v.key, n, headers=v.request.headers), label=v.label)
                for v in variants}
    finally:
        env.stop()
    return {"rows": rows}


def part_s2(envoy_bin: str, work: Path, n: int) -> dict:
    upstream = E.Envoy("s2-upstream", E.bootstrap([E.listener("up", E.direct_route(), [])]),
                       work, envoy_bin, None).start()
    wasm = {"levee": LEVEE_WASM, "noop": None}
    variants = [v for v in V.scenario2() if v.key in ("router", "levee_router", "levee_callout")]
    listeners = [E.listener(v.key, E.cluster_route("upstream"), named(v.filters(wasm), v.key)) for v in variants]
    env = CallgrindEnvoy(envoy_bin, work / "s2", listeners, [E.cluster("upstream", upstream.port)])
    try:
        env.start()
        rows = {v.key: dict(env.per_request(v.key, n, headers=v.request.headers), label=v.label)
                for v in variants}
    finally:
        env.stop()
        upstream.stop()
    return {"rows": rows}


def part_global(envoy_bin: str, work: Path, n: int) -> dict:
    """A hot-key token bucket: local only, and kept mesh-wide in `exact` and `reserve` mode
    against the rate limit service (Redis + tests/peers/rls_peer.py on free loopback ports)."""
    wasm = {"levee": RELEASE / "levee.wasm", "noop": None}
    service = RateLimitService(REPO, work / "global-peer").start()
    variants = V.global_limits()
    listeners = [E.listener(v.key, E.direct_route(), named(v.filters(wasm), v.key)) for v in variants]
    env = CallgrindEnvoy(envoy_bin, work / "global", listeners, [E.h2_cluster(V.RLS_CLUSTER, service.grpc_port)])
    try:
        env.start()
        rows = {}
        for v in variants:
            before = service.calls() or 0
            rows[v.key] = dict(env.per_request(v.key, n, headers=v.request.headers), label=v.label)
            # Calls during warm-up and measured requests together: an upper bound for the run.
            rows[v.key]["service_calls"] = (service.calls() or 0) - before
    finally:
        env.stop()
        service.stop()
    return {"rows": rows}


def part_etcd(envoy_bin: str, work: Path, n: int) -> dict:
    """Keyed POSTs through an upstream: no filter, levee with its records in shared data, and in
    etcd (one member on loopback), a distinct key per request; then one key over and over
    (replays). Under valgrind the completion that follows each answer needs a moment to land:
    each dump waits 3 s for it (idle Envoy: ~0.1 k instructions per request of noise)."""
    wasm = {"levee": LEVEE_WASM, "noop": None}
    etcd = Etcd(work / "etcd").start()
    upstream = E.Envoy("etcd-upstream", E.bootstrap([E.listener("up", E.direct_route(), [])]),
                       work, envoy_bin, None).start()
    variants = V.keyed_posts()
    listeners = [E.listener(v.key, E.cluster_route("upstream"), named(v.filters(wasm), v.key)) for v in variants]
    env = CallgrindEnvoy(envoy_bin, work / "etcd-envoy", listeners,
                         [E.cluster("upstream", upstream.port), E.h2_cluster(V.ETCD_CLUSTER, etcd.client_port)])
    try:
        env.start()
        rows = {}
        for v in variants:
            r = v.request
            rows[v.key] = dict(env.per_request(v.key, n, headers=r.headers, method=r.method, body=r.body,
                                               unique=r.unique, settle=3.0), label=v.label)
            rows[v.key]["levee_counters"] = {name.split("wasmcustom.")[-1]: value for name, value in
                                             env_stats(env, v.key).items() if value}
    finally:
        env.stop()
        upstream.stop()
        etcd.stop()
    return {"rows": rows}


def env_stats(env: CallgrindEnvoy, key: str) -> dict[str, int]:
    """levee's counters of the Envoy under callgrind (all listeners share them: cumulative)."""
    import urllib.request
    try:
        admin = (env.dir / "admin.txt").read_text().strip()
        with urllib.request.urlopen(f"http://{admin}/stats?filter=levee_(idempotency|backend)", timeout=60) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name.strip()] = int(value)
    return out


def k(x: float) -> str:
    return f"{x / 1000:.1f} k"


def markdown(res: dict) -> str:
    out = ["# levee profile — instructions per request (callgrind)", "",
           f"{res['meta']['date']}; Envoy {res['meta']['envoy_version']} `--concurrency 1` under "
           f"valgrind {res['meta']['valgrind']}; {res['meta']['requests']} requests per variant on one "
           "keep-alive connection after a warm-up. Instructions are exact and do not depend on "
           "machine load; they are not time (cache misses and V8's code quality are not weighed).", ""]
    if "calls" in res:
        c = res["calls"]
        out += ["## What one host call costs Envoy", "",
                f"bench/hostcall-probe makes one kind of call {CALLS} times per request; per call = "
                f"(its instructions per request − the probe making none, {k(c['probe_floor_per_request'])}) ÷ {CALLS}.",
                "", "| host call | instructions per call |", "|---|---|"]
        out += [f"| {r['label']} | {r['instructions_per_call'] / 1000:.1f} k |" for r in c["rows"]]
        out.append("")
    for part, title, bases in (("s1", "Scenario 1 (direct_response)", ("none", "native", "noop")),
                               ("s2", "Scenario 2 (through an upstream)", ("router", "levee_router")),
                               ("headers", "Rate-limit header modes (direct_response)", ("headers_none",)),
                               ("global", "Global limits on a hot key (direct_response)", ("local_only",)),
                               ("etcd", "Keyed POSTs: records in shared data vs. in etcd (through an upstream)",
                                ("router_post", "shared_post"))):
        if part not in res:
            continue
        rows = res[part]["rows"]
        head = "| variant | instructions per request | " + " | ".join(f"over {b}" for b in bases) + \
               " | " + " | ".join(f"ratio vs. {b}" for b in bases) + " |"
        out += [f"## {title}", "", "Ratio = baseline instructions ÷ variant instructions (the "
                "throughput ratio if Envoy were bound by instructions alone).", "", head,
                "|---|---|" + "---|" * (2 * len(bases))]
        for key, r in rows.items():
            ir = r["instructions_per_request"]
            over = " | ".join(k(ir - rows[b]["instructions_per_request"]) for b in bases if b in rows)
            ratio = " | ".join(f"{rows[b]['instructions_per_request'] / ir:.3f}" for b in bases if b in rows)
            out.append(f"| {r['label']} | {k(ir)} | {over} | {ratio} |")
        if part == "etcd":
            out += ["", "levee's counters after each variant (cumulative over the variants) and statuses: " + "; ".join(
                f"{key} {r['statuses']} {r.get('levee_counters')}" for key, r in rows.items())]
        if part == "global":
            out += ["", "Service calls (warm-up and measured requests) and statuses: " + "; ".join(
                f"{key} {r.get('service_calls')} calls, {r['statuses']}" for key, r in rows.items())]
        out.append("")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="calls,s1,s2,headers", help="calls, s1, s2, headers, global, etcd (default calls,s1,s2,headers; global needs "
                   "redis-server and `make peers`, etcd needs `make etcd`)")
    p.add_argument("--requests", type=int, default=300, help="requests per variant (default 300)")
    p.add_argument("--out", default=str(BENCH / "results"))
    a = p.parse_args()
    envoy_bin = E.find_envoy(REPO)
    valgrind = ensure_valgrind()
    if envoy_bin is None or valgrind is None:
        print("needs Envoy (ENVOY_BIN / make envoy) and valgrind", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="levee-profile-"))
    parts = {s.strip() for s in a.parts.split(",")}
    res: dict = {"meta": {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                          "envoy_version": E.envoy_version(envoy_bin), "requests": a.requests,
                          "valgrind": subprocess.run([valgrind, "--version"], capture_output=True,
                                                     text=True).stdout.strip()}}
    for name, fn in (("calls", part_calls), ("s1", part_s1), ("s2", part_s2), ("headers", part_headers), ("global", part_global),
                     ("etcd", part_etcd)):
        if name in parts:
            print(f"profile part {name}: starting Envoy under callgrind (minutes)…", flush=True)
            res[name] = fn(envoy_bin, work, a.requests)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    (out / "profile.md").write_text(md + "\n")
    (out / "profile.json").write_text(json.dumps(res, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
