//! The Envoy configuration a test runs under: [`EnvoyOptions`] and the files made from it.
//!
//! Why two files: the bootstrap holds what never changes during a test (admin, clusters,
//! stats tags), while the listener — HTTP connection manager, routes, and the wasm filter with
//! levee's plugin JSON — is served from a file through Envoy's filesystem LDS. Rewriting that
//! file reconfigures the running Envoy the way a control plane would (new root context, same
//! VM and shared data, same listening socket), which is how tests prove that levee's state
//! survives a config reload. Files are JSON (a subset of YAML) so that serde_json does all the
//! quoting.

use super::raw_envoy::{h1_cluster, socket_address};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the listener Envoy serves from the LDS file.
pub const LISTENER_NAME: &str = "levee_test";

/// An extra route, matched before the default one (route name `default`, prefix `/`).
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name, visible to levee as `xds.route_name`.
    pub name: String,
    /// Path prefix to match.
    pub path_prefix: String,
    /// Target cluster (one of [`EnvoyOptions::clusters`]).
    pub cluster: String,
    /// Route timeout; `None` uses [`EnvoyOptions::route_timeout`].
    pub timeout: Option<Duration>,
}

/// Everything a test may vary about the Envoy it starts.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// levee's plugin JSON, passed as the wasm `configuration`.
    pub plugin_config: String,
    /// Worker threads (`--concurrency`); one wasm VM each.
    pub concurrency: u32,
    /// Clusters `(name, port on 127.0.0.1)`; the first is the default route's target. With none,
    /// the default route answers `200 direct` itself.
    pub clusters: Vec<(String, u16)>,
    /// `PluginConfig.allow_on_headers_stop_iteration`.
    pub allow_on_headers_stop_iteration: bool,
    /// The wasm module to load.
    pub wasm_path: PathBuf,
    /// Timeout of the default route (Envoy's own default is 15 s).
    pub route_timeout: Duration,
    /// Routes matched before the default one.
    pub routes: Vec<Route>,
    /// HCM `use_remote_address`.
    pub use_remote_address: bool,
    /// HCM `xff_num_trusted_hops`.
    pub xff_num_trusted_hops: u32,
    /// Listener `per_connection_buffer_limit_bytes` (Envoy default 1 MiB).
    pub per_connection_buffer_limit_bytes: Option<u32>,
    /// `PluginConfig.failure_policy`, e.g. `FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`.
    pub failure_policy: Option<String>,
    /// Log level of Envoy's `wasm` component (where plugin logs land).
    pub wasm_log_level: String,
    /// `stats_config.stats_tags` as `(tag_name, regex)`.
    pub stats_tags: Vec<(String, String)>,
    /// More clusters, as written (say an HTTP/2 cluster for a backend levee calls).
    pub extra_clusters: Vec<Value>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            plugin_config: "{}".to_string(),
            concurrency: 4,
            clusters: Vec::new(),
            allow_on_headers_stop_iteration: true,
            wasm_path: default_wasm_path(),
            route_timeout: Duration::from_secs(15),
            routes: Vec::new(),
            use_remote_address: false,
            xff_num_trusted_hops: 0,
            per_connection_buffer_limit_bytes: None,
            failure_policy: None,
            wasm_log_level: "info".to_string(),
            stats_tags: Vec::new(),
            extra_clusters: Vec::new(),
        }
    }
}

impl EnvoyOptions {
    /// levee with `plugin_config` in front of one cluster `upstream` on `upstream_port`.
    pub fn levee(plugin_config: &str, upstream_port: u16) -> EnvoyOptions {
        EnvoyOptions {
            plugin_config: plugin_config.to_string(),
            clusters: vec![("upstream".to_string(), upstream_port)],
            ..EnvoyOptions::default()
        }
    }
}

/// The crate root (where `Cargo.toml`, `target/` and `.venv/` live).
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$LEVEE_WASM`, else `target/wasm32-wasip1/release/levee.wasm`.
pub fn default_wasm_path() -> PathBuf {
    std::env::var_os("LEVEE_WASM").map_or_else(
        || crate_root().join("target/wasm32-wasip1/release/levee.wasm"),
        PathBuf::from,
    )
}

/// The bootstrap: admin on an ephemeral port, static clusters, listeners from `lds_path`.
pub fn bootstrap(opts: &EnvoyOptions, lds_path: &Path) -> Value {
    let clusters: Vec<Value> = opts
        .clusters
        .iter()
        .map(|(n, p)| h1_cluster(n, *p))
        .chain(opts.extra_clusters.iter().cloned())
        .collect();
    let tags: Vec<Value> = opts
        .stats_tags
        .iter()
        .map(|(name, regex)| json!({ "tag_name": name, "regex": regex }))
        .collect();
    let watched = lds_path.parent().unwrap_or(lds_path);
    json!({
        "node": { "id": "levee-test", "cluster": "levee-test" },
        "admin": { "address": socket_address(0) },
        "dynamic_resources": {
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": lds_path,
                    "watched_directory": { "path": watched },
                },
            },
        },
        "static_resources": { "clusters": clusters },
        "stats_config": { "stats_tags": tags },
    })
}

/// The LDS file: one listener on an ephemeral port whose HCM runs the wasm filter then the router.
pub fn lds(opts: &EnvoyOptions) -> Value {
    let mut listener = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": LISTENER_NAME,
        "address": socket_address(0),
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm(opts),
        }]}],
    });
    if let Some(limit) = opts.per_connection_buffer_limit_bytes {
        listener["per_connection_buffer_limit_bytes"] = json!(limit);
    }
    json!({ "resources": [listener] })
}

fn hcm(opts: &EnvoyOptions) -> Value {
    let mut routes: Vec<Value> = opts
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "match": { "prefix": r.path_prefix },
                "route": { "cluster": r.cluster, "timeout": duration(r.timeout.unwrap_or(opts.route_timeout)) },
            })
        })
        .collect();
    routes.push(match opts.clusters.first() {
        Some((cluster, _)) => json!({
            "name": "default",
            "match": { "prefix": "/" },
            "route": { "cluster": cluster, "timeout": duration(opts.route_timeout) },
        }),
        None => json!({
            "name": "default",
            "match": { "prefix": "/" },
            "direct_response": { "status": 200, "body": { "inline_string": "direct" } },
        }),
    });
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "use_remote_address": opts.use_remote_address,
        "xff_num_trusted_hops": opts.xff_num_trusted_hops,
        "route_config": {
            "name": "local",
            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }],
        },
        "http_filters": [
            { "name": "envoy.filters.http.wasm", "typed_config": wasm_filter(opts) },
            {
                "name": "envoy.filters.http.router",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
            },
        ],
    })
}

/// `envoy.extensions.filters.http.wasm.v3.Wasm`: its `config` is a `wasm.v3.PluginConfig`,
/// which is where `allow_on_headers_stop_iteration` and `failure_policy` live.
fn wasm_filter(opts: &EnvoyOptions) -> Value {
    let mut plugin = json!({
        "name": "levee",
        "vm_config": {
            "vm_id": "levee",
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": opts.wasm_path } },
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": opts.plugin_config,
        },
        "allow_on_headers_stop_iteration": opts.allow_on_headers_stop_iteration,
    });
    if let Some(policy) = &opts.failure_policy {
        plugin["failure_policy"] = json!(policy);
    }
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": plugin,
    })
}

/// A protobuf JSON `Duration` (`"1.500s"`).
fn duration(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
