"""The backends the mesh-wide variants talk to, on free loopback ports.

- The rate limit service for the global-limit variants: a Redis and the RLS v3 test peer.
  Global limits need a service to ask. The benchmark runs the same one the integration tests
  run (tests/peers/rls_peer.py: RLS v3 on Redis with envoyproxy/ratelimit's semantics), so
  `exact` and `reserve` are measured against a real gRPC round trip. Needs `redis-server` and
  the peers' virtualenv (`make peers`).
- One etcd member for the idempotency records of the keyed-POST variants (Debian's
  `etcd-server`, `make etcd`), as the integration tests start it: data in RAM (`/dev/shm`),
  so the numbers are levee's and the round trip's, not a disk's fsync.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DOMAIN = "levee"


class PeerStartError(RuntimeError):
    """Redis or the service did not come up; the message says which and why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peers_python(repo: Path) -> Path | None:
    """The peers' interpreter: PEERS_PYTHON, else .venv-peers here, else the main checkout's."""
    cands = [os.environ.get("PEERS_PYTHON"), repo / ".venv-peers/bin/python"]
    common = subprocess.run(["git", "-C", str(repo), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                            capture_output=True, text=True).stdout.strip()
    if common:
        cands.append(Path(common).parent / ".venv-peers/bin/python")
    return next((Path(c) for c in cands if c and Path(c).is_file()), None)


class Etcd:
    """`start()` one etcd member on free loopback ports; `client_port`, `stop()` (data removed)."""

    def __init__(self, workdir: Path, cpu: int | None = None):
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else workdir
        self.dir = base / f"levee-bench-etcd-{os.getpid()}-{time.monotonic_ns()}"
        self.log = workdir / "etcd.log"
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.client_port = 0

    def start(self, timeout: float = 30.0) -> "Etcd":
        etcd = shutil.which("etcd")
        if etcd is None:
            raise PeerStartError("needs etcd (`make etcd`: Debian's etcd-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.client_port, peer = _free_port(), _free_port()
        client, peer_url = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{peer}"
        cmd = [etcd, "--name", "bench", "--data-dir", str(self.dir / "data"),
               "--listen-client-urls", client, "--advertise-client-urls", client,
               "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
               "--initial-cluster", f"bench={peer_url}", "--logger", "zap", "--log-level", "warn"]
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        import urllib.request
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=2) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise PeerStartError(f"etcd did not start: {self.log.read_text(errors='replace')[-400:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RateLimitService:
    """`start()` Redis and the peer; `grpc_port`, `calls()` (requests the service answered), `stop()`."""

    def __init__(self, repo: Path, workdir: Path):
        self.repo = repo
        self.dir = workdir
        self.redis: subprocess.Popen | None = None
        self.peer: subprocess.Popen | None = None
        self.grpc_port = 0
        self.control_port = 0

    def start(self, timeout: float = 60.0) -> "RateLimitService":
        redis_bin = shutil.which("redis-server")
        python = peers_python(self.repo)
        if redis_bin is None or python is None:
            raise PeerStartError("needs redis-server and .venv-peers (`make peers`)")
        self.dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.redis = subprocess.Popen([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.redis.poll() is not None:
                    self.stop()
                    raise PeerStartError(f"redis-server on port {port} did not start")
                time.sleep(0.1)
        # The service knows the domain; levee's descriptors carry their own limit.
        rules = [{"domain": DOMAIN, "entries": [["levee_limit", None]], "requests_per_unit": 1,
                  "unit": "HOUR", "name": "bench"}]
        log = open(self.dir / "rls_peer.log", "wb")
        self.peer = subprocess.Popen([str(python), str(self.repo / "tests/peers/rls_peer.py"),
                                      "--redis-port", str(port), "--config", json.dumps(rules)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        line = self.peer.stdout.readline() if self.peer.stdout else ""
        if not line.startswith("ready "):
            self.stop()
            raise PeerStartError(f"rls_peer.py did not start: {(self.dir / 'rls_peer.log').read_text()[-400:]}")
        self.grpc_port, self.control_port = (int(x) for x in line.split()[1:3])
        return self

    def calls(self) -> int | None:
        """How many ShouldRateLimit calls the service has answered (its control endpoint)."""
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/calls", timeout=5) as r:
                return int(json.loads(r.read())["calls"])
        except (OSError, ValueError, KeyError):
            return None

    def stop(self) -> None:
        if self.peer and self.peer.poll() is None:
            if self.peer.stdin:
                self.peer.stdin.close()
            try:
                self.peer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.peer.kill()
                self.peer.wait()
        if self.redis and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()
