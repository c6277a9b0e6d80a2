"""Envoy configurations for the benchmark and the processes that run them.

Every Envoy here has one worker (`--concurrency 1`), is pinned to one CPU with `taskset`,
listens on ephemeral ports (found through the admin API afterwards) and runs with hot restart
disabled, so any number of them can run side by side. Configurations are JSON, which Envoy
reads as YAML.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
DIRECT_BODY = "ok"


def _addr(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def direct_route() -> dict:
    return {"name": "default", "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": DIRECT_BODY}}}


def cluster_route(cluster: str) -> dict:
    return {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "5s"}}


def listener(name: str, route: dict, filters: list[dict]) -> dict:
    """One HTTP listener on an ephemeral port: `filters`, then the router."""
    return {
        "name": name,
        "address": _addr(0),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                "route_config": {"name": "local", "virtual_hosts": [
                    {"name": "all", "domains": ["*"], "routes": [route]}]},
                "http_filters": [*filters, ROUTER],
            },
        }]}],
    }


def cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _addr(port)}}]}]},
    }


def h2_cluster(name: str, port: int) -> dict:
    """A cluster speaking HTTP/2 (gRPC), e.g. to the rate limit service."""
    c = cluster(name, port)
    c["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        },
    }
    return c


def bootstrap(listeners: list[dict], clusters: list[dict] | None = None) -> dict:
    return {
        "node": {"id": "levee-bench", "cluster": "levee-bench"},
        "admin": {"address": _addr(0)},
        "static_resources": {"listeners": listeners, "clusters": clusters or []},
    }


def wasm_filter(wasm: Path, plugin_json: str, vm_id: str) -> dict:
    """`envoy.filters.http.wasm` as every shipped levee config has it."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": vm_id,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_json,
                },
                "allow_on_headers_stop_iteration": True,
            },
        },
    }


def native_local_ratelimit(header: str, max_dynamic: int) -> dict:
    """Envoy's `local_ratelimit` limiting per client: one token bucket per distinct value of
    `header` (a dynamic descriptor, LRU-bounded at `max_dynamic`), and a bucket so large that
    it never rejects — the filter does all of its per-request work and admits."""
    huge = {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"}
    hundred = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "native_rl",
            "token_bucket": huge,
            "filter_enabled": {"runtime_key": "bench_rl_enabled", "default_value": hundred},
            "filter_enforced": {"runtime_key": "bench_rl_enforced", "default_value": hundred},
            "max_dynamic_descriptors": max_dynamic,
            "rate_limits": [{"actions": [{"request_headers": {"header_name": header, "descriptor_key": "client"}}]}],
            "descriptors": [{"entries": [{"key": "client", "value": ""}], "token_bucket": huge}],
        },
    }


class EnvoyStartError(RuntimeError):
    """Envoy exited or never became ready; the message carries the telling log lines."""


class Envoy:
    """One Envoy process: `start()`, `port` of its (only) listener, admin helpers, `stop()`."""

    def __init__(self, name: str, config: dict, workdir: Path, envoy_bin: str, cpu: int | None):
        self.name = name
        self.config = config
        self.dir = workdir / name
        self.envoy_bin = envoy_bin
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.admin: str | None = None
        self.port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "envoy.log"

    def start(self, timeout: float = 90.0) -> "Envoy":
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "envoy.json"
        cfg.write_text(json.dumps(self.config, indent=1))
        admin_file = self.dir / "admin.txt"
        admin_file.unlink(missing_ok=True)
        cmd = [self.envoy_bin, "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
               "--admin-address-path", str(admin_file), "--log-level", "warn",
               "--component-log-level", "wasm:info"]
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyStartError(f"{self.name}: Envoy exited ({self.proc.returncode}): {self.log_excerpt()}")
            if self.admin is None and admin_file.exists() and admin_file.read_text().strip():
                self.admin = "http://" + admin_file.read_text().strip()
            if self.admin is not None and self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise EnvoyStartError(f"{self.name}: not ready after {timeout:.0f}s: {self.log_excerpt()}")

    def _ready(self) -> bool:
        try:
            if self.get("/ready").strip() != "LIVE":
                return False
            listeners = json.loads(self.get("/listeners?format=json"))["listener_statuses"]
        except (OSError, ValueError, KeyError):
            return False
        ports = [s["local_address"]["socket_address"].get("port_value", 0) for s in listeners]
        if not ports or not all(ports):
            return False
        self.port = ports[0]
        return True

    def get(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")

    def stats(self, prefix: str) -> dict[str, int]:
        """Counters and gauges whose name contains `prefix` (`/stats?filter=`)."""
        out: dict[str, int] = {}
        for line in self.get(f"/stats?filter={prefix}").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name.strip()] = int(value)
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (all threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the Envoy process, in KiB, from /proc/PID/status."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def log_excerpt(self, n: int = 6) -> str:
        """The last error/critical lines (else the last lines) of the log, on one line."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        bad = [l for l in lines if re.search(r"\]\[(error|critical)\]|levee config|error", l)]
        picked = (bad or lines)[-n:]
        return " | ".join(re.sub(r"^\[[^\]]*\]\[\d+\]", "", l).strip() for l in picked)[-1200:]

    def log_grep(self, pattern: str) -> list[str]:
        try:
            return [l for l in self.log_path.read_text(errors="replace").splitlines() if re.search(pattern, l)]
        except OSError:
            return []

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def find_envoy(repo: Path) -> str | None:
    """$ENVOY_BIN, else the Makefile's venv, else `envoy` on PATH."""
    for cand in (os.environ.get("ENVOY_BIN"), str(repo / ".venv/bin/envoy"), shutil.which("envoy")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def envoy_version(envoy_bin: str) -> str:
    try:
        out = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return m.group(1) if m else out.strip()[-40:]
