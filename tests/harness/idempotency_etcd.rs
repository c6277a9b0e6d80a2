//! Envoys whose idempotency records live in etcd, for the etcd integration tests: levee's
//! configuration with a `records` etcd backend, the Envoy `etcd` cluster over plain HTTP/2, and
//! Envoy's options with that cluster and two workers.

use serde_json::{json, Value};

use super::envoy::Envoy;
use super::envoy_config::EnvoyOptions;
use super::etcd::Etcd;
use super::raw_envoy::h2_cluster;
use super::upstream::Upstream;

/// Idempotency records in the etcd backend `records` (cluster `etcd`, 500 ms per call), with
/// `idempotency` fields beyond `backend` taken from `fields` (e.g. `lock_timeout`).
pub fn records(fields: Value) -> Value {
    let mut idempotency = json!({ "backend": "records" });
    if let (Some(all), Some(more)) = (idempotency.as_object_mut(), fields.as_object()) {
        all.extend(more.clone());
    }
    json!({
        "backends": { "records": { "etcd": { "cluster": "etcd", "timeout": "500ms" } } },
        "idempotency": idempotency,
    })
}

/// The Envoy cluster `etcd`: every member of `etcd` an endpoint, HTTP/2, a TCP health check.
pub fn etcd_cluster(etcd: &Etcd) -> Value {
    h2_cluster("etcd", &etcd.client_ports(), true)
}

/// Envoy options for levee with `config` (two workers) in front of `up`, with `cluster` (the
/// Envoy cluster named `etcd`).
pub fn etcd_options(cluster: Value, up: &Upstream, config: &Value) -> EnvoyOptions {
    EnvoyOptions {
        concurrency: 2,
        extra_clusters: vec![cluster],
        ..EnvoyOptions::levee(&config.to_string(), up.port())
    }
}

/// An Envoy with levee (two workers) whose records live in `cluster`.
pub fn levee_envoy(cluster: Value, up: &Upstream, config: &Value) -> Envoy {
    Envoy::start(etcd_options(cluster, up, config))
}
