//! The plugin JSON an operator writes, fuzzed: arbitrary bytes, mutated valid configurations
//! and byte-mutated JSON are either accepted into a configuration that holds together, or
//! refused with an error that names a real path.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{cases, interesting_u64, mutate_bytes};
use crate::config;
use crate::random::{RandomSource, SplitMix64};

/// Every section of the config, each field set, so that mutations reach every validator.
fn full_config() -> Value {
    json!({
      "client_ip": { "xff_trusted_hops": 1, "ipv6_prefix": 56 },
      "limits": { "max_tracked_keys": 1024 },
      "rate_limits": [
        { "name": "per-user", "match": { "path_prefix": "/api/", "methods": ["POST"], "route_name": "orders",
          "headers": { "x-tenant": "acme" } }, "key": ["header:x-user-id", "query:u", "metadata:envoy.lb/canary"],
          "algorithm": "token_bucket", "limit": 100, "window": "1m", "burst": 100, "mode": "enforce",
          "status": 429, "on_internal_error": "allow" },
        { "name": "shaper", "algorithm": "leaky_bucket", "limit": 10, "window": "1s", "max_delay": "500ms", "key": ["client_ip"] },
        { "name": "log", "algorithm": "sliding_window_log", "limit": 5, "window": "10s", "key": ["source_ip", "method", "path", "route_name"] },
        { "name": "counter", "algorithm": "sliding_window_counter", "limit": 50, "window": "1h", "mode": "shadow" },
        { "name": "fixed", "algorithm": "fixed_window", "limit": 7, "window": "250ms", "on_internal_error": "deny" }],
      "rate_limit_headers": "both",
      "idempotency": { "methods": ["POST", "PATCH"], "match": { "path_prefix": "/" }, "header": "Idempotency-Key",
          "required": false, "scope": ["header:x-user-id"], "ttl": "24h", "lock_timeout": "30s", "fingerprint": true,
          "on_concurrent": "wait", "release_on": [408, 425, 429, 503], "max_key_length": 255, "max_body_bytes": 262144,
          "max_stored_bytes": 67108864, "on_internal_error": "deny" },
      "upstreams": {
        "payments": { "forward": "callout", "cluster": "payments", "authority": "payments.internal",
          "timeout": "2s", "max_body_bytes": 1048576,
          "retry": { "max_retries": 3, "base_delay": "100ms", "max_delay": "2s", "jitter": "decorrelated", "deadline": "5s",
              "retry_on": ["5xx", "reset", "timeout", "connect_failure", "429", "gateway_error", 503], "respect_retry_after": true,
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

/// A JSON value that tends to sit on a validator's boundary.
fn interesting_value(rng: &mut SplitMix64) -> Value {
    const STRINGS: [&str; 24] = [
        "",
        "0s",
        "1ns",
        "1ms",
        "999999999h",
        "18446744073709551615s",
        "-1s",
        "1.5s",
        "10 parsecs",
        "5m",
        "24h",
        "header:",
        "header:X-Up",
        "query:",
        "metadata:",
        "metadata:a/",
        "client_ip",
        "a",
        "A",
        "\u{0}",
        "é",
        "\n",
        "token_bucket",
        "callout",
    ];
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(interesting_u64(rng)),
        3 => json!(-(rng.below(1 << 40) as i64)),
        4 => json!([0.0, -0.5, 0.5, 1.0, 1.5, 1e308, -1e308, 3.0][rng.below(8) as usize]),
        5 => json!(STRINGS[rng.below(STRINGS.len() as u64) as usize]),
        6 => json!([]),
        7 => json!({}),
        8 => json!([STRINGS[rng.below(STRINGS.len() as u64) as usize]]),
        9 => json!({ "x": rng.below(3) }),
        10 => json!(i64::MIN),
        _ => json!(rng.below(70_000)),
    }
}

/// Every node's JSON pointer (`""` is the document), so a mutation can pick any of them:
/// most nodes are deep, so most mutations reach a field validator, not the top-level shape.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One structural mutation at a random node: replace it, drop or add a key, duplicate or
/// drop an array item.
fn mutate_json(doc: &mut Value, rng: &mut SplitMix64) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let at = &all[rng.below(all.len() as u64) as usize];
    let Some(v) = doc.pointer_mut(at) else { return };
    match v {
        Value::Object(map) if rng.below(2) == 0 => {
            if map.is_empty() || rng.below(3) == 0 {
                let name = [
                    "limt", "name", "Name", "", "window", "x\ny", "status", "static",
                ];
                map.insert(
                    name[rng.below(name.len() as u64) as usize].to_string(),
                    interesting_value(rng),
                );
            } else {
                let keys: Vec<String> = map.keys().cloned().collect();
                map.remove(&keys[rng.below(keys.len() as u64) as usize]);
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(2) == 0 => {
            let i = rng.below(items.len() as u64) as usize;
            if rng.below(2) == 0 {
                items.remove(i);
            } else {
                let copy = items[i].clone();
                items.push(copy);
            }
        }
        _ => *v = interesting_value(rng),
    }
}

/// Whether `path` (as `ConfigError::path` writes it) leads into `doc`: every segment but the
/// last must exist (the last may be a missing required field).
fn path_resolves(doc: &Value, path: &str) -> bool {
    let mut node = doc;
    let mut rest = path;
    let mut segments: Vec<Seg> = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            if after.starts_with('"') {
                // A quoted key: JSON string up to the closing `"]`.
                let Some(end) = after.find("\"]") else {
                    return false;
                };
                let quoted = &after[..=end];
                let key: String = serde_json::from_str(quoted).unwrap_or_default();
                segments.push(Seg::Key(
                    key.trim_end_matches('…').to_string(),
                    key.ends_with('…'),
                ));
                rest = &after[end + 2..];
            } else {
                let Some(end) = after.find(']') else {
                    return false;
                };
                let Ok(i) = after[..end].parse() else {
                    return false;
                };
                segments.push(Seg::Index(i));
                rest = &after[end + 1..];
            }
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            segments.push(Seg::Key(rest_trimmed[..end].to_string(), false));
            rest = &rest_trimmed[end..];
        }
    }
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate() {
        let next = match (seg, node) {
            (Seg::Index(i), Value::Array(a)) => a.get(*i),
            (Seg::Key(k, false), Value::Object(m)) => m.get(k),
            (Seg::Key(k, true), Value::Object(m)) => m
                .iter()
                .find(|(name, _)| name.starts_with(k.as_str()))
                .map(|(_, v)| v),
            _ => None,
        };
        match next {
            Some(v) => node = v,
            None => return n == last,
        }
    }
    true
}

enum Seg {
    Index(usize),
    /// A key; `true` when it was cut at 40 characters (match by prefix).
    Key(String, bool),
}

/// The checks every refused config must pass: one line, a message, a path into the document.
fn check_error(doc: Option<&Value>, e: &config::ConfigError) -> Result<(), TestCaseError> {
    let line = e.to_string();
    prop_assert!(
        !e.message.trim().is_empty(),
        "an error without a reason: {line}"
    );
    prop_assert!(
        !line.contains(['\n', '\r']),
        "Envoy logs one line; this error has several: {line:?}"
    );
    prop_assert!(line.starts_with("levee config: "), "{line}");
    if let Some(doc) = doc {
        prop_assert!(
            e.path.is_empty() || path_resolves(doc, &e.path),
            "error path {:?} does not lead into the document: {line}",
            e.path
        );
    }
    Ok(())
}

/// A config that parses must be usable: build the plugin, and its effective JSON must parse
/// back to itself.
fn check_accepted(cfg: config::LeveeConfig) -> Result<(), TestCaseError> {
    let effective = config::to_effective_json(&cfg);
    let again = config::parse(effective.to_string().as_bytes());
    prop_assert!(
        again.is_ok(),
        "effective config refused: {again:?}\n{effective}"
    );
    if let Ok(again) = again {
        prop_assert_eq!(config::to_effective_json(&again), effective);
    }
    let plugin = crate::pipeline::Plugin::new(cfg, [7; 16]);
    let footprint = crate::footprint::Footprint::of(&plugin);
    prop_assert_eq!(footprint.bytes(), plugin.memory_bound());
    let _ = footprint.check(&plugin.config);
    prop_assert_eq!(
        footprint.keys(),
        plugin.tables().map(|t| u64::from(t.buckets())).sum::<u64>()
            + plugin.plain_keys().len() as u64
            + 3,
        "the key count is the tables' buckets, the plain keys, the secret, the probe and the marker"
    );
    prop_assert!(plugin.tables().all(|t| t.slots() > 0));
    Ok(())
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn config_parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match config::parse(&bytes) {
            Ok(cfg) => check_accepted(cfg)?,
            Err(e) => check_error(None, &e)?,
        }
    }

    #[test]
    fn config_parse_never_panics_on_mutated_valid_configs(seed in any::<u64>(), rounds in 1u32..6) {
        let mut rng = SplitMix64::seeded(seed);
        let mut doc = full_config();
        for _ in 0..rounds {
            mutate_json(&mut doc, &mut rng);
        }
        match config::parse(doc.to_string().as_bytes()) {
            Ok(cfg) => check_accepted(cfg)?,
            Err(e) => check_error(Some(&doc), &e)?,
        }
    }

    #[test]
    fn config_parse_never_panics_on_byte_mutated_json(seed in any::<u64>(), rounds in 1u32..8) {
        let mut rng = SplitMix64::seeded(seed);
        let mut bytes = full_config().to_string().into_bytes();
        mutate_bytes(&mut bytes, &mut rng, rounds);
        match config::parse(&bytes) {
            Ok(cfg) => check_accepted(cfg)?,
            Err(e) => check_error(serde_json::from_slice(&bytes).ok().as_ref(), &e)?,
        }
    }
}
