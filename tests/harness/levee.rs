//! Starting levee the way most integration tests do: one plugin config in front of one fresh
//! [`Upstream`] (cluster `upstream`), and the config shapes the tests share.

use serde_json::{json, Value};

use super::envoy::Envoy;
use super::envoy_config::EnvoyOptions;
use super::upstream::Upstream;

/// levee with `config` in front of a fresh [`Upstream`] ([`EnvoyOptions::levee`]), `opts`
/// applied last (workers, more clusters, …).
pub fn start_levee(config: &Value, opts: impl FnOnce(&mut EnvoyOptions)) -> (Upstream, Envoy) {
    let up = Upstream::start();
    let mut o = EnvoyOptions::levee(&config.to_string(), up.port());
    opts(&mut o);
    let envoy = Envoy::start(o);
    (up, envoy)
}

/// `base` with every top-level field of `extra` set over it (both JSON objects).
pub fn merged(mut base: Value, extra: &Value) -> Value {
    for (k, v) in extra.as_object().expect("extra must be a JSON object") {
        base[k] = v.clone();
    }
    base
}

/// Every path routed to one upstream `svc`, plus the top-level fields of `extra`.
pub fn single_upstream(svc: Value, extra: &Value) -> Value {
    let config = json!({
        "upstreams": { "svc": svc },
        "routes": [{ "match": { "path_prefix": "/" }, "upstream": "svc" }]
    });
    merged(config, extra)
}

/// [`single_upstream`] in callout mode to cluster `upstream` with a 1 s timeout, the fields of
/// `svc` set over those.
pub fn callout_upstream(svc: &Value, extra: &Value) -> Value {
    let base = json!({ "forward": "callout", "cluster": "upstream", "timeout": "1s" });
    single_upstream(merged(base, svc), extra)
}
