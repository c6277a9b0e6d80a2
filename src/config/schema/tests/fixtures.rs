//! Where each `$defs` object lives in a whole config (so a test can set one field and run the
//! real validator), and the full example config with its `…` parts filled in.

use serde_json::{json, Map, Value};

pub(super) const SCHEMA_FILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/schema/levee.schema.json");

/// Where a `$defs` object lives in a document: how to wrap it into a whole config, where it
/// lands in the effective JSON, the bodies that must parse, and keys only one of may be set.
pub(super) struct Ctx {
    pub(super) def: &'static str,
    pub(super) wrap: fn(Value) -> Value,
    pub(super) at: &'static str,
    /// Minimal bodies; defaults are checked in each (where the body does not set the field).
    pub(super) bases: Vec<Value>,
    /// A body with companions set so that each field may go to its bounds alone.
    pub(super) roomy: Value,
    pub(super) exclusive: &'static [&'static str],
}

fn ctx(
    def: &'static str,
    wrap: fn(Value) -> Value,
    at: &'static str,
    base: Value,
    roomy: Value,
) -> Ctx {
    Ctx {
        def,
        wrap,
        at,
        bases: vec![base],
        roomy,
        exclusive: &[],
    }
}

pub(super) fn contexts() -> Vec<Ctx> {
    let rl = json!({ "name": "a", "limit": 10, "window": "1s" });
    let leaky = json!({ "name": "a", "limit": 10, "window": "1s", "algorithm": "leaky_bucket" });
    let mut rate_limit = ctx(
        "rate_limit",
        |o| json!({ "backends": { "limits": { "rls": { "cluster": "rl", "domain": "levee" } } }, "rate_limits": [o] }),
        "/rate_limits/0",
        rl,
        leaky.clone(),
    );
    rate_limit.bases.push(leaky);
    let mut fallback = ctx(
        "fallback",
        |o| json!({ "upstreams": { "payments": { "cluster": "c", "cache": {}, "fallback": [o] } } }),
        "/upstreams/payments/fallback/0",
        json!({ "static": {} }),
        json!({ "static": {} }),
    );
    fallback.exclusive = crate::config::upstream::FALLBACK_KINDS;
    let mut idempotency = ctx(
        "idempotency",
        |o| json!({ "backends": { "records": { "etcd": { "cluster": "etcd" } } }, "idempotency": o }),
        "/idempotency",
        json!({}),
        json!({ "max_body_bytes": 1, "backend": "records" }),
    );
    idempotency.bases.push(json!({ "backend": "records" }));
    let mut backend = ctx(
        "backend",
        |o| json!({ "backends": { "records": o } }),
        "/backends/records",
        json!({ "etcd": { "cluster": "etcd" } }),
        json!({ "etcd": { "cluster": "etcd" } }),
    );
    backend.exclusive = crate::config::backend::KINDS;
    vec![
        ctx("root", |o| o, "", json!({}), json!({})),
        ctx(
            "client_ip",
            |o| json!({ "client_ip": o }),
            "/client_ip",
            json!({}),
            json!({}),
        ),
        ctx(
            "limits",
            |o| json!({ "limits": o }),
            "/limits",
            json!({}),
            json!({}),
        ),
        ctx(
            "match",
            |o| json!({ "routes": [{ "match": o, "upstream": "payments" }], "upstreams": { "payments": {} } }),
            "/routes/0/match",
            json!({}),
            json!({}),
        ),
        rate_limit,
        idempotency,
        backend,
        ctx(
            "etcd_backend",
            |o| json!({ "backends": { "records": { "etcd": o } } }),
            "/backends/records/etcd",
            json!({ "cluster": "etcd" }),
            json!({ "cluster": "etcd" }),
        ),
        ctx(
            "rls_backend",
            |o| json!({ "backends": { "limits": { "rls": o } } }),
            "/backends/limits/rls",
            json!({ "cluster": "rl", "domain": "levee" }),
            json!({ "cluster": "rl", "domain": "levee" }),
        ),
        ctx(
            "global_limit",
            |o| {
                json!({ "backends": { "limits": { "rls": { "cluster": "rl", "domain": "levee" } } },
                        "rate_limits": [{ "name": "a", "limit": 10, "window": "1m", "global": o }] })
            },
            "/rate_limits/0/global",
            json!({ "backend": "limits" }),
            json!({ "backend": "limits" }),
        ),
        ctx(
            "upstream",
            |o| json!({ "upstreams": { "payments": o } }),
            "/upstreams/payments",
            json!({}),
            json!({ "forward": "callout", "cluster": "c" }),
        ),
        ctx(
            "retry",
            |o| json!({ "upstreams": { "payments": { "forward": "callout", "cluster": "c", "retry": o } } }),
            "/upstreams/payments/retry",
            json!({}),
            json!({}),
        ),
        ctx(
            "retry_budget",
            |o| json!({ "upstreams": { "payments": { "forward": "callout", "cluster": "c", "retry": { "budget": o } } } }),
            "/upstreams/payments/retry/budget",
            json!({}),
            json!({}),
        ),
        ctx(
            "circuit_breaker",
            |o| json!({ "upstreams": { "payments": { "circuit_breaker": o } } }),
            "/upstreams/payments/circuit_breaker",
            json!({}),
            json!({ "failure_rate": {} }),
        ),
        ctx(
            "failure_rate",
            |o| json!({ "upstreams": { "payments": { "circuit_breaker": { "failure_rate": o } } } }),
            "/upstreams/payments/circuit_breaker/failure_rate",
            json!({}),
            json!({}),
        ),
        ctx(
            "cache",
            |o| json!({ "upstreams": { "payments": { "cache": o } } }),
            "/upstreams/payments/cache",
            json!({}),
            json!({ "max_body_bytes": 1 }),
        ),
        fallback,
        ctx(
            "stale_cache",
            |o| json!({ "upstreams": { "payments": { "cache": {}, "fallback": [{ "stale_cache": o }] } } }),
            "/upstreams/payments/fallback/0/stale_cache",
            json!({}),
            json!({}),
        ),
        ctx(
            "queue",
            |o| json!({ "upstreams": { "payments": { "cluster": "c", "fallback": [{ "queue": o }] } } }),
            "/upstreams/payments/fallback/0/queue",
            json!({}),
            json!({}),
        ),
        ctx(
            "static",
            |o| json!({ "upstreams": { "payments": { "fallback": [{ "static": o }] } } }),
            "/upstreams/payments/fallback/0/static",
            json!({}),
            json!({}),
        ),
        ctx(
            "route",
            |o| json!({ "upstreams": { "payments": {} }, "routes": [o] }),
            "/routes/0",
            json!({ "upstream": "payments" }),
            json!({ "upstream": "payments" }),
        ),
    ]
}

