#!/usr/bin/env python3
"""Where a variant's instructions go, host call by host call, from `make profile`'s dumps.

    python3 bench/hostcalls.py                      # reads bench/results/profile.json
    python3 bench/hostcalls.py path/to/profile.json --variants levee_typical,levee_five

`make profile` keeps each variant's callgrind dump (its path is in profile.json). Envoy's
binary is stripped, so this first names the functions that implement each proxy-wasm host
call: in the dump of bench/hostcall-probe making one kind of call 20 times per request, every
host call enters one dispatcher (V8's C-API callback) and, three calls below it, the host
function itself, called exactly 20 × requests times. Then, for each levee variant: every host
function under the dispatcher with its calls per request and the instructions spent inside it
(inclusive, including Envoy's call back into the VM that allocates a returned value), the
dispatcher's own overhead per call, the JIT-compiled wasm code's own instructions (levee's
functions) and the rest. Writes bench/results/hostcalls.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.callgraph import CallGraph, read  # noqa: E402

BENCH = Path(__file__).resolve().parent
CALLS = 20
DEPTH = 3  # dispatcher -> signature adapter -> argument adapter -> host function
EXPORTS = {
    "property": "get_property",
    "header_map": "get_header_map_pairs",
    "header": "get_header_map_value",
    "absent_header": "get_header_map_value",
    "response_status": "get_header_map_value",
    "shared_get": "get_shared_data",
    "shared_set": "set_shared_data",
    "metric": "increment_metric",
    "metric_get": "get_metric",
    "response_header": "add_header_map_value",
    "response_replace": "replace_header_map_value",
    "time": "get_current_time_nanoseconds",
}
RETURNS_DATA = ("property", "header", "shared_get", "header_map")


def is_jit(g: CallGraph, fn: str) -> bool:
    """Code V8 generated at run time (wasm functions, wrappers): no object, high address."""
    try:
        return g.obj.get(fn) == "???" and int(fn.split("'")[0], 16) >= 1 << 32
    except ValueError:
        return False


def below(g: CallGraph, root: str, depth: int, calls: int | None = None) -> dict[str, tuple[int, int]]:
    """Functions exactly `depth` calls below `root` (with exactly `calls` calls, if given)."""
    level = {root}
    for _ in range(depth - 1):
        level = {b for a in level for b, n, _ in g.callees(a) if calls is None or n == calls}
    found: dict[str, tuple[int, int]] = {}
    for a in level:
        for b, n, i in g.callees(a):
            if calls is None or n == calls:
                fn, fi = found.get(b, (0, 0))
                found[b] = (fn + n, fi + i)
    return found


def identify(calls_part: dict) -> tuple[str, dict[str, str], str]:
    """(dispatcher, {host function: name}, VM re-entry) from the probe's dumps."""
    raw = calls_part["raw"]
    graphs = {k: read(v["dump"]) for k, v in raw.items() if k != "none" and k in EXPORTS}
    exact = {k: {f for f, c in g.calls.items() if c == CALLS * raw[k]["requests"]} for k, g in graphs.items()}
    common = set.intersection(*exact.values())
    some = next(iter(graphs.values()))
    dispatcher = max((f for f in common if not is_jit(some, f) and some.obj.get(f) != "???"),
                     key=lambda f: some.inclusive[f])
    names: dict[str, str] = {}
    for k, g in graphs.items():
        n = CALLS * raw[k]["requests"]
        candidates = below(g, dispatcher, DEPTH, n)
        if candidates:
            fn = max(candidates, key=lambda f: candidates[f][1])
            names.setdefault(fn, EXPORTS[k])
    # The call back into the VM: below every data-returning host function, below no other.
    reentry_sets = [{b for b, n, _ in graphs[k].callees(f)}
                    for k in RETURNS_DATA if k in graphs
                    for f, name in names.items() if name == EXPORTS[k]]
    shared = set.intersection(*reentry_sets) if reentry_sets else set()
    g = graphs.get("shared_get", some)
    reentry = max(shared, key=lambda f: g.inclusive[f]) if shared else ""
    return dispatcher, names, reentry


