//! An Envoy started from a bootstrap the test writes itself: for configurations the levee
//! harness does not generate (Envoy's native rate limit filter, a gRPC-Web front for etcd and
//! the rate limit service), and the cluster blocks backends need (HTTP/2, health checks).
//!
//! Why: to prove that a test peer speaks a protocol as Envoy does, Envoy itself must be the
//! client. Like [`super::Envoy`], each instance has its own temp dir, ephemeral ports (read back
//! from the admin `/listeners`), `--concurrency 2`, and is killed on drop.

use super::client::{try_send, Request};
use super::envoy::envoy_bin;
use super::peers::peer_dir;
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running Envoy; dropping it kills the process.
pub struct RawEnvoy {
    child: Child,
    dir: PathBuf,
    admin_port: u16,
    ports: Vec<u16>,
}

impl RawEnvoy {
    /// Starts Envoy with `bootstrap` (its `admin` is set here) and waits until every listener
    /// named in `listeners` is bound; panics with the log if it cannot.
    pub fn start(mut bootstrap: Value, listeners: &[&str]) -> RawEnvoy {
        let dir = peer_dir("raw-envoy");
        bootstrap["admin"] = json!({ "address": socket_address(0) });
        let path = dir.join("bootstrap.json");
        fs::write(&path, bootstrap.to_string()).unwrap_or_else(|e| panic!("write bootstrap: {e}"));
        let log = fs::File::create(dir.join("envoy.log")).unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&path)
            .args(["--concurrency", "2", "--disable-hot-restart", "-l", "warn"])
            .arg("--admin-address-path")
            .arg(dir.join("admin.txt"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run Envoy ({e}); run `make envoy` or set ENVOY_BIN")
            });
        let mut envoy = RawEnvoy {
            child,
            dir,
            admin_port: 0,
            ports: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("Envoy exited with {status}\n{}", envoy.log());
            }
            if envoy.admin_port == 0 {
                envoy.admin_port = fs::read_to_string(envoy.dir.join("admin.txt"))
                    .ok()
                    .and_then(|a| a.trim().rsplit(':').next()?.parse().ok())
                    .unwrap_or(0);
            }
            if envoy.admin_port != 0 {
                if let Some(ports) = envoy.listener_ports(listeners) {
                    envoy.ports = ports;
                    return envoy;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not ready in 20 s\n{}",
                envoy.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn listener_ports(&self, names: &[&str]) -> Option<Vec<u16>> {
        let r = try_send(self.admin_port, &Request::get("/listeners?format=json")).ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let all = v["listener_statuses"].as_array()?;
        names
            .iter()
            .map(|n| {
                let l = all.iter().find(|l| l["name"] == *n)?;
                let port = l["local_address"]["socket_address"]["port_value"].as_u64()?;
                u16::try_from(port).ok().filter(|p| *p != 0)
            })
            .collect()
    }

    /// The port of the `i`-th listener named at start.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// One counter or gauge by full name; 0 when absent.
    pub fn stat(&self, name: &str) -> u64 {
        let r = try_send(
            self.admin_port,
            &Request::get(&format!("/stats?filter=^{name}$")),
        );
        r.ok()
            .and_then(|r| {
                String::from_utf8_lossy(&r.body)
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for RawEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- Envoy log ({}) ---\n{}", self.dir.display(), self.log());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `{"socket_address": 127.0.0.1:port}`.
pub fn socket_address(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

/// A static HTTP/2 cluster over `ports`, as a gRPC backend needs; with `health_check`, a TCP
/// check every 0.5 s also while idle (`no_traffic_interval`), so a dead member is skipped
/// within a second and a returning one used again.
pub fn h2_cluster(name: &str, ports: &[u16], health_check: bool) -> Value {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|p| json!({ "endpoint": { "address": socket_address(*p) } }))
        .collect();
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": endpoints }] },
    });
    if health_check {
        cluster["health_checks"] = json!([{
            "timeout": "0.25s",
            "interval": "0.5s",
            "no_traffic_interval": "0.5s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "tcp_health_check": {},
        }]);
    }
    cluster
}

/// A static HTTP/1.1 cluster with one endpoint.
pub fn h1_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(port) } }] }],
        },
    })
}

/// A listener on an ephemeral port running an HTTP connection manager with `http_filters`
/// (the router is appended) and `routes` in one catch-all virtual host.
pub fn http_listener(name: &str, http_filters: Vec<Value>, routes: Vec<Value>) -> Value {
    let mut filters = http_filters;
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    }));
    json!({
        "name": name,
        "address": socket_address(0),
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }] },
                "http_filters": filters,
            },
        }]}],
    })
}

/// The gRPC-Web filter: HTTP/1.1 gRPC-Web in, gRPC out.
pub fn grpc_web_filter() -> Value {
    json!({
        "name": "envoy.filters.http.grpc_web",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb" },
    })
}

/// A route sending paths under `prefix` to `cluster` with `timeout`.
pub fn route(prefix: &str, cluster: &str, timeout: &str) -> Value {
    json!({ "match": { "prefix": prefix }, "route": { "cluster": cluster, "timeout": timeout } })
}