pub(super) fn object_def<'a>(schema: &'a Value, name: &str) -> &'a Value {
    if name == "root" {
        schema
    } else {
        &schema["$defs"][name]
    }
}

pub(super) fn properties(def: &Value) -> Vec<(String, Value)> {
    def["properties"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The property's own schema with a top-level `$ref` followed (descriptions stay on the property).
pub(super) fn resolved(schema: &Value, prop: &Value) -> Value {
    match prop["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => schema["$defs"][name].clone(),
        None => prop.clone(),
    }
}

/// `body` with `key` set to `value` (other `exclusive` keys removed), wrapped into a document.
pub(super) fn doc(c: &Ctx, body: &Value, key: &str, value: Value) -> String {
    let mut o: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    if c.exclusive.contains(&key) {
        o.retain(|k, _| !c.exclusive.contains(&k.as_str()));
    }
    o.insert(key.to_owned(), value);
    (c.wrap)(Value::Object(o)).to_string()
}

/// The full example (its idempotency block keeps records in shared data).
pub(super) fn spec_example() -> Value {
    json!({
      "client_ip": { "xff_trusted_hops": 1, "ipv6_prefix": 56 },
      "limits": { "max_tracked_keys": 65536 },
      "rate_limits": [{ "name": "per-user", "match": { "path_prefix": "/api/", "methods": ["POST"], "route_name": "orders",
          "headers": { "x-tenant": "acme" } }, "key": ["header:x-user-id"], "algorithm": "token_bucket",
          "limit": 100, "window": "1m", "burst": 100, "mode": "enforce", "status": 429, "on_internal_error": "allow" },
        { "name": "shaper", "algorithm": "leaky_bucket", "limit": 10, "window": "1s", "max_delay": "500ms", "key": ["client_ip"] },
        { "name": "per-api-key", "key": ["header:x-api-key"], "limit": 100, "window": "1m",
          "global": { "backend": "limits", "mode": "reserve", "on_backend_error": "local" } }],
      "rate_limit_headers": "x-ratelimit",
      "idempotency": { "methods": ["POST", "PATCH"], "match": { "path_prefix": "/" }, "header": "Idempotency-Key",
          "required": false, "scope": ["header:x-user-id"], "ttl": "24h", "lock_timeout": "30s", "fingerprint": true,
          "on_concurrent": "reject", "release_on": [408, 425, 429, 503], "max_key_length": 255, "max_body_bytes": 262144,
          "max_stored_bytes": 67108864, "on_internal_error": "deny" },
      "backends": {
        "records": { "etcd": { "cluster": "etcd", "prefix": "levee/", "timeout": "250ms" } },
        "limits": { "rls": { "cluster": "ratelimit", "domain": "levee", "timeout": "20ms" } } },
      "upstreams": { "payments": { "forward": "callout", "cluster": "payments", "authority": "payments.internal",
          "timeout": "2s", "max_body_bytes": 1048576,
          "retry": { "max_retries": 3, "base_delay": "100ms", "max_delay": "2s", "jitter": "full", "deadline": "5s",
              "retry_on": ["5xx", "reset", "timeout", "connect_failure", "429", 503], "respect_retry_after": true,
              "budget": { "ratio": 0.2, "min_per_second": 10 }, "non_idempotent": "with_key" },
          "circuit_breaker": { "failure_threshold": 5, "failure_rate": { "threshold": 0.5, "minimum_calls": 20, "window": "10s" },
              "slow_call": "2s", "reset_timeout": "30s", "half_open_successes": 3, "half_open_max_in_flight": 1,
              "failure_on": ["5xx", "timeout", "reset", "connect_failure"] },
          "cache": { "ttl": "5m", "max_body_bytes": 65536, "max_total_bytes": 33554432, "key": ["header:x-user-id"] },
          "fallback": [
            { "stale_cache": { "max_stale": "1h" }, "methods": ["GET", "HEAD"] },
            { "cluster": "payments-replica" },
            { "queue": { "max_items": 1000, "max_bytes": 16777216 }, "methods": ["POST"] },
            { "static": { "status": 200, "headers": { "content-type": "application/json" }, "body": "{\"items\":[]}" } } ] },
          "catalog": { "circuit_breaker": { "failure_threshold": 0, "failure_rate": {} } } },
      "routes": [ { "match": { "path_prefix": "/payments" }, "upstream": "payments" }, { "upstream": "catalog" } ]
    })
}
