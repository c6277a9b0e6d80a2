//! What a configuration costs Envoy before it serves a request: the shared-data bytes its
//! tables can take and the shared-data keys `on_configure` creates — and the ceiling that
//! refuses a config that costs too much.
//!
//! Why a ceiling? Every per-client table is pre-created in full at configure time (the request
//! path never creates keys, see [`crate::store::cas`]), so both its memory and the time
//! `on_configure` spends creating it grow with `limits.max_tracked_keys` and the byte limits
//! of the idempotency store and caches. A config with `max_tracked_keys: 16777216` and
//! idempotency is valid field by field, yet implies ~21 million keys: Envoy spends about a
//! minute in every `on_configure` and grows by gigabytes. So a config whose bound exceeds
//! `limits.max_memory_bytes` is refused, with both numbers and the fix in the message. Since
//! the cheapest key costs [`MIN_BYTES_PER_KEY`] bytes of the bound, the ceiling also bounds
//! the number of keys, and with it the configure time.
//!
//! [`Footprint::of`] is computed from the built [`Plugin`], the very tables `on_configure`
//! creates, so what `levee check` prints, what the filter logs at configure and the
//! `levee_memory_bound_bytes` gauge are one number.

use crate::config::{defaults, ConfigError, LeveeConfig};
use crate::pipeline::Plugin;
use crate::store::slots::ENVOY_PER_KEY_OVERHEAD_BYTES;

/// The fewest bytes of the bound any pre-created table key accounts for: Envoy's per-key
/// overhead alone (real keys add their name and their largest value on top). So a config
/// within a ceiling of `C` bytes creates at most `C / MIN_BYTES_PER_KEY` table keys.
pub const MIN_BYTES_PER_KEY: u64 = ENVOY_PER_KEY_OVERHEAD_BYTES;

/// Shared-data keys the first `on_configure` creates per second: measured with Envoy 1.40 on
/// a loaded 2-core machine, one to two million keys in 2.5 to 4 s (each key one `get` and one
/// `set`); rounded down. Used only for the estimate `levee check` prints.
pub const KEYS_CREATED_PER_SECOND: u64 = 250_000;

/// One part of the config that owns shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The JSON path of the block, e.g. `rate_limits[0]`, `upstreams.api.cache`.
    pub path: String,
    /// Upper bound of the shared-data bytes it can take.
    pub bytes: u64,
    /// Shared-data keys created for it at configure time.
    pub keys: u64,
}

/// The shared-data cost of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// Each table-owning block, in config order.
    pub parts: Vec<Part>,
    /// Small fixed keys (breaker states, retry budgets, the hash secret, markers): counted in
    /// [`Self::keys`], too small to count in the bound.
    pub fixed_keys: u64,
}

impl Footprint {
    /// The footprint of the tables `plugin` pre-creates.
    pub fn of(plugin: &Plugin) -> Self {
        let mut parts = Vec::new();
        for (i, limit) in plugin.limiter.limits.iter().enumerate() {
            parts.push(Part {
                path: format!("rate_limits[{i}]"),
                bytes: limit.memory_bound(),
                keys: u64::from(limit.table.buckets())
                    + limit
                        .global
                        .as_ref()
                        .map_or(0, |g| u64::from(g.pools.buckets())),
            });
        }
        if let Some(idem) = &plugin.idempotency {
            parts.push(Part {
                path: "idempotency".into(),
                bytes: idem.memory_bound(),
                // Records, one body key per record slot, and the stored-bytes budget key.
                keys: u64::from(idem.table.buckets()) + u64::from(idem.body_slots) + 1,
            });
        }
        for (upstream, cache) in plugin.config.upstreams.iter().zip(&plugin.caches) {
            if let Some(cache) = cache {
                parts.push(Part {
                    path: format!("upstreams.{}.cache", upstream.name),
                    bytes: cache.memory_bound(),
                    keys: u64::from(cache.index().buckets()) + u64::from(cache.body_slots()),
                });
            }
        }
        let upstream_keys = plugin.config.upstreams.iter().map(|u| {
            u64::from(u.circuit_breaker.is_some())
                + u64::from(u.retry.as_ref().is_some_and(|r| r.budget.is_some()))
        });
        // The hash secret, the CAS probe key and the provisioned marker.
        let fixed_keys = 3 + upstream_keys.sum::<u64>();
        Self { parts, fixed_keys }
    }

    /// Upper bound of the shared-data bytes (what `levee_memory_bound_bytes` reports).
    pub fn bytes(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.bytes))
    }

    /// Shared-data keys that exist once `on_configure` has run.
    pub fn keys(&self) -> u64 {
        self.parts
            .iter()
            .fold(self.fixed_keys, |sum, p| sum.saturating_add(p.keys))
    }

    /// Estimated time of the first `on_configure` (creating every key), in milliseconds.
    pub fn configure_millis(&self) -> u64 {
        self.keys().saturating_mul(1_000) / KEYS_CREATED_PER_SECOND
    }

    /// Refuses the footprint if its bound exceeds `config.limits.max_memory_bytes`. The error
    /// names both numbers, the block that takes the most and how to raise the ceiling.
    pub fn check(&self, config: &LeveeConfig) -> Result<(), ConfigError> {
        let ceiling = config.limits.max_memory_bytes;
        let bound = self.bytes();
        if bound <= ceiling {
            return Ok(());
        }
        let largest = self
            .parts
            .iter()
            .max_by_key(|p| p.bytes)
            .map(|p| format!("; the largest part is {} with {}", p.path, human(p.bytes)))
            .unwrap_or_default();
        Err(ConfigError {
            path: "limits.max_memory_bytes".into(),
            message: format!(
                "this config's shared-data tables can take {} ({bound} bytes), over the \
                 ceiling of {} ({ceiling} bytes){largest}. Lower limits.max_tracked_keys \
                 ({}) or the idempotency / cache byte limits, or raise limits.max_memory_bytes \
                 to at least {bound} (it accepts up to {}; configure time grows with it: this \
                 config creates {} shared-data keys)",
                human(bound),
                human(ceiling),
                config.limits.max_tracked_keys,
                human(defaults::MAX_MAX_MEMORY_BYTES),
                self.keys(),
            ),
        })
    }
}

/// Parses a config, builds what `on_configure` builds and checks it against the ceiling: the
/// whole validation the filter runs before it creates a key, for `levee check` and tests.
pub fn validate(json: &[u8]) -> Result<(LeveeConfig, Footprint), ConfigError> {
    let config = crate::config::parse(json)?;
    let plugin = Plugin::new(config, [0; 16]);
    let footprint = Footprint::of(&plugin);
    footprint.check(&plugin.config)?;
    Ok((plugin.config, footprint))
}

/// `1.5 GiB`, `256 MiB`, `12 KiB`, `900 bytes`: one decimal, binary units.
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let tenths = bytes.saturating_mul(10) / size;
            return if tenths.is_multiple_of(10) {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
#[path = "footprint_tests.rs"]
mod tests;
