"""Targets (PASS / FAIL / n/a) and the markdown report. A benchmark, not a test: a FAIL is
information for the reader, never an exit status."""

from __future__ import annotations

MIB = 1024 * 1024


def _row(section: dict | None, key: str) -> dict | None:
    if not section:
        return None
    return next((r for r in section["rows"] if r["key"] == key), None)


def _ratio_target(name: str, section: dict | None, key: str, base: str, floor: float) -> dict:
    row = _row(section, key)
    base_row = _row(section, base)
    why = None
    if section is None:
        why = "scenario not run"
    elif row is None or row.get("na") or "ratios" not in row:
        why = f"{key}: {row.get('na') if row else 'missing'}"
    elif base_row is None or base_row.get("na"):
        why = f"{base}: {base_row.get('na') if base_row else 'missing'}"
    elif base not in row["ratios"]:
        why = "no paired rounds"
    if why:
        return {"target": name, "result": "n/a", "measured": why}
    r = row["ratios"][base]
    c = row.get("cpu_ratios", {}).get(base)
    cpu = f" (from Envoy CPU per request: {c:.3f})" if c else ""
    return {"target": name, "result": "PASS" if r >= floor else "FAIL", "measured": f"{r:.3f} × {base}{cpu}",
            "value": r, "cpu_value": c, "floor": floor}


def memory_targets(s3: dict | None) -> list[dict]:
    name_flat = "levee RSS flat once the table is full"
    name_bound = "levee RSS growth within the bound max_tracked_keys implies"
    row = _row(s3, "levee")
    if row is None or row.get("na") or len(row.get("points", [])) < 2:
        why = "scenario not run" if s3 is None else (row or {}).get("na") or "too few points"
        return [{"target": name_flat, "result": "n/a", "measured": why},
                {"target": name_bound, "result": "n/a", "measured": why}]
    pts = row["points"]
    full = next((p for p in pts if p["keys"] >= 100_000 and p is not pts[-1]), pts[-2])
    last = pts[-1]
    growth = (last["rss_kib"] - full["rss_kib"]) * 1024
    tolerance = max(4 * MIB, 0.03 * full["rss_kib"] * 1024)
    flat = {"target": f"{name_flat} ({full['keys']:,} → {last['keys']:,} keys)",
            "result": "PASS" if growth <= tolerance else "FAIL",
            "measured": f"{growth / MIB:+.1f} MiB (tolerance {tolerance / MIB:.1f} MiB)", "value": growth}
    bound = row.get("gauge_bound_bytes")
    # What levee costs beyond any wasm filter: RSS over the no-op filter's at the same key count
    # (levee's tables, its larger module and heap), else growth over its own warm baseline.
    noop = _row(s3, "noop")
    noop_last = next((p for p in (noop or {}).get("points", []) if p["keys"] == last["keys"]), None)
    if noop_last:
        total, over = (last["rss_kib"] - noop_last["rss_kib"]) * 1024, "over the no-op filter"
    else:
        total, over = (last["rss_kib"] - row["baseline"]["VmRSS"]) * 1024, "over levee's warm baseline"
    if not bound:
        within = {"target": name_bound, "result": "n/a", "measured": "no levee_memory_bound_bytes gauge"}
    else:
        allowed = 1.5 * bound + 16 * MIB
        within = {"target": f"{name_bound} ({last['keys']:,} keys)",
                  "result": "PASS" if total <= allowed else "FAIL",
                  "measured": f"{total / MIB:+.1f} MiB {over}; bound {bound / MIB:.1f} MiB "
                              f"(allowed 1.5 × bound + 16 MiB = {allowed / MIB:.1f})", "value": total}
    return [flat, within]


def targets(res: dict) -> list[dict]:
    s1, s2 = res.get("scenario1"), res.get("scenario2")
    return [
        _ratio_target("levee `{}` ≥ 0.95 × no-op wasm", s1, "levee_empty", "noop", 0.95),
        _ratio_target("levee typical ≥ 0.75 × native local_ratelimit", s1, "levee_typical", "native", 0.75),
        _ratio_target("levee callout ≥ 0.75 × levee router mode", s2, "levee_callout", "levee_router", 0.75),
        *memory_targets(res.get("scenario3")),
    ]


def _k(x: float) -> str:
    return f"{x / 1000:.1f}k"


def _ratio(row: dict, base: str, field: str = "ratios") -> str:
    r = row.get(field, {}).get(base)
    return "—" if r is None else f"{r:.3f}"


