//! The footprint is the bound the filter reports, counts the keys configure really creates,
//! and the ceiling refuses what it should with a message an operator can act on.

use super::*;
use crate::store::cas::get_or_create;
use crate::store::hash::HASH_SECRET_KEY;
use crate::store::memory::MemoryStore;

/// Every layer that owns shared data: two limits, idempotency, a cache, a breaker, a budget.
fn rich(limits: &str) -> String {
    format!(
        r#"{{"limits": {limits},
            "rate_limits": [{{"name": "per-ip", "key": ["client_ip"], "limit": 5, "window": "1s"}},
                            {{"name": "log", "algorithm": "sliding_window_log", "limit": 100, "window": "1m"}}],
            "idempotency": {{}},
            "upstreams": {{"api": {{"forward": "callout", "cluster": "api", "cache": {{}}, "circuit_breaker": {{}}, "retry": {{"budget": {{}}}}}}}}}}"#
    )
}

fn plugin(json: &str) -> Plugin {
    let config = crate::config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    Plugin::new(config, [7; 16])
}

/// What `on_configure` does to shared data, against an in-memory store.
fn configure(plugin: &Plugin, store: &MemoryStore) {
    get_or_create(store, HASH_SECRET_KEY, &[1; 16]).unwrap();
    crate::provision::provision(plugin, store).unwrap();
}

#[test]
fn the_bound_is_the_one_the_filter_reports() {
    let p = plugin(&rich(r#"{"max_tracked_keys": 1000}"#));
    let f = Footprint::of(&p);
    assert_eq!(f.bytes(), p.memory_bound());
    let paths: Vec<&str> = f.parts.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rate_limits[0]",
            "rate_limits[1]",
            "idempotency",
            "upstreams.api.cache"
        ]
    );
}

#[test]
fn the_key_count_is_what_configure_creates() {
    let p = plugin(&rich(r#"{"max_tracked_keys": 1000}"#));
    let store = MemoryStore::new();
    configure(&p, &store);
    assert_eq!(Footprint::of(&p).keys(), store.key_count() as u64);
}

#[test]
fn a_config_over_the_ceiling_is_refused_with_both_numbers_and_the_fix() {
    // The config that made Envoy spend a minute per configure: valid field by field.
    let doc = rich(r#"{"max_tracked_keys": 16777216}"#);
    let e = validate(doc.as_bytes()).unwrap_err();
    assert_eq!(e.path, "limits.max_memory_bytes");
    let bound = Footprint::of(&plugin(&doc)).bytes();
    assert!(bound > 4 << 30, "{bound}");
    let text = e.to_string();
    assert!(
        text.starts_with(
            "levee config: limits.max_memory_bytes: this config's shared-data tables can take "
        ),
        "{text}"
    );
    for needle in [
        format!("({bound} bytes)"),
        format!(
            "over the ceiling of {} ({} bytes)",
            human(defaults::MAX_MEMORY_BYTES),
            defaults::MAX_MEMORY_BYTES
        ),
        "the largest part is rate_limits[1] with 5.9 GiB".to_string(),
        "Lower limits.max_tracked_keys (16777216)".to_string(),
        format!("raise limits.max_memory_bytes to at least {bound}"),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in {text}");
    }
}

#[test]
fn raising_the_ceiling_admits_the_config() {
    let doc = rich(r#"{"max_tracked_keys": 1048576}"#);
    assert!(validate(doc.as_bytes()).is_err());
    let bound = Footprint::of(&plugin(&doc)).bytes();
    let raised = rich(&format!(
        r#"{{"max_tracked_keys": 1048576, "max_memory_bytes": {bound}}}"#
    ));
    let (config, footprint) = validate(raised.as_bytes()).unwrap();
    assert_eq!(config.limits.max_memory_bytes, bound);
    assert_eq!(footprint.bytes(), bound);
    let one_less = rich(&format!(
        r#"{{"max_tracked_keys": 1048576, "max_memory_bytes": {}}}"#,
        bound - 1
    ));
    assert!(validate(one_less.as_bytes()).is_err());
}

#[test]
fn a_default_config_is_well_under_the_default_ceiling() {
    let (_, f) = validate(rich("{}").as_bytes()).unwrap();
    assert!(
        f.bytes() < defaults::MAX_MEMORY_BYTES * 2 / 3,
        "{} of {}",
        human(f.bytes()),
        human(defaults::MAX_MEMORY_BYTES)
    );
}

#[test]
fn every_key_accounts_for_at_least_the_per_key_minimum() {
    // So a ceiling of C bytes admits at most C / MIN_BYTES_PER_KEY table keys.
    for keys in ["1", "1000", "65536", "1000000"] {
        let doc = rich(&format!(r#"{{"max_tracked_keys": {keys}}}"#));
        for part in Footprint::of(&plugin(&doc)).parts {
            assert!(
                part.bytes >= part.keys * MIN_BYTES_PER_KEY,
                "{}: {} bytes for {} keys",
                part.path,
                part.bytes,
                part.keys
            );
        }
    }
}

#[test]
fn sizes_read_in_binary_units() {
    assert_eq!(human(900), "900 bytes");
    assert_eq!(human(1536), "1.5 KiB");
    assert_eq!(human(256 << 20), "256 MiB");
    assert_eq!(human(8_053_063_680), "7.5 GiB");
}

#[test]
fn the_ceiling_is_read_defaulted_and_bounded() {
    let (config, _) = validate(b"{}").unwrap();
    assert_eq!(config.limits.max_memory_bytes, defaults::MAX_MEMORY_BYTES);
    assert_eq!(
        crate::config::to_effective_json(&config)["limits"]["max_memory_bytes"],
        536_870_912
    );
    let e = validate(br#"{"limits": {"max_memory_bytes": 1000}}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "levee config: limits.max_memory_bytes: 1000 is out of range (use 1048576..=68719476736: \
         the most shared-data bytes this config's tables may take)"
    );
    // A small ceiling refuses even the default table size of one rate limit (5.7 MiB).
    let e = validate(
        br#"{"limits": {"max_memory_bytes": 1048576},
             "rate_limits": [{"name": "a", "limit": 5, "window": "1s"}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.path, "limits.max_memory_bytes");
    assert!(
        e.message.contains("the largest part is rate_limits[0]"),
        "{e}"
    );
}
