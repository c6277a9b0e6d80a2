"""Load generation: `wrk` (installed from Debian if missing), its Lua scripts, and a probe.

wrk runs with one thread pinned to the load CPU. Its Lua `done()` prints one JSON line with
the request count, errors and latency percentiles, so nothing parses wrk's human output.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
_RUNS = itertools.count(1)


@dataclass
class Request:
    """What every request of a run looks like. `unique` names a header that gets a fresh value
    per request (`prefix` + counter), which costs wrk one Lua call per request."""
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    unique: str | None = None
    prefix: str = "k"

    def wrk_args(self, run: int) -> list[str]:
        """Arguments for common.lua; `run` makes unique values unique across runs too (the Lua
        counter restarts at 1 in every wrk process)."""
        args = [f"method={self.method}"]
        if self.body:
            args.append(f"body={self.body}")
        args += [f"header={k}: {v}" for k, v in self.headers.items()]
        if self.unique:
            args += [f"unique={self.unique}", f"prefix={self.prefix}r{run}-"]
        return args


def ensure_wrk() -> str:
    """Path of `wrk`; installs Debian's package (apt-get, via sudo when not root) if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    print("wrk not found: installing it with apt-get (Debian package `wrk`)", flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        r = subprocess.run(sudo + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"could not install wrk ({' '.join(cmd)}): {r.stderr.strip()[-300:]}\n"
                             "install it yourself: apt-get install wrk")
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


def script(workdir: Path, kind: str) -> Path:
    """`lua/common.lua` followed by `lua/<kind>.lua`, written once into `workdir`."""
    out = workdir / f"wrk-{kind}.lua"
    if not out.exists():
        out.write_text((LUA_DIR / "common.lua").read_text() + "\n" + (LUA_DIR / f"{kind}.lua").read_text())
    return out


def run_wrk(wrk: str, port: int, req: Request, workdir: Path, *, seconds: float, connections: int,
            cpu: int | None, kind: str | None = None, extra: list[str] | None = None) -> dict:
    """One wrk run; returns the JSON summary plus `rps` (requests per second) and `errors`."""
    kind = kind or ("unique" if req.unique else "static")
    if kind == "paced" and req.unique:
        kind = "paced_unique"
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
           "-s", str(script(workdir, kind)), f"http://127.0.0.1:{port}{req.path}", "--",
           *req.wrk_args(next(_RUNS)), *(extra or [])]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 900)
    line = next((l for l in r.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
    res = json.loads(line[len("BENCHJSON "):])
    secs = res["duration_us"] / 1e6
    res["rps"] = res["requests"] / secs if secs > 0 else 0.0
    res["errors"] = sum(res[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    return res


def probe(port: int, req: Request) -> tuple[int, dict[str, str], str]:
    """One request like the benchmark's; returns (status, headers lower-cased, body start)."""
    headers = dict(req.headers)
    if req.unique:
        headers[req.unique] = req.prefix + "probe"
    body = req.body.encode() if req.body else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(req.method, req.path, body=body, headers=headers)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, headers, resp.read(300).decode("utf-8", "replace")
    finally:
        conn.close()
