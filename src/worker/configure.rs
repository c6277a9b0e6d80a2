//! A plugin configuration made ready for requests: parsed and validated, the keyed-hash
//! secret agreed with every other worker VM, every shared-data table and key pre-created.

use crate::config;
use crate::pipeline::{Plugin, HASH_SECRET_KEY};
use crate::store::cas::{ensure_key, get_or_create};
use crate::store::SharedStore;

/// Builds the [`Plugin`] for the raw configuration `raw`; `fresh_secret` is this VM's
/// candidate secret (`None`: the host refused random bytes). The error is the line to log.
pub fn configure(
    raw: &[u8],
    store: &dyn SharedStore,
    fresh_secret: Option<[u8; 16]>,
) -> Result<Plugin, String> {
    let config = config::parse(raw).map_err(|e| e.to_string())?;
    let secret = load_secret(store, fresh_secret)?;
    let plugin = Plugin::new(config, secret);
    for table in plugin.tables() {
        table.ensure_created(store).map_err(|e| {
            format!(
                "levee: cannot create shared-data table {}: {e:?}",
                table.key_of(0)
            )
        })?;
    }
    for key in plugin.plain_keys() {
        ensure_key(store, &key, b"")
            .map_err(|e| format!("levee: cannot create shared-data key {key}: {e:?}"))?;
    }
    Ok(plugin)
}

/// The line logged once a configuration is in place.
pub fn summary(plugin: &Plugin) -> String {
    let bound = plugin.memory_bound();
    format!(
        "levee configured: {} rate limit(s), {} upstream(s); shared-data bound {} bytes ({} MiB)",
        plugin.config.rate_limits.len(),
        plugin.config.upstreams.len(),
        bound,
        bound / (1024 * 1024)
    )
}

/// The keyed-hash secret: created once in shared data, so every worker VM and every later
/// configuration agree on it.
fn load_secret(store: &dyn SharedStore, fresh: Option<[u8; 16]>) -> Result<[u8; 16], String> {
    let fresh = fresh.ok_or("levee: the host refused random bytes")?;
    let stored = get_or_create(store, HASH_SECRET_KEY, &fresh)
        .map_err(|e| format!("levee: cannot read or create {HASH_SECRET_KEY}: {e:?}"))?;
    stored.as_slice().try_into().map_err(|_| {
        format!(
            "levee: {HASH_SECRET_KEY} holds {} bytes, expected 16",
            stored.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn every_worker_vm_agrees_on_the_first_secret_and_tables_exist() {
        let store = MemoryStore::new();
        let raw = br#"{ "rate_limits": [{ "name": "rl", "limit": 1, "window": "1s" }] }"#;
        let first = configure(raw, &store, Some([1; 16])).expect("first VM");
        let second = configure(raw, &store, Some([2; 16])).expect("second VM");
        assert_eq!(
            first.hasher.hash(b"d", b"k"),
            second.hasher.hash(b"d", b"k"),
            "the second VM takes the stored secret"
        );
        let table = first.tables().next().expect("the limit's table");
        assert!(store.get(&table.key_of(0)).ok().flatten().is_some());
        assert!(summary(&first).starts_with("levee configured: 1 rate limit(s), 0 upstream(s)"));
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
