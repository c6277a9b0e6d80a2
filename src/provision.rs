//! Configure time: creating every shared-data key a configuration needs — once per process,
//! not once per VM.
//!
//! Envoy runs `on_configure` in a throwaway VM on the main thread, then in the main VM and in
//! every worker's VM. If each of them walked every key (a `get` each, a `set` for the ones
//! still missing), for the largest configs the ceiling admits (about a million keys) that
//! walk, repeated, would be most of Envoy's start-up time. Shared data has no delete, so once
//! one VM has created a configuration's keys they exist for the life of the process: the
//! first VM to finish writes a marker named after a digest of the configuration, and every
//! later `on_configure` of the same configuration (the other VMs) reads the marker and skips
//! the walk. A reload with another configuration walks again, creating only what is missing.
//! The first walk normally runs in the throwaway VM, whose memory (the list of key names)
//! goes away with it.
//!
//! Keys are created with one version floor for the whole batch ([`crate::store::cas`]), so
//! creating a key costs one `get` and one `set`.

use crate::pipeline::Plugin;
use crate::store::cas::{cas_floor, create_if_absent};
use crate::store::SharedStore;

/// Prefix of the per-key-set markers; the digest follows in hex.
pub const PROVISIONED_PREFIX: &str = "levee:v1:meta:provisioned:";

/// What [`provision`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// Walked the key set (creating what was missing) and wrote the marker.
    Walked,
    /// The marker was there: another VM (or an earlier configure) created every key.
    AlreadyDone,
}

/// Makes sure every table bucket and plain key of `plugin` exists. Errors name the key.
pub fn provision(plugin: &Plugin, store: &dyn SharedStore) -> Result<Provisioned, String> {
    let marker = format!("{PROVISIONED_PREFIX}{:016x}", digest(plugin));
    if store
        .get(&marker)
        .is_ok_and(|v| v.is_some_and(|v| !v.value.is_empty()))
    {
        return Ok(Provisioned::AlreadyDone);
    }
    // Only now: a million key names take tens of MiB of this VM's memory, which a wasm VM
    // never gives back.
    let plain = plugin.plain_keys();
    for table in plugin.tables() {
        table.ensure_created(store).map_err(|e| {
            format!(
                "levee: cannot create shared-data table {}: {e:?}",
                table.key_of(0)
            )
        })?;
    }
    let floor =
        cas_floor(store).map_err(|e| format!("levee: cannot read a shared-data version: {e:?}"))?;
    for key in &plain {
        create_if_absent(store, key, b"", floor)
            .map_err(|e| format!("levee: cannot create shared-data key {key}: {e:?}"))?;
    }
    // Written only after every key exists; keys are never deleted, so it stays true.
    store
        .set(&marker, b"1", None)
        .map_err(|e| format!("levee: cannot write shared-data key {marker}: {e:?}"))?;
    Ok(Provisioned::Walked)
}

/// FNV-1a (64 bit) over what decides the key set: the tables (first key and size), the
/// validated config (every plain key is named after it) and the levee version (how names
/// are derived). Computed without listing the keys. Not a secret, only an identity: a
/// reload that changes only behaviour gets another digest and walks once more, creating
/// nothing.
fn digest(plugin: &Plugin) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    for table in plugin.tables() {
        h.write(table.key_of(0).as_bytes());
        h.write(&table.buckets().to_le_bytes());
    }
    // Debug of the validated config: deterministic (no hash maps), and already in the binary.
    h.write(format!("{:?}", plugin.config).as_bytes());
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn plugin(json: &str) -> Plugin {
        let config = crate::config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        Plugin::new(config, [7; 16])
    }

    const IDEM: &str = r#"{"limits": {"max_tracked_keys": 64}, "idempotency": {},
        "rate_limits": [{"name": "a", "key": ["client_ip"], "limit": 5, "window": "1s"}]}"#;

    #[test]
    fn the_first_configure_creates_every_key_and_later_ones_skip_the_walk() {
        let store = MemoryStore::new();
        let p = plugin(IDEM);
        assert_eq!(provision(&p, &store).unwrap(), Provisioned::Walked);
        let keys = store.key_count();
        let before = store.stats();
        assert_eq!(provision(&p, &store).unwrap(), Provisioned::AlreadyDone);
        let after = store.stats();
        assert_eq!((after.gets - before.gets, after.sets - before.sets), (1, 0));
        assert_eq!(store.key_count(), keys);
    }

    #[test]
    fn a_config_with_another_key_set_walks_again_and_creates_what_is_missing() {
        let store = MemoryStore::new();
        provision(&plugin(IDEM), &store).unwrap();
        let keys = store.key_count();
        let bigger = IDEM.replace("\"max_tracked_keys\": 64", "\"max_tracked_keys\": 128");
        assert_eq!(
            provision(&plugin(&bigger), &store).unwrap(),
            Provisioned::Walked
        );
        // 16 more rate-limit buckets, 16 more record buckets, 64 more answer keys, a marker.
        assert_eq!(store.key_count(), keys + 16 + 16 + 64 + 1);
    }

    #[test]
    fn existing_state_is_left_alone() {
        let store = MemoryStore::new();
        let p = plugin(IDEM);
        provision(&p, &store).unwrap();
        let key = p.plain_keys()[0].clone();
        store.set(&key, b"state", None).unwrap();
        // A reload with a larger table walks every existing key again.
        let bigger = IDEM.replace("\"max_tracked_keys\": 64", "\"max_tracked_keys\": 128");
        assert_eq!(
            provision(&plugin(&bigger), &store).unwrap(),
            Provisioned::Walked
        );
        assert_eq!(store.get(&key).unwrap().unwrap().value, b"state");
    }
}