def _throughput_table(section: dict, bases: list[tuple[str, str]]) -> list[str]:
    head = ("| variant | req/s (median) | min – max | " + " | ".join(f"vs. {t}" for _, t in bases)
            + " | Envoy CPU µs/req | " + " | ".join(f"CPU-based vs. {t}" for _, t in bases) + " | errors |")
    lines = [head, "|" + "---|" * (5 + len(bases) + len(bases))]
    for row in section["rows"]:
        if row.get("na"):
            lines.append(f"| {row['label']} | n/a: {row['na'][:150]} |" + " |" * (3 + len(bases) + len(bases)))
            continue
        errs = f"{row['errors']}" + (f" ({row['error_rate']:.1%})" if row["errors"] else "")
        cpu = f"{row['cpu_us_per_req']:.1f}" if row.get("cpu_us_per_req") else "—"
        lines.append(f"| {row['label']} | {_k(row['rps_median'])} | {_k(row['rps_min'])} – {_k(row['rps_max'])} | "
                     + " | ".join(_ratio(row, b) for b, _ in bases) + f" | {cpu} | "
                     + " | ".join(_ratio(row, b, "cpu_ratios") for b, _ in bases) + f" | {errs} |")
    return lines


def _counters(section: dict) -> list[str]:
    """One line per variant with its filter's non-zero counters: proof that each filter did
    its work, and admitted everything (no rejections, no internal errors)."""
    lines = []
    for key, stats in (section.get("checks") or {}).items():
        shown = ", ".join(f"{k.replace('wasmcustom.', '')} {v:,}" for k, v in sorted(stats.items()))
        lines.append(f"- `{key}`: {shown}")
    return ["", "Filter counters after the run:", "", *lines] if lines else []


def _keyed_posts(se: dict) -> list[str]:
    """Scenario e: latency (with what levee adds over the router) and throughput of keyed
    POSTs, records in shared data vs. in etcd."""
    out = ["", "## Keyed POSTs: records in shared data vs. in etcd", "", f"Method: {se['method']}. "
           "Medians over rounds of wrk's per-run percentiles; *added* is over the router alone (no filter).", "",
           "| variant | p50 | p99 | added p50 / p99 | req/s achieved | errors |", "|---|---|---|---|---|---|"]
    base = next((r for r in se["latency"] if r["key"] == "router_post" and not r.get("na")), None)
    for row in se["latency"]:
        if row.get("na"):
            out.append(f"| {row['label']} | n/a: {row['na'][:150]} | | | | |")
            continue
        added = (f"{row['p50_us'] - base['p50_us']:+.0f} / {row['p99_us'] - base['p99_us']:+.0f} µs"
                 if base and row is not base else "—")
        out.append(f"| {row['label']} | {row['p50_us']:.0f} µs | {row['p99_us']:.0f} µs | {added} | "
                   f"{_k(row['rps_median'])} | {row['errors']} |")
    out += ["", "Throughput:", ""]
    out += _throughput_table(se, [("router_post", "router POST"), ("shared_post", "shared data"),
                                  ("shared_replay", "shared-data replay")])
    out += ["", f"Requests the upstream received during the runs: {se.get('upstream_requests')}"]
    return out + _counters(se)


