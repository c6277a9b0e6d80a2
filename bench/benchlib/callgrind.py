"""Envoy under callgrind: instructions executed per request, for several filter chains at once.

Why instructions: on a shared 2-CPU machine req/s move by ±10 % from minute to minute, while
the instructions Envoy executes for one request do not move at all. They are not time (cache
misses, branch mispredictions and V8's JIT code quality are not counted the same way) but they
tell exactly what a change costs, and which part of the request path costs what.

One Envoy runs under `valgrind --tool=callgrind` with one listener per variant. For each
variant: warm-up requests, a counter dump, `n` requests on one keep-alive connection, another
dump; the second dump holds only those requests' instructions (callgrind resets its counters
at each dump). Idle Envoy costs ~30 k instructions per second: noise below 0.1 %.
Wasm VMs are shared by `vm_id` per wasm file (valgrind cannot reserve address space for many
V8 instances).
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from . import envoy as E

# Seconds to wait for callgrind to write a counter dump. Under valgrind on a loaded machine a
# dump can take minutes; LEVEE_CALLGRIND_DUMP_TIMEOUT overrides the default.
DUMP_TIMEOUT = float(os.environ.get("LEVEE_CALLGRIND_DUMP_TIMEOUT", "600"))


class CallgrindEnvoy:
    def __init__(self, envoy_bin: str, workdir: Path, listeners: list[dict], clusters: list[dict] | None = None):
        self.envoy_bin = os.path.realpath(envoy_bin)
        with open(self.envoy_bin, "rb") as f:
            if f.read(2) == b"#!":
                # valgrind would measure the interpreter, which then execs Envoy uninstrumented:
                # every counter dump would wait out its timeout.
                raise E.EnvoyStartError(f"{envoy_bin} is a script, not Envoy: point ENVOY_BIN at the binary "
                                        "(`make envoy` writes its path to target/envoy-<version>.path)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = E.bootstrap(listeners, clusters)
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.out = self.dir / "callgrind.out"
        self.last_dump = ""

    def start(self, timeout: float = 1200.0) -> None:
        cfg = self.dir / "envoy.json"
        cfg.write_text(json.dumps(self.config, indent=1))
        admin_file = self.dir / "admin.txt"
        admin_file.unlink(missing_ok=True)
        for f in glob.glob(str(self.out) + "*"):
            os.remove(f)
        cmd = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={self.out}",
               self.envoy_bin, "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
               "--admin-address-path", str(admin_file), "--log-level", "warn"]
        log = open(self.dir / "envoy.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise E.EnvoyStartError(f"Envoy under callgrind exited: {self.log_tail()}")
            if admin_file.exists() and admin_file.read_text().strip():
                admin = "http://" + admin_file.read_text().strip()
                try:
                    with urllib.request.urlopen(admin + "/listeners?format=json", timeout=10) as r:
                        statuses = json.loads(r.read())["listener_statuses"]
                    with urllib.request.urlopen(admin + "/ready", timeout=10) as r:
                        ready = r.read().decode().strip() == "LIVE"
                    ports = {s["name"]: s["local_address"]["socket_address"].get("port_value", 0) for s in statuses}
                    if ready and ports and all(ports.values()):
                        self.ports = ports
                        return
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(3)
        self.stop()
        raise E.EnvoyStartError(f"Envoy under callgrind not ready after {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = (self.dir / "envoy.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        bad = [l for l in lines if "error" in l or "critical" in l]
        return " | ".join((bad or lines)[-4:])[-800:]

    def _dump(self) -> int:
        """Dumps the counters gathered since the last dump; returns their instruction total."""
        before = set(glob.glob(str(self.out) + ".*"))
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], capture_output=True, check=False)
        deadline = time.monotonic() + DUMP_TIMEOUT
        while time.monotonic() < deadline:
            new = set(glob.glob(str(self.out) + ".*")) - before
            for f in new:
                text = Path(f).read_text(errors="replace")
                for line in text.splitlines():
                    if line.startswith("totals:") or line.startswith("summary:"):
                        self.last_dump = f
                        return int(line.split()[1])
            time.sleep(0.3)
        raise RuntimeError(f"callgrind dump did not appear within {DUMP_TIMEOUT:.0f}s")

    def per_request(self, listener: str, n: int, headers: dict, warmup: int = 50, method: str = "GET",
                    body: str | None = None, unique: str | None = None, settle: float = 0.0) -> dict:
        """`method /` with `headers` (and `body`), `n` times on one connection after `warmup`
        requests. `unique` names a header given a fresh value per request (an Idempotency-Key);
        `settle` seconds are waited before each dump, for work the filter does after the answer
        (a record completed in the background) to land in the dump of its own requests."""
        port = self.ports[listener]
        statuses: dict[int, int] = {}
        sent = [0]

        def drive(count: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for _ in range(count):
                sent[0] += 1
                h = {**headers, unique: f"{listener}-{sent[0]}"} if unique else headers
                conn.request(method, "/", body=body, headers=h)
                resp = conn.getresponse()
                resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            conn.close()

        drive(warmup)
        time.sleep(settle)
        self._dump()
        statuses.clear()
        drive(n)
        time.sleep(settle)
        total = self._dump()
        # The dump stays in the work directory: bench/callgrind_calls.py reads it for the
        # instructions of each kind of host call.
        return {"instructions_per_request": total / n, "requests": n, "statuses": statuses,
                "dump": self.last_dump}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ensure_valgrind() -> str | None:
    """valgrind from Debian when missing (as root, or with sudo); None if it cannot be had."""
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return shutil.which("valgrind")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for cmd in (sudo + ["apt-get", "update", "-qq"], sudo + ["apt-get", "install", "-y", "-qq", "valgrind"]):
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError):
            return None
    return shutil.which("valgrind")