def breakdown(g: CallGraph, n: int, dispatcher: str, names: dict[str, str], reentry: str) -> dict:
    rows = []
    exports = below(g, dispatcher, DEPTH)
    named = 0
    for fn, (calls, incl) in sorted(exports.items(), key=lambda x: -x[1][1]):
        if fn not in names:
            continue
        re_calls = sum(c for b, c, _ in g.callees(fn) if b == reentry)
        re_incl = sum(i for b, _, i in g.callees(fn) if b == reentry)
        rows.append({"call": names[fn], "fn": fn, "per_request": calls / n, "inclusive": incl / n,
                     "per_call": incl / calls, "reentries": re_calls / n, "reentry_inclusive": re_incl / n})
        named += incl
    host = g.inclusive[dispatcher]
    host_calls = g.calls[dispatcher]
    wasm = sum(v for f, v in g.own.items() if is_jit(g, f))
    return {"total": g.total / n, "host": host / n, "host_calls": host_calls / n,
            "overhead_per_call": (host - named) / host_calls if host_calls else 0.0,
            "wasm_own": wasm / n, "rows": rows}


def markdown(results: dict, labels: dict) -> str:
    out = ["# Host calls per request (callgrind, from `make profile`'s dumps)", "",
           "Inclusive = instructions inside the host function, including Envoy's call back into "
           "the VM (`proxy_on_memory_allocate`) that places a returned value. *Dispatch* is V8's "
           "C-API callback and argument adapters around every host call. *JIT code* is the "
           "instructions of V8-generated code (levee's wasm functions and V8's wrappers), wherever "
           "it runs, including the allocator during a call back.", ""]
    base = results.get("noop")
    for key, r in results.items():
        out += [f"## {labels.get(key, key)}", "",
                f"{r['total'] / 1000:.1f} k per request; host calls {r['host_calls']:.0f} "
                f"({r['host'] / 1000:.1f} k with dispatch, {r['overhead_per_call']:.0f} per call); "
                f"JIT code {r['wasm_own'] / 1000:.1f} k"
                + (f" (no-op filter {base['wasm_own'] / 1000:.1f} k)" if base and key != "noop" else ""), ""]
        if r["rows"]:
            out += ["| host call | calls per request | inclusive per request | per call | of which VM call-backs |",
                    "|---|---|---|---|---|"]
            out += [f"| {x['call']} | {x['per_request']:.2f} | {x['inclusive'] / 1000:.1f} k | "
                    f"{x['per_call'] / 1000:.2f} k | {x['reentries']:.2f} × = {x['reentry_inclusive'] / 1000:.1f} k |"
                    for x in r["rows"]]
            out.append("")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", nargs="?", default=str(BENCH / "results/profile.json"))
    p.add_argument("--variants", default="noop,levee_empty,levee_typical,levee_five")
    p.add_argument("--out", default=str(BENCH / "results/hostcalls.md"))
    a = p.parse_args()
    prof = json.loads(Path(a.profile).read_text())
    if "calls" not in prof:
        print("profile.json has no `calls` part: run make profile with it", file=sys.stderr)
        return 2
    dispatcher, names, reentry = identify(prof["calls"])
    results, labels = {}, {}
    wanted = [v.strip() for v in a.variants.split(",")]
    for part in ("s1", "s2", "headers", "global"):
        for key, row in prof.get(part, {}).get("rows", {}).items():
            if key in wanted and row.get("dump"):
                results[key] = breakdown(read(row["dump"]), row["requests"], dispatcher, names, reentry)
                labels[key] = row.get("label", key)
    md = markdown({k: results[k] for k in wanted if k in results}, labels)
    Path(a.out).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
