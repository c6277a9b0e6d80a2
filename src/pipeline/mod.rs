//! The request pipeline as plain Rust: the layers in request order (rate limits, then
//! idempotency, circuit breaker, forwarding, fallback), each returning a decision value.
//!
//! [`Plugin`] is everything built once per plugin configuration (validated config, slot
//! tables, the keyed hasher). [`flow::RequestFlow`] is one request's progress through the
//! layers; the host adapter calls it from Envoy's callbacks and turns its [`flow::Step`]s
//! into host calls. Because nothing here touches `proxy_wasm`, the whole pipeline is tested
//! natively with an in-memory store and a fake clock.

pub mod env;
pub mod etcd_records;
pub mod flow;
pub mod header_reads;
pub mod step;

pub use env::Env;
pub use step::Enqueue;

use crate::config::LeveeConfig;
use crate::ratelimit::engine::RateLimiter;
use crate::store::hash::KeyHasher;
use crate::store::slots::SlotTable;

/// Everything derived from one plugin configuration.
#[derive(Debug)]
pub struct Plugin {
    pub config: LeveeConfig,
    pub hasher: KeyHasher,
    pub limiter: RateLimiter,
    pub idempotency: Option<crate::idempotency::layer::IdempotencyLayer>,
    /// Per upstream (same index as `config.upstreams`): its stale cache, if configured.
    pub caches: Vec<Option<crate::fallback::cache::StaleCache>>,
    /// The common path reads at most two distinct headers ([`header_reads`]): the host
    /// adapter reads them one by one instead of fetching the whole map.
    pub few_header_reads: bool,
    /// Records in etcd (`idempotency.backend`): this worker's leases and completions.
    pub etcd_records: Option<etcd_records::EtcdRecords>,
}

impl Plugin {
    pub fn new(config: LeveeConfig, secret: [u8; 16]) -> Self {
        Self::with_hasher(config, KeyHasher::new(secret))
    }

    /// With the hasher every worker VM shares ([`KeyHasher::load_or_create`]).
    pub fn with_hasher(config: LeveeConfig, hasher: KeyHasher) -> Self {
        let limiter = RateLimiter::with_backends(
            &config.rate_limits,
            &config.backends,
            config.limits.max_tracked_keys,
        );
        let idempotency = config.idempotency.as_ref().map(|c| {
            crate::idempotency::layer::IdempotencyLayer::new(c, config.limits.max_tracked_keys)
        });
        let caches = config
            .upstreams
            .iter()
            .map(|u| {
                u.cache.as_ref().map(|c| {
                    crate::fallback::cache::StaleCache::new(
                        &u.name,
                        c,
                        config.limits.max_tracked_keys,
                    )
                })
            })
            .collect();
        let etcd_records =
            etcd_records::EtcdTarget::of(&config).map(etcd_records::EtcdRecords::new);
        Self {
            etcd_records,
            few_header_reads: header_reads::few_header_reads(&config),
            hasher,
            limiter,
            idempotency,
            caches,
            config,
        }
    }

    /// True when no layer is configured: requests pass untouched, at the cost of one call.
    pub fn is_pass_through(&self) -> bool {
        self.limiter.is_empty()
            && self.config.idempotency.is_none()
            && self.config.routes.is_empty()
    }

    /// Every slot table, to pre-create at configure time.
    pub fn tables(&self) -> impl Iterator<Item = &SlotTable> {
        self.limiter
            .limits
            .iter()
            .flat_map(|l| std::iter::once(&l.table).chain(l.global.as_ref().map(|g| &g.pools)))
            .chain(self.idempotency.as_ref().map(|i| &i.table))
            .chain(self.caches.iter().flatten().flat_map(|c| c.tables()))
    }

    /// Plain shared-data keys (one per upstream or backend breaker, …) to pre-create at configure time.
    pub fn plain_keys(&self) -> Vec<String> {
        let breakers = self
            .config
            .upstreams
            .iter()
            .filter(|u| u.circuit_breaker.is_some())
            .map(|u| crate::breaker::gate::breaker_key(&u.name));
        let budgets = self
            .config
            .upstreams
            .iter()
            .filter(|u| u.retry.as_ref().is_some_and(|r| r.budget.is_some()))
            .map(|u| crate::forward::budget_key(&u.name));
        let idempotency = self.idempotency.iter().flat_map(|i| i.plain_keys());
        let caches = self.caches.iter().flatten().flat_map(|c| c.body_keys());
        let backends = self
            .config
            .backends
            .iter()
            .map(|b| crate::breaker::backend::backend_breaker_key(&b.name));
        breakers
            .chain(budgets)
            .chain(idempotency)
            .chain(caches)
            .chain(backends)
            .collect()
    }

    /// The upstream a request goes to: the first route whose match holds.
    pub fn route(&self, req: &dyn crate::request::RequestAttributes) -> Option<usize> {
        self.config
            .routes
            .iter()
            .find(|r| crate::request::matcher::matches(&r.matcher, req))
            .map(|r| r.upstream)
    }

    /// Upper bound of the shared-data bytes this configuration's tables can occupy.
    pub fn memory_bound(&self) -> u64 {
        let limits: u64 = self.limiter.limits.iter().map(|l| l.memory_bound()).sum();
        let caches: u64 = self.caches.iter().flatten().map(|c| c.memory_bound()).sum();
        limits
            .saturating_add(self.idempotency.as_ref().map_or(0, |i| i.memory_bound()))
            .saturating_add(caches)
    }
}
