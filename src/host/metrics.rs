//! Envoy stats for levee's [`Event`]s: ids defined once per configuration.

use proxy_wasm::types::MetricType;

use crate::metrics::{
    fallback_metric, rate_limit_metric, upstream_attempts_histogram_metric, upstream_metric,
    BreakerEvent, Event, FallbackEvent, GlobalEvent, IdempotencyEvent, Metrics, RateLimitEvent,
    UpstreamEvent, HELD_REQUESTS_METRIC, MEMORY_BOUND_METRIC,
};
use crate::pipeline::Plugin;

use super::abi;

/// Metric ids, indexed like the configuration (limit index, upstream index).
#[derive(Debug, Default)]
pub(crate) struct MetricIds {
    global: Vec<u32>,
    idempotency: Vec<u32>,
    rate_limits: Vec<[u32; 4]>,
    breakers: Vec<([u32; 8], u32)>,
    /// Per upstream: the [`UpstreamEvent`] counters and the attempts histogram.
    upstreams: Vec<([u32; 4], u32)>,
    fallbacks: Vec<[u32; 6]>,
    memory_bound: u32,
    pub(crate) held_requests: u32,
}

/// The id of a metric that is not defined (its events are dropped).
const NO_METRIC: u32 = u32::MAX;

fn define(kind: MetricType, name: &str) -> u32 {
    abi::define_metric(kind, name).unwrap_or(u32::MAX)
}

impl MetricIds {
    pub(crate) fn define_all(plugin: &Plugin) -> Self {
        let global = GlobalEvent::ALL
            .iter()
            .map(|e| define(MetricType::Counter, e.name()))
            .collect();
        let idempotency = IdempotencyEvent::ALL
            .iter()
            .map(|e| define(MetricType::Counter, e.name()))
            .collect();
        let rate_limits = plugin
            .limiter
            .limits
            .iter()
            .map(|l| {
                RateLimitEvent::ALL
                    .map(|e| define(MetricType::Counter, &rate_limit_metric(&l.config.name, e)))
            })
            .collect();
        let breakers = plugin
            .config
            .upstreams
            .iter()
            .map(|u| {
                if u.circuit_breaker.is_none() {
                    // No breaker, no series: unused metrics only clutter Prometheus.
                    return ([NO_METRIC; 8], NO_METRIC);
                }
                (
                    BreakerEvent::ALL.map(|e| {
                        define(
                            MetricType::Counter,
                            &crate::metrics::breaker_metric(&u.name, e),
                        )
                    }),
                    define(
                        MetricType::Gauge,
                        &crate::metrics::breaker_state_metric(&u.name),
                    ),
                )
            })
            .collect();
        let upstreams = plugin
            .config
            .upstreams
            .iter()
            .map(|u| {
                (
                    UpstreamEvent::ALL
                        .map(|e| define(MetricType::Counter, &upstream_metric(&u.name, e))),
                    define(
                        MetricType::Histogram,
                        &upstream_attempts_histogram_metric(&u.name),
                    ),
                )
            })
            .collect();
        let fallbacks = plugin
            .config
            .upstreams
            .iter()
            .map(|u| {
                FallbackEvent::ALL
                    .map(|e| define(MetricType::Counter, &fallback_metric(&u.name, e)))
            })
            .collect();
        let memory_bound = define(MetricType::Gauge, MEMORY_BOUND_METRIC);
        let held_requests = define(MetricType::Gauge, HELD_REQUESTS_METRIC);
        Self {
            global,
            idempotency,
            rate_limits,
            breakers,
            upstreams,
            fallbacks,
            memory_bound,
            held_requests,
        }
    }

    pub(crate) fn set_memory_bound(&self, bytes: u64) {
        let _ = abi::record_metric(self.memory_bound, bytes);
    }
}

fn position<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|e| e == x).unwrap_or(0)
}

/// Counts into Envoy stats.
pub(crate) struct HostMetrics<'a>(pub(crate) &'a MetricIds);

impl Metrics for HostMetrics<'_> {
    fn count(&mut self, event: Event) {
        let id = match event {
            Event::Global(e) => self.0.global.get(position(&GlobalEvent::ALL, &e)).copied(),
            Event::Idempotency(e) => self
                .0
                .idempotency
                .get(position(&IdempotencyEvent::ALL, &e))
                .copied(),
            Event::RateLimit { limit, what } => self
                .0
                .rate_limits
                .get(limit)
                .map(|ids| ids[position(&RateLimitEvent::ALL, &what)]),
            Event::Breaker { upstream, what } => self
                .0
                .breakers
                .get(upstream)
                .map(|(ids, _)| ids[position(&BreakerEvent::ALL, &what)]),
            Event::Fallback { upstream, what } => self
                .0
                .fallbacks
                .get(upstream)
                .map(|ids| ids[position(&FallbackEvent::ALL, &what)]),
            Event::Upstream { upstream, what } => self
                .0
                .upstreams
                .get(upstream)
                .map(|(ids, _)| ids[position(&UpstreamEvent::ALL, &what)]),
        };
        if let Some(id) = id.filter(|id| *id != NO_METRIC) {
            let _ = abi::increment_metric(id, 1);
        }
    }

    fn breaker_state(&mut self, upstream: usize, state: u8) {
        if let Some((_, gauge)) = self
            .0
            .breakers
            .get(upstream)
            .filter(|(_, g)| *g != NO_METRIC)
        {
            let _ = abi::record_metric(*gauge, u64::from(state));
        }
    }

    fn attempts_per_request(&mut self, upstream: usize, attempts: u32) {
        if let Some((_, histogram)) = self.0.upstreams.get(upstream) {
            let _ = abi::record_metric(*histogram, u64::from(attempts));
        }
    }
}
