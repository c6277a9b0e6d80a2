"""The four scenarios. Each starts its Envoys, measures, stops them and returns plain data.

Throughput and latency are measured in interleaved rounds: every round runs each variant once,
in an order rotated by one per round, so slow drifts of a shared machine (other processes,
thermal, frequency) hit every variant alike. Ratios are taken per round (variant and baseline
measured minutes apart at most) and the median of those paired ratios is reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import envoy as E
from . import peers
from . import variants as V
from .load import Request, probe, run_wrk


@dataclass
class Ctx:
    envoy_bin: str
    wrk: str
    wasm: dict[str, Path | None]
    workdir: Path
    envoy_cpu: int | None
    load_cpu: int | None
    upstream_cpu: int | None
    rounds: int
    seconds: float
    warmup: float
    connections: int
    lat_rounds: int
    lat_connections: int
    lat_delay_ms: int
    mem_keys: list[int]
    max_tracked_keys: int
    log: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        print(msg, flush=True)
        self.log.append(msg)


def start_variants(ctx: Ctx, scenario: str, variants: list[V.Variant], route: dict,
                   clusters: list[dict] | None = None) -> dict[str, E.Envoy]:
    """One Envoy per variant, all pinned to the Envoy CPU; a variant that cannot start or
    whose probe request is not answered 2xx is marked n/a with the reason."""
    envs: dict[str, E.Envoy] = {}
    for v in variants:
        try:
            filters = v.filters(ctx.wasm)
        except FileNotFoundError as e:
            v.na = str(e)
            ctx.say(f"  {v.key}: n/a — {v.na}")
            continue
        env = E.Envoy(f"s{scenario}-{v.key}", E.bootstrap([E.listener("bench", route, filters)], clusters),
                      ctx.workdir, ctx.envoy_bin, ctx.envoy_cpu)
        try:
            env.start()
            status, headers, body = probe(env.port, v.request)
        except (E.EnvoyStartError, OSError) as e:
            v.na = f"did not start: {e}"
            env.stop()
        else:
            if 200 <= status < 300 and (v.expect_header is None or v.expect_header in headers):
                envs[v.key] = env
                continue
            if 200 <= status < 300:
                v.na = (f"not active in this levee.wasm: its answer has no {v.expect_header} header "
                        f"(answered by: {headers.get('x-envoy-upstream-service-time') and 'the router' or 'levee'})")
            else:
                v.na = f"probe answered {status}: {' '.join(body.split())[:160]}"
            env.stop()
        ctx.say(f"  {v.key}: n/a — {v.na}")
    return envs


def interleaved(ctx: Ctx, variants: list[V.Variant], envs: dict[str, E.Envoy], *, rounds: int,
                seconds: float, connections: int, kind: str | None = None,
                extra: list[str] | None = None, tag: str = "") -> dict[str, list[dict | None]]:
    live = [v for v in variants if v.key in envs]
    out: dict[str, list[dict | None]] = {v.key: [] for v in live}
    if ctx.warmup > 0:
        for v in live:
            _one(ctx, v, envs[v.key], ctx.warmup, connections, kind, extra)
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for v in order:
            res = _one(ctx, v, envs[v.key], seconds, connections, kind, extra)
            out[v.key].append(res)
            shown = f"{res['rps']:9.0f} req/s  p50 {res['lat_p50_us']}µs p99 {res['lat_p99_us']}µs" if res else "failed"
            ctx.say(f"  {tag}round {r + 1}/{rounds}  {v.key:16s} {shown}")
    return out


def _one(ctx: Ctx, v: V.Variant, env: E.Envoy, seconds: float, connections: int,
         kind: str | None, extra: list[str] | None) -> dict | None:
    try:
        cpu0 = env.cpu_seconds()
        res = run_wrk(ctx.wrk, env.port, v.request, ctx.workdir, seconds=seconds, connections=connections,
                      cpu=ctx.load_cpu, kind=kind, extra=extra)
        res["cpu_us_per_req"] = (env.cpu_seconds() - cpu0) * 1e6 / res["requests"] if res["requests"] else None
        return res
    except Exception as e:  # noqa: BLE001 — one failed run must not end the benchmark
        ctx.say(f"  {v.key}: wrk run failed: {e}")
        return None


def summarize(variants: list[V.Variant], runs: dict[str, list[dict | None]], baselines: list[str]) -> list[dict]:
    """Per variant: median req/s, spread, latency, errors, and the median of per-round ratios
    against each baseline."""
    rows = []
    for v in variants:
        row = {"key": v.key, "label": v.label, "plugin": v.plugin_text(), "na": v.na}
        ok = [r for r in runs.get(v.key, []) if r]
        if v.na is None and not ok:
            row["na"] = "every run failed"
        if ok:
            rps = [r["rps"] for r in ok]
            reqs = sum(r["requests"] for r in ok)
            row.update({
                "rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
                "rps_rounds": [round(x, 1) for x in rps],
                "p50_us": statistics.median(r["lat_p50_us"] for r in ok),
                "p99_us": statistics.median(r["lat_p99_us"] for r in ok),
                "p999_us": statistics.median(r["lat_p999_us"] for r in ok),
                "errors": sum(r["errors"] for r in ok), "requests": reqs,
                "error_rate": sum(r["errors"] for r in ok) / reqs if reqs else 0.0,
            })
            cpu = [r["cpu_us_per_req"] for r in ok if r.get("cpu_us_per_req")]
            row["cpu_us_per_req"] = statistics.median(cpu) if cpu else None
            row["ratios"], row["cpu_ratios"] = {}, {}
            for b in baselines:
                pairs = [(x, y) for x, y in zip(runs.get(v.key, []), runs.get(b, [])) if x and y and y["rps"] > 0]
                if pairs:
                    row["ratios"][b] = statistics.median(x["rps"] / y["rps"] for x, y in pairs)
                # Capacity from CPU cost: baseline CPU per request / variant CPU per request.
                cpairs = [(x["cpu_us_per_req"], y["cpu_us_per_req"]) for x, y in pairs
                          if x.get("cpu_us_per_req") and y.get("cpu_us_per_req")]
                if cpairs:
                    row["cpu_ratios"][b] = statistics.median(y / x for x, y in cpairs)
        rows.append(row)
    return rows


def stop_all(envs: dict[str, E.Envoy]) -> None:
    for env in envs.values():
        env.stop()


def filter_checks(envs: dict[str, E.Envoy]) -> dict:
    """Proof that the filters worked and admitted everything: native and levee stats."""
    checks = {}
    for key, env in envs.items():
        try:
            stats = {k: v for k, v in {**env.stats("native_rl"), **env.stats("levee")}.items() if v}
        except OSError as e:
            stats = {"error": str(e)}
        if stats:
            checks[key] = stats
    return checks


def scenario1_and_4(ctx: Ctx, do_s1: bool, do_s4: bool) -> tuple[dict | None, dict | None]:
    variants = V.scenario1()
    ctx.say("scenario 1/4: direct_response — starting Envoys")
    envs = start_variants(ctx, "1", variants, E.direct_route())
    s1 = s4 = None
    try:
        if do_s1:
            runs = interleaved(ctx, variants, envs, rounds=ctx.rounds, seconds=ctx.seconds,
                               connections=ctx.connections, tag="s1 ")
            s1 = {"rows": summarize(variants, runs, ["none", "noop", "native"]), "checks": filter_checks(envs)}
        if do_s4:
            runs = interleaved(ctx, variants, envs, rounds=ctx.lat_rounds, seconds=ctx.seconds,
                               connections=ctx.lat_connections, kind="paced",
                               extra=[f"delay_ms={ctx.lat_delay_ms}"], tag="s4 ")
            s4 = {"rows": summarize(variants, runs, ["none", "noop"]),
                  "method": f"wrk, {ctx.lat_connections} connections each waiting {ctx.lat_delay_ms} ms "
                            "between requests (closed loop with think time, far below saturation)"}
    finally:
        stop_all(envs)
    return s1, s4


def scenario2(ctx: Ctx) -> dict:
    ctx.say("scenario 2: real upstream — starting the upstream Envoy and the front Envoys")
    upstream = E.Envoy("s2-upstream", E.bootstrap([E.listener("upstream", E.direct_route(), [])]),
                       ctx.workdir, ctx.envoy_bin, ctx.upstream_cpu).start()
    variants = V.scenario2()
    envs = {}
    try:
        envs = start_variants(ctx, "2", variants, E.cluster_route("upstream"),
                              [E.cluster("upstream", upstream.port)])
        runs = interleaved(ctx, variants, envs, rounds=ctx.rounds, seconds=ctx.seconds,
                           connections=ctx.connections, tag="s2 ")
        rows = summarize(variants, runs, ["router", "levee_router", "router_post"])
        return {"rows": rows, "checks": filter_checks(envs),
                "upstream_requests": upstream.stats("http.upstream.downstream_rq_completed")}
    finally:
        stop_all(envs)
        upstream.stop()


def scenario3(ctx: Ctx) -> dict:
    """RSS after cumulative numbers of distinct `x-user` keys, one Envoy per variant in turn."""
    out = {"max_tracked_keys": ctx.max_tracked_keys, "keys": ctx.mem_keys, "rows": []}
    for v in V.scenario3(ctx.max_tracked_keys):
        ctx.say(f"scenario 3: memory — {v.key}")
        envs = start_variants(ctx, "3", [v], E.direct_route())
        row = {"key": v.key, "label": v.label, "plugin": v.plugin_text(), "na": v.na, "points": []}
        out["rows"].append(row)
        if v.key not in envs:
            continue
        env = envs[v.key]
        try:
            run_wrk(ctx.wrk, env.port, Request(headers={V.USER_HEADER: "warm"}), ctx.workdir,
                    seconds=2, connections=ctx.connections, cpu=ctx.load_cpu)
            time.sleep(0.5)
            row["baseline"] = env.rss_kib()
            done = 0
            for i, total in enumerate(ctx.mem_keys):
                n = total - done
                req = Request(unique=V.USER_HEADER, prefix=f"p{i}-")
                t0 = time.monotonic()
                res = run_wrk(ctx.wrk, env.port, req, ctx.workdir, seconds=900, connections=ctx.connections,
                              cpu=ctx.load_cpu, kind="keys", extra=[f"stop_after={n}"])
                done = total
                time.sleep(1.0)
                rss = env.rss_kib()
                point = {"keys": total, "rss_kib": rss["VmRSS"], "hwm_kib": rss["VmHWM"],
                         "requests": res["requests"], "errors": res["errors"],
                         "seconds": round(time.monotonic() - t0, 1)}
                row["points"].append(point)
                ctx.say(f"  {v.key}: {total:>9,} keys  RSS {rss['VmRSS'] / 1024:7.1f} MiB  "
                        f"(peak {rss['VmHWM'] / 1024:.1f}, {res['errors']} errors, {point['seconds']}s)")
            if v.filter == "levee":
                lines = env.log_grep(r"levee configured")
                row["log_bound"] = lines[-1].split("]", 5)[-1].strip() if lines else None
                row["gauge_bound_bytes"] = next((val for k, val in env.stats("levee").items()
                                                 if "memory_bound" in k), None)
            row["checks"] = filter_checks(envs)
        except Exception as e:  # noqa: BLE001
            row["na"] = f"failed: {e}"
            ctx.say(f"  {v.key}: {row['na']}")
        finally:
            stop_all(envs)
    return out


def scenario_global(ctx: Ctx, repo: Path) -> dict:
    """Latency per request of a hot-key limit local only vs. global `exact` / `reserve`, at the
    scenario-4 load (paced, far below saturation), against the rate limit service."""
    ctx.say("scenario g: global limits — starting Redis, the rate limit service and the Envoys")
    service = peers.RateLimitService(repo, ctx.workdir / "global-peer").start()
    variants = V.global_limits()
    envs: dict[str, E.Envoy] = {}
    try:
        envs = start_variants(ctx, "g", variants, E.direct_route(), [E.h2_cluster(V.RLS_CLUSTER, service.grpc_port)])
        calls0 = service.calls()
        runs = interleaved(ctx, variants, envs, rounds=ctx.lat_rounds, seconds=ctx.seconds,
                           connections=ctx.lat_connections, kind="paced",
                           extra=[f"delay_ms={ctx.lat_delay_ms}"], tag="sg ")
        calls1 = service.calls()
        return {"rows": summarize(variants, runs, ["local_only"]), "checks": filter_checks(envs),
                "service_calls": (calls1 - calls0) if calls0 is not None and calls1 is not None else None,
                "method": f"wrk, {ctx.lat_connections} connections each waiting {ctx.lat_delay_ms} ms "
                          "between requests; every request carries the same key"}
    finally:
        stop_all(envs)
        service.stop()


def _replays(env: E.Envoy, req: Request, tries: int = 50) -> str | None:
    """None once a repeat of the probe is answered as a replay (the probe stored the key; with
    etcd the record is completed just after the answer, so a 409 is retried), else why not."""
    status, headers = 0, {}
    for _ in range(tries):
        status, headers, _body = probe(env.port, req)
        if status != 409:
            break
        time.sleep(0.1)
    if 200 <= status < 300 and headers.get("idempotent-replayed") == "true":
        return None
    return f"a repeated key was answered {status} without Idempotent-Replayed: true"


def scenario_etcd(ctx: Ctx) -> dict:
    """Keyed POSTs through a real upstream with levee's records in shared data vs. in etcd:
    throughput (wrk, `connections`) and latency at the scenario-4 load (paced), interleaved."""
    ctx.say("scenario e: keyed POSTs, shared data vs. etcd — starting etcd, the upstream and the Envoys")
    etcd = peers.Etcd(ctx.workdir / "etcd", ctx.upstream_cpu).start()
    upstream = E.Envoy("se-upstream", E.bootstrap([E.listener("upstream", E.direct_route(), [])]),
                       ctx.workdir, ctx.envoy_bin, ctx.upstream_cpu).start()
    variants = V.keyed_posts()
    envs: dict[str, E.Envoy] = {}
    try:
        envs = start_variants(ctx, "e", variants, E.cluster_route("upstream"),
                              [E.cluster("upstream", upstream.port), E.h2_cluster(V.ETCD_CLUSTER, etcd.client_port)])
        for v in variants:
            if v.key.endswith("_replay") and v.key in envs:
                v.na = _replays(envs[v.key], v.request)
                if v.na:
                    ctx.say(f"  {v.key}: n/a — {v.na}")
                    envs.pop(v.key).stop()
        executed = "http.upstream.downstream_rq_completed"
        executed0 = upstream.stats(executed).get(executed, 0)
        runs = interleaved(ctx, variants, envs, rounds=ctx.rounds, seconds=ctx.seconds,
                           connections=ctx.connections, tag="se ")
        lat = interleaved(ctx, variants, envs, rounds=ctx.lat_rounds, seconds=ctx.seconds,
                          connections=ctx.lat_connections, kind="paced",
                          extra=[f"delay_ms={ctx.lat_delay_ms}"], tag="se-lat ")
        executed1 = upstream.stats(executed).get(executed, 0)
        bases = ["router_post", "shared_post", "shared_replay"]
        return {"rows": summarize(variants, runs, bases), "latency": summarize(variants, lat, bases),
                "checks": filter_checks(envs),
                "upstream_requests": executed1 - executed0,
                "method": f"throughput: wrk, {ctx.connections} connections; latency: wrk, {ctx.lat_connections} "
                          f"connections each waiting {ctx.lat_delay_ms} ms between requests. etcd: one member, "
                          "data in RAM, pinned with the upstream Envoy"}
    finally:
        stop_all(envs)
        upstream.stop()
        etcd.stop()
