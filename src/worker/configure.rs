//! A plugin configuration made ready for requests: parsed and validated, the keyed-hash
//! secret agreed with every other worker VM, its footprint checked against the ceiling, every
//! shared-data table and key created.

use crate::breaker::gate;
use crate::config;
use crate::footprint::Footprint;
use crate::metrics::Metrics;
use crate::pipeline::Plugin;
use crate::provision::provision;
use crate::store::hash::KeyHasher;
use crate::store::SharedStore;

/// Builds the [`Plugin`] for the raw configuration `raw`, with its footprint; `fresh_secret`
/// is this VM's candidate secret (`None`: the host refused random bytes). The error is the
/// line to log.
pub fn configure(
    raw: &[u8],
    store: &dyn SharedStore,
    fresh_secret: Option<[u8; 16]>,
) -> Result<(Plugin, Footprint), String> {
    let config = config::parse(raw).map_err(|e| e.to_string())?;
    let fresh = fresh_secret.ok_or("levee: the host refused random bytes")?;
    let hasher = KeyHasher::load_or_create(store, fresh).map_err(|e| format!("levee: {e}"))?;
    let plugin = Plugin::with_hasher(config, hasher);
    // Refused before a single key is created: over the ceiling, creating the tables is
    // what would take the time and the memory.
    let footprint = Footprint::of(&plugin);
    footprint.check(&plugin.config).map_err(|e| e.to_string())?;
    provision(&plugin, store)?;
    Ok((plugin, footprint))
}

/// Raises each breaker's unsettled gauge that is below its shared state (see
/// [`crate::breaker::gate::reconcile`]); once per VM, after its metrics are defined.
pub fn reconcile_breakers(plugin: &Plugin, store: &dyn SharedStore, metrics: &mut dyn Metrics) {
    for (index, upstream) in plugin.config.upstreams.iter().enumerate() {
        if upstream.circuit_breaker.is_none() {
            continue;
        }
        if let Ok(Some(state)) = store.get(&gate::breaker_key(&upstream.name)) {
            gate::reconcile(index, &state.value, metrics);
        }
    }
}

/// The line logged once a configuration is in place.
pub fn summary(plugin: &Plugin, footprint: &Footprint) -> String {
    let bound = footprint.bytes();
    format!(
        "levee configured: {} rate limit(s), {} upstream(s); shared-data bound {} bytes ({} MiB) of the {} MiB ceiling, {} shared-data keys",
        plugin.config.rate_limits.len(),
        plugin.config.upstreams.len(),
        bound,
        bound / (1024 * 1024),
        plugin.config.limits.max_memory_bytes / (1024 * 1024),
        footprint.keys()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hash::HASH_SECRET_KEY;
    use crate::store::MemoryStore;

    #[test]
    fn every_worker_vm_agrees_on_the_first_secret_and_tables_exist() {
        let store = MemoryStore::new();
        let raw = br#"{ "rate_limits": [{ "name": "rl", "limit": 1, "window": "1s" }] }"#;
        let (first, footprint) = configure(raw, &store, Some([1; 16])).expect("first VM");
        let (second, _) = configure(raw, &store, Some([2; 16])).expect("second VM");
        assert_eq!(
            first.hasher.hash(b"d", b"k"),
            second.hasher.hash(b"d", b"k"),
            "the second VM takes the stored secret"
        );
        let table = first.tables().next().expect("the limit's table");
        assert!(store.get(&table.key_of(0)).ok().flatten().is_some());
        let line = summary(&first, &footprint);
        assert!(
            line.starts_with("levee configured: 1 rate limit(s), 0 upstream(s)"),
            "{line}"
        );
    }

    #[test]
    fn a_bad_config_a_refused_secret_and_a_damaged_secret_are_reported() {
        let store = MemoryStore::new();
        assert!(configure(b"{ not json", &store, Some([1; 16])).is_err());
        let refused = configure(b"{}", &store, None).err().unwrap_or_default();
        assert!(refused.contains("random bytes"), "{refused}");
        store.set(HASH_SECRET_KEY, b"short", None).expect("write");
        let damaged = configure(b"{}", &store, Some([1; 16]))
            .err()
            .unwrap_or_default();
        assert!(damaged.contains("holds 5 bytes"), "{damaged}");
    }
}
