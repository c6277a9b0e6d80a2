//! The host's stat ids for levee's [`Event`]s: every stat a configuration can move,
//! defined once per configuration, and the id each event counts into.

use crate::metrics::{
    backend_breaker_state_metric, backend_latency_metric, backend_metric, fallback_metric,
    rate_limit_metric, upstream_attempts_histogram_metric, upstream_metric, BackendEvent,
    BreakerEvent, Event, FallbackEvent, GlobalEvent, IdempotencyEvent, RateLimitEvent,
    UpstreamEvent, HELD_REQUESTS_METRIC, MEMORY_BOUND_METRIC,
};
use crate::pipeline::Plugin;

/// The kinds of stat the host keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Metric ids, indexed like the configuration (limit index, upstream index).
#[derive(Debug, Default)]
pub struct MetricIds {
    global: Vec<u32>,
    idempotency: Vec<u32>,
    rate_limits: Vec<[u32; 4]>,
    /// Per upstream: the [`BreakerEvent`] counters, the state gauge and the unsettled gauge.
    breakers: Vec<([u32; 8], u32, u32)>,
    /// Per upstream: the [`UpstreamEvent`] counters and the attempts histogram.
    upstreams: Vec<([u32; 4], u32)>,
    fallbacks: Vec<[u32; 6]>,
    /// Per backend: the [`BackendEvent`] counters, the latency histogram, the breaker gauge.
    backends: Vec<([u32; BackendEvent::ALL.len()], u32, u32)>,
    pub memory_bound: u32,
    pub held_requests: u32,
}

/// The id of a metric that is not defined (its events are dropped).
pub const NO_METRIC: u32 = u32::MAX;

impl MetricIds {
    /// Defines every stat of `plugin` with `define` (its id, or [`NO_METRIC`] if refused).
    pub fn define_all(plugin: &Plugin, mut define: impl FnMut(MetricKind, &str) -> u32) -> Self {
        let global = GlobalEvent::ALL
            .iter()
            .map(|e| define(MetricKind::Counter, e.name()))
            .collect();
        let idempotency = IdempotencyEvent::ALL
            .iter()
            .map(|e| define(MetricKind::Counter, e.name()))
            .collect();
        let rate_limits = plugin
            .limiter
            .limits
            .iter()
            .map(|l| {
                RateLimitEvent::ALL
                    .map(|e| define(MetricKind::Counter, &rate_limit_metric(&l.config.name, e)))
            })
            .collect();
        let breakers = plugin
            .config
            .upstreams
            .iter()
            .map(|u| {
                if u.circuit_breaker.is_none() {
                    // No breaker, no series: unused metrics only clutter Prometheus.
                    return ([NO_METRIC; 8], NO_METRIC, NO_METRIC);
                }
                (
                    BreakerEvent::ALL.map(|e| {
                        define(
                            MetricKind::Counter,
                            &crate::metrics::breaker_metric(&u.name, e),
                        )
                    }),
                    define(
                        MetricKind::Gauge,
                        &crate::metrics::breaker_state_metric(&u.name),
                    ),
                    define(
                        MetricKind::Gauge,
                        &crate::metrics::breaker_unsettled_metric(&u.name),
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
                        .map(|e| define(MetricKind::Counter, &upstream_metric(&u.name, e))),
                    define(
                        MetricKind::Histogram,
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
                    .map(|e| define(MetricKind::Counter, &fallback_metric(&u.name, e)))
            })
            .collect();
        let backends = plugin
            .config
            .backends
            .iter()
            .map(|b| {
                (
                    BackendEvent::ALL
                        .map(|e| define(MetricKind::Counter, &backend_metric(&b.name, e))),
                    define(MetricKind::Histogram, &backend_latency_metric(&b.name)),
                    define(MetricKind::Gauge, &backend_breaker_state_metric(&b.name)),
                )
            })
            .collect();
        let memory_bound = define(MetricKind::Gauge, MEMORY_BOUND_METRIC);
        let held_requests = define(MetricKind::Gauge, HELD_REQUESTS_METRIC);
        Self {
            global,
            idempotency,
            rate_limits,
            breakers,
            upstreams,
            fallbacks,
            backends,
            memory_bound,
            held_requests,
        }
    }
}

fn position<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|e| e == x).unwrap_or(0)
}

impl MetricIds {
    /// The counter `event` counts into, if it is defined.
    pub fn counter(&self, event: Event) -> Option<u32> {
        let id = match event {
            Event::Global(e) => self.global.get(position(&GlobalEvent::ALL, &e)).copied(),
            Event::Idempotency(e) => self
                .idempotency
                .get(position(&IdempotencyEvent::ALL, &e))
                .copied(),
            Event::RateLimit { limit, what } => self
                .rate_limits
                .get(limit)
                .map(|ids| ids[position(&RateLimitEvent::ALL, &what)]),
            Event::Breaker { upstream, what } => self
                .breakers
                .get(upstream)
                .map(|(ids, _, _)| ids[position(&BreakerEvent::ALL, &what)]),
            Event::Fallback { upstream, what } => self
                .fallbacks
                .get(upstream)
                .map(|ids| ids[position(&FallbackEvent::ALL, &what)]),
            Event::Upstream { upstream, what } => self
                .upstreams
                .get(upstream)
                .map(|(ids, _)| ids[position(&UpstreamEvent::ALL, &what)]),
            Event::Backend { backend, what } => self
                .backends
                .get(backend)
                .map(|(ids, _, _)| ids[position(&BackendEvent::ALL, &what)]),
        };
        id.filter(|id| *id != NO_METRIC)
    }

