//! levee's [`Event`]s as Envoy stats: the ids are defined once per configuration
//! ([`MetricIds`]), each event moves its stat through the ABI.

use proxy_wasm::types::MetricType;

use crate::metrics::{Event, Metrics};
use crate::pipeline::Plugin;
use crate::worker::{MetricIds, MetricKind, NO_METRIC};

use super::abi;

/// Defines every stat of `plugin` with Envoy and records the shared-data bound (`bound`).
pub(crate) fn define_all(plugin: &Plugin, bound: u64) -> MetricIds {
    let ids = MetricIds::define_all(plugin, |kind, name| {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        abi::define_metric(kind, name).unwrap_or(NO_METRIC)
    });
    let _ = abi::record_metric(ids.memory_bound, bound);
    ids
}

/// Counts into Envoy stats.
pub(crate) struct HostMetrics<'a>(pub(crate) &'a MetricIds);

impl Metrics for HostMetrics<'_> {
    fn count(&mut self, event: Event) {
        if let Some(id) = self.0.counter(event) {
            let _ = abi::increment_metric(id, 1);
        }
    }

    fn breaker_state(&mut self, upstream: usize, state: u8) {
        if let Some(gauge) = self.0.breaker_gauge(upstream) {
            let _ = abi::record_metric(gauge, u64::from(state));
        }
    }

    fn breaker_unsettled(&mut self, upstream: usize) -> Option<u64> {
        abi::get_metric(self.0.breaker_unsettled_gauge(upstream)?).ok()
    }

    fn move_breaker_unsettled(&mut self, upstream: usize, by: i64) {
        if let Some(gauge) = self.0.breaker_unsettled_gauge(upstream) {
            let _ = abi::increment_metric(gauge, by);
        }
    }

    fn attempts_per_request(&mut self, upstream: usize, attempts: u32) {
        if let Some(histogram) = self.0.attempts_histogram(upstream) {
            let _ = abi::record_metric(histogram, u64::from(attempts));
        }
    }

    fn backend_latency(&mut self, backend: usize, ms: u64) {
        if let Some(histogram) = self.0.backend_latency_histogram(backend) {
            let _ = abi::record_metric(histogram, ms);
        }
    }

    fn backend_breaker_state(&mut self, backend: usize, state: u8) {
        if let Some(gauge) = self.0.backend_breaker_gauge(backend) {
            let _ = abi::record_metric(gauge, u64::from(state));
        }
    }
}
