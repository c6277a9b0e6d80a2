//! The rate limit service peer (`tests/peers/rls_peer.py`): `ShouldRateLimit` on a real Redis
//! with envoyproxy/ratelimit's semantics, plus faults a test switches on.
//!
//! Why a peer of our own instead of envoyproxy/ratelimit: that service is a Go binary that no
//! package registry ships; this one speaks the same protocol (checked against Envoy's own
//! `envoy.filters.http.ratelimit` in `tests/backend_rls_peer.rs`) and can misbehave on demand —
//! delays, gRPC errors, an `UNKNOWN` verdict, answers without statuses (as Limitador sends).

use super::client::{send, Request};
use super::peers::peers_python;
use super::redis::Redis;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running rate limit service; dropping it stops the process.
pub struct RlsPeer {
    child: Child,
    /// Held open: the peer exits when it closes.
    _stdin: Option<ChildStdin>,
    grpc_port: u16,
    control_port: u16,
}

/// `prefix` made unique to this moment, so tests sharing one Redis never share counters.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

/// One configured limit: `entries` are `(key, Some(value))` or `(key, None)` for any value
/// (each value counted apart); `unit` is `SECOND`, `MINUTE`, `HOUR`, `DAY` or `WEEK`.
pub fn rule(
    domain: &str,
    entries: &[(&str, Option<&str>)],
    requests_per_unit: u32,
    unit: &str,
) -> Value {
    serde_json::json!({
        "domain": domain,
        "entries": entries.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
        "requests_per_unit": requests_per_unit,
        "unit": unit,
        "name": format!("{domain}-rule"),
    })
}

impl RlsPeer {
    /// Starts the service on `redis` with `rules` (see [`rule`]); a domain named by no rule is
    /// unknown to the service, even for descriptors that carry a `limit` override.
    pub fn start(redis: &Redis, rules: &[Value]) -> RlsPeer {
        let script = super::crate_root().join("tests/peers/rls_peer.py");
        let mut child = Command::new(peers_python())
            .arg(script)
            .args(["--redis-port", &redis.port().to_string()])
            .args(["--config", &Value::Array(rules.to_vec()).to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the rate limit peer: {e}"));
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let ports: Vec<u16> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        let [grpc_port, control_port] = ports[..] else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the rate limit peer did not start (said {line:?})");
        };
        RlsPeer {
            child,
            _stdin: stdin,
            grpc_port,
            control_port,
        }
    }

    /// The gRPC (HTTP/2) port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.grpc_port
    }

    /// Replaces the fault: `{"delay_ms": n, "grpc_status": "UNAVAILABLE", "overall_unknown":
    /// true, "no_statuses": true}`, any subset; `{}` clears it.
    pub fn set_fault(&self, fault: Value) {
        let r = send(
            self.control_port,
            &Request::new("PUT", "/fault").body(fault.to_string()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// How many `ShouldRateLimit` calls arrived.
    pub fn calls(&self) -> u64 {
        send(self.control_port, &Request::get("/calls")).json()["calls"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The last requests (proto3 JSON), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        send(self.control_port, &Request::get("/calls")).json()["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The Redis counters: key → value.
    pub fn counters(&self) -> serde_json::Map<String, Value> {
        send(self.control_port, &Request::get("/counters"))
            .json()
            .as_object()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for RlsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
