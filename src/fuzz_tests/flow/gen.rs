//! The random plugin configs the flow fuzzer runs, and the host's configure step.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::config;
use crate::pipeline::Plugin;
use crate::random::{RandomSource, SplitMix64};
use crate::store::cas::ensure_key;
use crate::store::MemoryStore;

/// A random valid config over a small space of knobs: every layer, small tables.
pub(super) fn config_json(rng: &mut SplitMix64, small_tables: bool) -> Value {
    let pick = |rng: &mut SplitMix64, items: &[&str]| {
        items[rng.below(items.len() as u64) as usize].to_string()
    };
    let key_choices = [
        json!([]),
        json!(["header:x-user"]),
        json!(["client_ip"]),
        json!(["header:x-user", "query:q"]),
    ];
    let mut rate_limits = Vec::new();
    for i in 0..rng.below(3) {
        let algorithm = pick(
            rng,
            &[
                "fixed_window",
                "sliding_window_log",
                "sliding_window_counter",
                "token_bucket",
                "leaky_bucket",
            ],
        );
        let mut rl = json!({
            "name": format!("rl{i}"),
            "algorithm": algorithm,
            "limit": 1 + rng.below(4),
            "window": pick(rng, &["200ms", "1s"]),
            "key": key_choices[rng.below(4) as usize].clone(),
            "mode": pick(rng, &["enforce", "enforce", "shadow"]),
            "on_internal_error": pick(rng, &["allow", "deny"]),
        });
        if algorithm == "leaky_bucket" && rng.below(2) == 0 {
            rl["max_delay"] = json!(pick(rng, &["100ms", "500ms"]));
        }
        if rng.below(3) == 0 {
            rl["match"] = json!({ "methods": ["POST"] });
        }
        rate_limits.push(rl);
    }
    let mut doc = json!({
        "limits": { "max_tracked_keys": if small_tables { 4 + rng.below(12) } else { 4096 } },
        "rate_limits": rate_limits,
        "rate_limit_headers": pick(rng, &["x-ratelimit", "ietf", "both", "none"]),
    });
    if rng.below(4) != 0 {
        doc["idempotency"] = json!({
            "required": rng.below(4) == 0,
            "scope": if rng.below(2) == 0 { json!([]) } else { json!(["header:x-user"]) },
            "ttl": "5s",
            "lock_timeout": pick(rng, &["300ms", "1s"]),
            "fingerprint": rng.below(3) != 0,
            "on_concurrent": pick(rng, &["reject", "wait"]),
            "max_key_length": 16 + rng.below(32),
            "max_body_bytes": 64 + rng.below(256),
            "max_stored_bytes": 4096,
            "on_internal_error": pick(rng, &["allow", "deny"]),
        });
    }
    if rng.below(4) != 0 {
        let callout = rng.below(2) == 0;
        let mut up = json!({
            "forward": if callout { "callout" } else { "router" },
            "timeout": "500ms",
            "max_body_bytes": 128 + rng.below(512),
        });
        if callout {
            up["cluster"] = json!("c");
            if rng.below(3) != 0 {
                let mut retry = json!({
                    "max_retries": rng.below(4),
                    "base_delay": "20ms", "max_delay": "200ms", "deadline": "2s",
                    "jitter": pick(rng, &["full", "equal", "decorrelated", "none"]),
                    "respect_retry_after": rng.below(2) == 0,
                    "non_idempotent": pick(rng, &["with_key", "never", "always"]),
                });
                if rng.below(2) == 0 {
                    retry["budget"] = json!({ "ratio": 0.5, "min_per_second": rng.below(3) });
                }
                up["retry"] = retry;
            }
        }
        if rng.below(2) == 0 {
            up["circuit_breaker"] = json!({
                "failure_threshold": 1 + rng.below(3),
                "reset_timeout": "300ms",
                "half_open_successes": 1 + rng.below(2),
                "half_open_max_in_flight": 1 + rng.below(2),
            });
        }
        if rng.below(2) == 0 {
            up["cache"] = json!({ "ttl": "2s", "max_body_bytes": 1024, "max_total_bytes": 65536 });
        }
        let mut chain = Vec::new();
        if up.get("cache").is_some() && rng.below(2) == 0 {
            chain
                .push(json!({ "stale_cache": { "max_stale": "10s" }, "methods": ["GET", "HEAD"] }));
        }
        if rng.below(3) == 0 {
            up["cluster"] = json!("c");
            chain.push(json!({ "cluster": "c2" }));
        }
        if rng.below(3) == 0 {
            up["cluster"] = json!("c");
            chain.push(
                json!({ "queue": { "max_items": 4, "max_bytes": 65536 }, "methods": ["POST"] }),
            );
        }
        if rng.below(3) == 0 {
            chain.push(
                json!({ "static": { "status": 203, "body": "fallback" }, "methods": ["GET"] }),
            );
        }
        up["fallback"] = json!(chain);
        doc["upstreams"] = json!({ "svc": up });
        doc["routes"] = json!([{ "match": { "path_prefix": "/svc" }, "upstream": "svc" }]);
    }
    doc
}

/// The host's configure: parse, build, pre-create every table and key.
pub(in crate::fuzz_tests) fn plugin(
    doc: &Value,
    store: &MemoryStore,
) -> Result<Plugin, TestCaseError> {
    let cfg = config::parse(doc.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("generated config refused: {e}\n{doc}")))?;
    let plugin = Plugin::new(cfg, [9; 16]);
    for t in plugin.tables() {
        t.ensure_created(store)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    }
    for key in plugin.plain_keys() {
        ensure_key(store, &key, b"").map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    }
    Ok(plugin)
}
