#!/usr/bin/env python3
"""`make bench`: levee's cost per request and memory, side by side with Envoy's native filters.

    python3 bench/run.py            # full run (5 rounds × 10 s per variant, ~20 min)
    python3 bench/run.py --quick    # smoke run (3 rounds × 2 s, fewer memory keys, ~4 min)
    python3 bench/run.py --scenarios 1,3 --rounds 7
    python3 bench/run.py --scenarios g  # global limits (exact / reserve) vs. local only
    python3 bench/run.py --scenarios e  # keyed POSTs: records in shared data vs. in etcd

Environment: ENVOY_BIN (else .venv/bin/envoy, else `envoy` on PATH), LEVEE_WASM (else
target/wasm32-wasip1/release/levee.wasm), NOOP_WASM (else target/wasm32-wasip1/release/
noop_filter.wasm). A missing wasm makes its variants "n/a"; wrk is installed if missing.
Writes bench/results/latest.md and latest.json and prints the report. Python 3.11 stdlib only.
It is a benchmark, not a test: a FAIL target is reported, never an exit status. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import envoy as E  # noqa: E402
from benchlib import report, scenarios  # noqa: E402
from benchlib.load import ensure_wrk  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 3 rounds × 2 s, memory to 300k keys")
    p.add_argument("--scenarios", default="1,2,3,4", help="which scenarios to run (default 1,2,3,4; g: global limits, "
                   "only when named, needs redis-server and `make peers`; e: keyed POSTs with records in "
                   "shared data vs. etcd, only when named, needs etcd: `make etcd`)")
    p.add_argument("--rounds", type=int, help="interleaved rounds for throughput (default 5; quick 3)")
    p.add_argument("--seconds", type=float, help="seconds per variant per round (default 10; quick 2)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections for throughput (default 16)")
    p.add_argument("--lat-rounds", type=int, help="rounds for latency (default 3)")
    p.add_argument("--lat-connections", type=int, default=8, help="connections for latency (default 8)")
    p.add_argument("--lat-delay-ms", type=int, default=1, help="think time per connection (default 1 ms)")
    p.add_argument("--mem-keys", help="cumulative distinct keys (default 10000,100000,1000000; quick ...,300000)")
    p.add_argument("--max-tracked-keys", type=int, default=65536, help="levee limits.max_tracked_keys (65536)")
    p.add_argument("--envoy-cpu", type=int, help="CPU for the Envoys under test (default: first allowed)")
    p.add_argument("--load-cpu", type=int, help="CPU for wrk (default: second allowed)")
    p.add_argument("--upstream-cpu", type=int, help="CPU for scenario 2's upstream (default: third, else wrk's)")
    p.add_argument("--out", default=str(BENCH / "results"), help="where latest.md / latest.json go")
    p.add_argument("--keep", action="store_true", help="keep the work directory (Envoy configs and logs)")
    return p.parse_args()


def pick_cpus(a: argparse.Namespace) -> tuple[int | None, int | None, int | None, str]:
    allowed = sorted(os.sched_getaffinity(0))
    if not shutil.which("taskset") or len(allowed) < 2:
        return None, None, None, f"none (taskset missing or only {len(allowed)} CPU): numbers are not isolated"
    envoy = a.envoy_cpu if a.envoy_cpu is not None else allowed[0]
    load = a.load_cpu if a.load_cpu is not None else allowed[1]
    upstream = a.upstream_cpu if a.upstream_cpu is not None else (allowed[2] if len(allowed) > 2 else load)
    text = f"Envoy under test on CPU {envoy}, wrk on CPU {load}, scenario-2 upstream Envoy on CPU {upstream}"
    if upstream == load:
        text += " (sharing wrk's CPU: only 2 CPUs)"
    return envoy, load, upstream, text


def wasm_path(env: str, default: str) -> Path | None:
    path = Path(os.environ.get(env) or REPO / default)
    return path if path.is_file() else None


def sha(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path else None


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _interrupt(signum, frame):  # SIGTERM (e.g. make killed): stop our Envoys on the way out
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    a = parse_args()
    which = {s.strip() for s in a.scenarios.split(",") if s.strip()}
    envoy_bin = E.find_envoy(REPO)
    if envoy_bin is None:
        print("no Envoy: set ENVOY_BIN or run `make envoy`", file=sys.stderr)
        return 2
    wrk = ensure_wrk()
    wasm = {"levee": wasm_path("LEVEE_WASM", "target/wasm32-wasip1/release/levee.wasm"),
            "noop": wasm_path("NOOP_WASM", "target/wasm32-wasip1/release/noop_filter.wasm")}
    mem_default = "10000,100000,300000" if a.quick else "10000,100000,1000000"
    envoy_cpu, load_cpu, upstream_cpu, pinning = pick_cpus(a)
    workdir = Path(tempfile.mkdtemp(prefix="levee-bench-"))
    ctx = scenarios.Ctx(
        envoy_bin=envoy_bin, wrk=wrk, wasm=wasm, workdir=workdir,
        envoy_cpu=envoy_cpu, load_cpu=load_cpu, upstream_cpu=upstream_cpu,
        rounds=a.rounds or (3 if a.quick else 5), seconds=a.seconds or (2 if a.quick else 10),
        warmup=1 if a.quick else 2, connections=a.connections,
        lat_rounds=a.lat_rounds or 3, lat_connections=a.lat_connections, lat_delay_ms=a.lat_delay_ms,
        mem_keys=sorted(int(k) for k in (a.mem_keys or mem_default).split(",")),
        max_tracked_keys=a.max_tracked_keys)
    for name, path in wasm.items():
        print(f"{name} wasm: {path or 'not found (its variants are n/a; `make build` / `make noop`)'}")
    print(f"envoy: {envoy_bin}; pinning: {pinning}; work dir: {workdir}", flush=True)

    res: dict = {"meta": {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": "quick" if a.quick else "full", "rounds": ctx.rounds, "seconds": ctx.seconds,
        "connections": ctx.connections, "envoy": envoy_bin, "envoy_version": E.envoy_version(envoy_bin),
        "pinning": pinning, "cpus": len(os.sched_getaffinity(0)), "loadavg_before": loadavg(),
        "wasm": {k: {"path": str(v) if v else None, "sha256_16": sha(v)} for k, v in wasm.items()},
    }}
    if a.quick:
        res["meta"]["warning"] = "Quick smoke run: short rounds, numbers are indicative only."
    try:
        if which & {"1", "4"}:
            s1, s4 = scenarios.scenario1_and_4(ctx, "1" in which, "4" in which)
            res["scenario1"], res["scenario4"] = s1, s4
        if "2" in which:
            res["scenario2"] = scenarios.scenario2(ctx)
        if "3" in which:
            res["scenario3"] = scenarios.scenario3(ctx)
        if "g" in which:
            res["scenario_g"] = scenarios.scenario_global(ctx, REPO)
        if "e" in which:
            res["scenario_e"] = scenarios.scenario_etcd(ctx)
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
        res["meta"]["warning"] = "Interrupted run: incomplete."
    res["meta"]["loadavg_after"] = loadavg()
    res["targets"] = report.targets(res)
    res["log"] = ctx.log

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    md = report.markdown(res)
    (out / "latest.md").write_text(md)
    (out / "latest.json").write_text(json.dumps(res, indent=1) + "\n")
    print("\n" + md)
    for t in res["targets"]:
        print(f"{t['result']:4s}  {t['target']}: {t['measured']}")
    print(f"\nwritten: {out / 'latest.md'}, {out / 'latest.json'}")
    if a.keep:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
