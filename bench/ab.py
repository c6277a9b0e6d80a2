#!/usr/bin/env python3
"""A/B of two levee.wasm builds in one Envoy under callgrind: instructions per request, side by side.

    ENVOY_BIN=… python3 bench/ab.py BASE.wasm NEW.wasm [--requests 400] [--out DIR]

`make profile` runs each build in its own Envoy, and two runs of one build read up to ±1 k
instructions apart (V8's state differs from start to start). Here both builds are loaded into
one Envoy, each scenario-1 variant (typical, five limits) gets a listener per build, and every
variant is measured twice in mirrored order (base, new, new, base): differences of a few
hundred instructions per request become visible. Prints each measurement and the means, with
the instructions of V8-generated code (levee's own wasm) beside the totals. ENVOY_BIN must be
the real Envoy binary (`$(cat target/envoy-*.path)`), as for `make profile`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import envoy as E  # noqa: E402
from benchlib import variants as V  # noqa: E402
from benchlib.callgraph import read  # noqa: E402
from benchlib.callgrind import CallgrindEnvoy, ensure_valgrind  # noqa: E402
from hostcalls import is_jit  # noqa: E402
from profile import named  # noqa: E402

VARIANTS = ("levee_typical", "levee_five")
# Base and new alternate, mirrored, so that neither build always runs first.
ORDER = (("base", 0), ("new", 0), ("base", 1), ("new", 1), ("new", 1), ("base", 1), ("new", 0), ("base", 0))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--out", type=Path, default=None, help="where callgrind's dumps go (a temporary folder)")
    args = p.parse_args()
    ensure_valgrind()
    out = args.out or Path(tempfile.mkdtemp(prefix="levee-ab-"))
    by_key = {v.key: v for v in V.scenario1()}
    builds = {"base": args.base, "new": args.new}
    listeners = []
    for tag, wasm in builds.items():
        for key in VARIANTS:
            name = f"{key}_{tag}"
            filters = named(by_key[key].filters({"levee": wasm, "noop": None}), name)
            listeners.append(E.listener(name, E.direct_route(), filters))
    envoy = CallgrindEnvoy(os.environ["ENVOY_BIN"], out, listeners)
    envoy.start()
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        for tag, v in ORDER:
            key = VARIANTS[v]
            name = f"{key}_{tag}"
            r = envoy.per_request(name, args.requests, headers=by_key[key].request.headers)
            graph = read(r["dump"])
            jit = sum(val for f, val in graph.own.items() if is_jit(graph, f)) / r["requests"]
            results.setdefault(name, []).append((r["instructions_per_request"], jit))
            print(f"{name}: {r['instructions_per_request'] / 1000:.2f} k, JIT code {jit / 1000:.2f} k", flush=True)
    finally:
        envoy.stop()
    print()
    for key in VARIANTS:
        means = {}
        for tag in builds:
            xs = results[f"{key}_{tag}"]
            means[tag] = (sum(x for x, _ in xs) / len(xs), sum(j for _, j in xs) / len(xs))
        (b, bj), (n, nj) = means["base"], means["new"]
        print(f"{key}: base {b / 1000:.2f} k → new {n / 1000:.2f} k ({(n - b) / 1000:+.2f} k); "
              f"JIT code {bj / 1000:.2f} k → {nj / 1000:.2f} k")
    return 0


if __name__ == "__main__":
    sys.exit(main())
