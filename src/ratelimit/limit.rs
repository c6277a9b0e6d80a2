//! One configured limit with its shared slot table, and the values that pass between the
//! engine's two phases (read and evaluate, then commit). Kept apart from the engine so that
//! the single-limit steps in `commit` and the engine over all limits both import it.

use crate::config::{BackendConfig, RateLimitConfig};
use crate::ratelimit::algorithm;
use crate::ratelimit::global::pool::POOL_BYTES;
use crate::ratelimit::global::GlobalLimit;
use crate::ratelimit::{Evaluation, Params};
use crate::store::hash::KeyHash;
use crate::store::slots::{Eviction, Lookup, SlotTable};
use crate::time::duration_nanos;

/// How a rate-limit table makes room for a new client key: the entry written longest ago goes.
pub(crate) const EVICTION: Eviction = Eviction::LeastRecentlyTouched;

/// One configured limit with its shared table.
#[derive(Debug)]
pub struct Limit {
    pub config: RateLimitConfig,
    pub params: Params,
    pub table: SlotTable,
    /// The mesh-wide side, when the limit is also kept by a rate limit service.
    pub global: Option<GlobalLimit>,
}

impl Limit {
    pub fn new(config: &RateLimitConfig, backends: &[BackendConfig], slots: u32) -> Self {
        let params = Params {
            algorithm: config.algorithm,
            limit: config.limit,
            window_ns: duration_nanos(config.window),
            burst: config.burst,
            max_delay_ns: duration_nanos(config.max_delay),
        };
        Self {
            config: config.clone(),
            params,
            table: SlotTable::new("rl", &config.name, slots),
            global: GlobalLimit::from_config(config, backends, slots),
        }
    }

    pub fn memory_bound(&self) -> u64 {
        let pools = self
            .global
            .as_ref()
            .map_or(0, |g| g.pools.memory_bound(POOL_BYTES));
        self.table
            .memory_bound(algorithm::max_state_bytes(&self.params))
            .saturating_add(pools)
    }
}

/// An admission read and evaluated in phase 1, waiting for its commit; phase 2 commits it where
/// it lies and leaves the verdict that stands in `evaluation`.
#[derive(Debug)]
pub(crate) struct Pending {
    pub index: usize,
    pub hash: KeyHash,
    pub lookup: Lookup,
    pub evaluation: Evaluation,
    /// The request's key for the limit, kept when a rate limit service must hear it.
    pub key: Option<Vec<u8>>,
    /// Phase 2 committed it and wrote a state (what a refund would give back).
    pub committed: bool,
}

/// What phase 1 leaves for phase 2: the admissions to commit, and the limits that admitted
/// the request without counting it (their store or their service failed open).
#[derive(Debug, Default)]
pub(crate) struct Phase1 {
    pub pending: Vec<Pending>,
    pub failed_open: Vec<usize>,
}