def markdown(res: dict) -> str:
    m = res["meta"]
    out = [f"# levee benchmark — {m['date']}", "",
           f"{m['mode']} run: {m['rounds']} interleaved rounds × {m['seconds']} s per variant, wrk -t1 "
           f"-c{m['connections']}; Envoy {m['envoy_version']} `--concurrency 1`. Pinning: {m['pinning']}. "
           f"Load average before / after: {m['loadavg_before']} / {m['loadavg_after']} on {m['cpus']} CPU(s). "
           "Ratios are medians of per-round ratios (variant and baseline measured in the same round).", ""]
    if m.get("warning"):
        out += [f"> {m['warning']}", ""]
    out += ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
    out += [f"| {t['target']} | {t['measured']} | **{t['result']}** |" for t in res["targets"]]
    if res.get("scenario1"):
        out += ["", "## 1. Throughput, direct_response (no upstream)", ""]
        out += _throughput_table(res["scenario1"], [("none", "no filter"), ("noop", "no-op wasm"),
                                                    ("native", "native")])
        out += _counters(res["scenario1"])
    if res.get("scenario2"):
        out += ["", "## 2. Throughput through a real upstream (a second Envoy answering directly)", ""]
        out += _throughput_table(res["scenario2"], [("router", "router"), ("levee_router", "levee router"),
                                                    ("router_post", "router POST")])
        out += _counters(res["scenario2"])
    s3 = res.get("scenario3")
    if s3:
        keys = s3["keys"]
        out += ["", f"## 3. Envoy RSS with distinct `x-user` keys (max_tracked_keys = {s3['max_tracked_keys']:,})", "",
                "| variant | warm baseline | " + " | ".join(f"{k:,} keys" for k in keys) + " | peak | levee bound |",
                "|" + "---|" * (4 + len(keys))]
        for row in s3["rows"]:
            if row.get("na") and not row.get("points"):
                out.append(f"| {row['label']} | n/a: {row['na'][:150]} |" + " |" * (2 + len(keys)))
                continue
            pts = {p["keys"]: p for p in row["points"]}
            cells = [f"{pts[k]['rss_kib'] / 1024:.1f} MiB" if k in pts else "—" for k in keys]
            peak = max((p["hwm_kib"] for p in row["points"]), default=0) / 1024
            bound = row.get("gauge_bound_bytes")
            out.append(f"| {row['label']} | {row.get('baseline', {}).get('VmRSS', 0) / 1024:.1f} MiB | "
                       + " | ".join(cells) + f" | {peak:.1f} MiB | "
                       + (f"{bound / MIB:.1f} MiB" if bound else "—") + " |")
        for row in s3["rows"]:
            if row.get("log_bound"):
                out.append(f"\nlevee's log: `{row['log_bound']}`")
    s4 = res.get("scenario4")
    if s4:
        out += ["", "## 4. Latency at a moderate fixed load (scenario-1 variants)", "",
                f"Method: {s4['method']}. Medians over rounds of wrk's per-run percentiles.", "",
                "| variant | p50 | p99 | p99.9 | req/s achieved | p99 vs. no filter |", "|---|---|---|---|---|---|"]
        base = next((r for r in s4["rows"] if r["key"] == "none" and not r.get("na")), None)
        for row in s4["rows"]:
            if row.get("na"):
                out.append(f"| {row['label']} | n/a: {row['na'][:150]} | | | | |")
                continue
            rel = f"{row['p99_us'] / base['p99_us']:.2f} ×" if base and base["p99_us"] else "—"
            out.append(f"| {row['label']} | {row['p50_us']:.0f} µs | {row['p99_us']:.0f} µs | "
                       f"{row['p999_us']:.0f} µs | {_k(row['rps_median'])} | {rel} |")
    sg = res.get("scenario_g")
    if sg:
        out += ["", "## Global limits on a hot key (latency)", "",
                f"Method: {sg['method']}. Medians over rounds of wrk's per-run percentiles. "
                f"Calls the rate limit service answered during the measured rounds: {sg.get('service_calls')}.", "",
                "| variant | p50 | p99 | p99.9 | req/s achieved | p50 / p99 vs. local only | errors |",
                "|---|---|---|---|---|---|---|"]
        base = next((r for r in sg["rows"] if r["key"] == "local_only" and not r.get("na")), None)
        for row in sg["rows"]:
            if row.get("na"):
                out.append(f"| {row['label']} | n/a: {row['na'][:150]} | | | | | |")
                continue
            rel = (f"{row['p50_us'] / base['p50_us']:.2f} × / {row['p99_us'] / base['p99_us']:.2f} ×"
                   if base and base["p50_us"] and base["p99_us"] else "—")
            out.append(f"| {row['label']} | {row['p50_us']:.0f} µs | {row['p99_us']:.0f} µs | "
                       f"{row['p999_us']:.0f} µs | {_k(row['rps_median'])} | {rel} | {row['errors']} |")
    if res.get("scenario_e"):
        out += _keyed_posts(res["scenario_e"])
    plugins = {}
    for sec in ("scenario1", "scenario2", "scenario3", "scenario_g", "scenario_e"):
        for row in (res.get(sec) or {}).get("rows", []):
            if row.get("plugin") and row["plugin"] != "{}":
                plugins.setdefault(row["plugin"], []).append(f"{sec[-1]}:{row['key']}")
    if plugins:
        out += ["", "## Plugin configurations", ""]
        out += [f"- {', '.join(ks)}: `{p}`" for p, ks in plugins.items()]
    return "\n".join(out) + "\n"