    /// The state gauge of upstream `upstream`'s breaker, if it has one.
    pub fn breaker_gauge(&self, upstream: usize) -> Option<u32> {
        self.breakers
            .get(upstream)
            .map(|(_, gauge, _)| *gauge)
            .filter(|g| *g != NO_METRIC)
    }

    /// The unsettled gauge of upstream `upstream`'s breaker, if it has one.
    pub fn breaker_unsettled_gauge(&self, upstream: usize) -> Option<u32> {
        self.breakers
            .get(upstream)
            .map(|(_, _, gauge)| *gauge)
            .filter(|g| *g != NO_METRIC)
    }

    /// The call-latency histogram of backend `backend`.
    pub fn backend_latency_histogram(&self, backend: usize) -> Option<u32> {
        self.backends
            .get(backend)
            .map(|(_, h, _)| *h)
            .filter(|h| *h != NO_METRIC)
    }

    /// The breaker-state gauge of backend `backend`.
    pub fn backend_breaker_gauge(&self, backend: usize) -> Option<u32> {
        self.backends
            .get(backend)
            .map(|(_, _, g)| *g)
            .filter(|g| *g != NO_METRIC)
    }

    /// The attempts-per-request histogram of upstream `upstream`.
    pub fn attempts_histogram(&self, upstream: usize) -> Option<u32> {
        self.upstreams
            .get(upstream)
            .map(|(_, histogram)| *histogram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{breaker_state_metric, GlobalEvent};

    fn plugin(doc: &str) -> Plugin {
        Plugin::new(
            crate::config::parse(doc.as_bytes()).expect("config"),
            [0; 16],
        )
    }

    #[test]
    fn each_event_counts_into_its_own_stat_and_a_missing_breaker_has_none() {
        let doc = r#"{ "rate_limits": [{ "name": "rl", "limit": 1, "window": "1s" }],
            "upstreams": { "a": { "circuit_breaker": {} }, "b": {} },
            "routes": [{ "match": { "path_prefix": "/" }, "upstream": "a" }] }"#;
        let mut names = Vec::new();
        let ids = MetricIds::define_all(&plugin(doc), |kind, name| {
            names.push((kind, name.to_string()));
            names.len() as u32 - 1
        });
        let named = |id: Option<u32>| id.map(|id| names[id as usize].1.clone());
        let rate_limited = Event::RateLimit {
            limit: 0,
            what: RateLimitEvent::ALL[0],
        };
        assert_eq!(
            named(ids.counter(rate_limited)),
            Some(rate_limit_metric("rl", RateLimitEvent::ALL[0]))
        );
        assert_eq!(named(ids.breaker_gauge(0)), Some(breaker_state_metric("a")));
        assert_eq!(ids.breaker_gauge(1), None, "no breaker, no series");
        let opened = Event::Breaker {
            upstream: 1,
            what: BreakerEvent::ALL[0],
        };
        assert_eq!(ids.counter(opened), None);
        let globals: Vec<_> = GlobalEvent::ALL
            .iter()
            .map(|e| ids.counter(Event::Global(*e)))
            .collect();
        let mut distinct = globals.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), globals.len());
        assert_eq!(names[ids.held_requests as usize].0, MetricKind::Gauge);
    }

    #[test]
    fn a_refused_definition_drops_its_events() {
        let ids = MetricIds::define_all(&plugin("{}"), |_, _| NO_METRIC);
        assert_eq!(ids.counter(Event::Global(GlobalEvent::ALL[0])), None);
    }
}
