//! What levee counts, as values, and the small trait the host implements to count it.
//!
//! Pure code reports events (`Event::RateLimit { limit: 2, what: RateLimitEvent::Rejected }`);
//! the host maps each to an Envoy metric id defined once at configure time, so the request
//! path never formats a metric name. Names are `levee_<layer>.<name>.<event>` so that the
//! `stats_tags` shipped in `envoy/envoy.yaml` turn `<name>` into a Prometheus label:
//! `levee_ratelimit_allowed{levee_limit="per-user"}`.

mod backend;

pub use backend::{
    backend_breaker_state_metric, backend_latency_metric, backend_metric, BackendEvent,
};

/// Per rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitEvent {
    Allowed,
    Rejected,
    ShadowRejected,
    Delayed,
}

impl RateLimitEvent {
    pub const ALL: [RateLimitEvent; 4] = [
        Self::Allowed,
        Self::Rejected,
        Self::ShadowRejected,
        Self::Delayed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Rejected => "rejected",
            Self::ShadowRejected => "shadow_rejected",
            Self::Delayed => "delayed",
        }
    }
}

/// Per upstream circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerEvent {
    Opened,
    HalfOpened,
    Closed,
    Rejected,
    ProbeSuccess,
    ProbeFailure,
    Failure,
    Success,
}

impl BreakerEvent {
    pub const ALL: [BreakerEvent; 8] = [
        Self::Opened,
        Self::HalfOpened,
        Self::Closed,
        Self::Rejected,
        Self::ProbeSuccess,
        Self::ProbeFailure,
        Self::Failure,
        Self::Success,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::HalfOpened => "half_opened",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::ProbeSuccess => "probe_success",
            Self::ProbeFailure => "probe_failure",
            Self::Failure => "failures",
            Self::Success => "successes",
        }
    }
}

/// Idempotency-key outcomes (one layer per plugin, so no label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyEvent {
    Stored,
    Replayed,
    Conflict,
    Mismatch,
    Released,
    Unknown,
    TooLarge,
    InvalidKey,
    /// A new key evicted the completed record written longest ago from its full bucket.
    Evicted,
}

impl IdempotencyEvent {
    pub const ALL: [IdempotencyEvent; 9] = [
        Self::Stored,
        Self::Replayed,
        Self::Conflict,
        Self::Mismatch,
        Self::Released,
        Self::Unknown,
        Self::TooLarge,
        Self::InvalidKey,
        Self::Evicted,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::Stored => "levee_idempotency_stored",
            Self::Replayed => "levee_idempotency_replayed",
            Self::Conflict => "levee_idempotency_conflict",
            Self::Mismatch => "levee_idempotency_mismatch",
            Self::Released => "levee_idempotency_released",
            Self::Unknown => "levee_idempotency_unknown",
            Self::TooLarge => "levee_idempotency_too_large",
            Self::InvalidKey => "levee_idempotency_invalid_key",
            Self::Evicted => "levee_idempotency_evicted",
        }
    }
}

/// Process-wide events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalEvent {
    /// Shared state could not be updated (CAS retries exhausted or host error).
    InternalError,
    /// A request paused for its body never saw a body callback
    /// (`allow_on_headers_stop_iteration` missing).
    BodyNotDelivered,
}

impl GlobalEvent {
    pub const ALL: [GlobalEvent; 2] = [Self::InternalError, Self::BodyNotDelivered];
    pub fn name(self) -> &'static str {
        match self {
            Self::InternalError => "levee_internal_errors",
            Self::BodyNotDelivered => "levee_body_not_delivered",
        }
    }
}

/// Per upstream in callout mode: attempts sent and retries (see [`crate::forward`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// One callout sent to the upstream (first attempts and retries alike).
    Attempts,
    /// One retry scheduled (after its backoff the attempt is counted in `Attempts`).
    Retries,
    /// A request that still wanted a retry ran out of attempts or of time before its deadline.
    RetriesExhausted,
    /// A retry refused because the shared retry budget was spent.
    BudgetExhausted,
}

impl UpstreamEvent {
    pub const ALL: [UpstreamEvent; 4] = [
        Self::Attempts,
        Self::Retries,
        Self::RetriesExhausted,
        Self::BudgetExhausted,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::Attempts => "attempts",
            Self::Retries => "retries",
            Self::RetriesExhausted => "retries_exhausted",
            Self::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// Per upstream: which fallback answered (or that none could).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackEvent {
    StaleCache,
    Secondary,
    Queued,
    Static,
    /// The chain ran and nothing answered.
    Exhausted,
    /// A queued request was delivered to the upstream.
    Delivered,
}

impl FallbackEvent {
    pub const ALL: [FallbackEvent; 6] = [
        Self::StaleCache,
        Self::Secondary,
        Self::Queued,
        Self::Static,
        Self::Exhausted,
        Self::Delivered,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::StaleCache => "stale_cache",
            Self::Secondary => "secondary",
            Self::Queued => "queued",
            Self::Static => "static",
            Self::Exhausted => "exhausted",
            Self::Delivered => "queue_delivered",
        }
    }
}

/// Metric names for a fallback event.
pub fn fallback_metric(upstream: &str, what: FallbackEvent) -> String {
    format!("levee_fallback.{upstream}.{}", what.name())
}

/// One countable event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Global(GlobalEvent),
    RateLimit {
        limit: usize,
        what: RateLimitEvent,
    },
    Idempotency(IdempotencyEvent),
    Breaker {
        upstream: usize,
        what: BreakerEvent,
    },
    Upstream {
        upstream: usize,
        what: UpstreamEvent,
    },
    Fallback {
        upstream: usize,
        what: FallbackEvent,
    },
    /// `backend` indexes the config's `backends`.
    Backend {
        backend: usize,
        what: BackendEvent,
    },
}

/// Where events and gauges go: Envoy stats in production, a recorder in tests.
pub trait Metrics {
    fn count(&mut self, event: Event);
    /// Circuit state per upstream: 0 closed, 1 open, 2 half-open.
    fn breaker_state(&mut self, upstream: usize, state: u8);
    /// Attempts one callout-mode request made in all (a histogram sample per request).
    fn attempts_per_request(&mut self, _upstream: usize, _attempts: u32) {}
    /// How long one call to backend `backend` took (a histogram sample per call).
    fn backend_latency(&mut self, _backend: usize, _ms: u64) {}
    /// Breaker state per backend: 0 closed, 1 open, 2 half-open.
    fn backend_breaker_state(&mut self, _backend: usize, _state: u8) {}
    /// The process-wide *unsettled* gauge of an upstream's breaker (see
    /// [`crate::breaker::gate`]): 0 only while its breaker is CLOSED with no failure streak.
    /// `None` when the sink cannot read it (the breaker then reads its shared state).
    fn breaker_unsettled(&mut self, _upstream: usize) -> Option<u64> {
        None
    }
    /// Moves the unsettled gauge of an upstream's breaker by `by`.
    fn move_breaker_unsettled(&mut self, _upstream: usize, _by: i64) {}
}

/// Metric names for a rate limit event.
pub fn rate_limit_metric(limit_name: &str, what: RateLimitEvent) -> String {
    format!("levee_ratelimit.{limit_name}.{}", what.name())
}

/// Metric names for a breaker event.
pub fn breaker_metric(upstream: &str, what: BreakerEvent) -> String {
    format!("levee_breaker.{upstream}.{}", what.name())
}

pub fn breaker_state_metric(upstream: &str) -> String {
    format!("levee_breaker.{upstream}.state")
}

/// The gauge that lets a worker see a quiet breaker without reading its shared state.
pub fn breaker_unsettled_metric(upstream: &str) -> String {
    format!("levee_breaker.{upstream}.unsettled")
}

/// Metric names for an upstream (callout) event.
pub fn upstream_metric(upstream: &str, what: UpstreamEvent) -> String {
    format!("levee_upstream.{upstream}.{}", what.name())
}

/// The histogram of attempts per callout-mode request.
pub fn upstream_attempts_histogram_metric(upstream: &str) -> String {
    format!("levee_upstream.{upstream}.attempts_per_request")
}

pub const MEMORY_BOUND_METRIC: &str = "levee_memory_bound_bytes";

/// Requests levee currently holds paused (shaper delays, backoff waits, body waits).
pub const HELD_REQUESTS_METRIC: &str = "levee_held_requests";

/// Collects events in memory (tests, and the host's per-callback buffer).
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub events: Vec<Event>,
    pub states: Vec<(usize, u8)>,
    /// `(upstream, attempts)` samples of [`Metrics::attempts_per_request`].
    pub attempts_per_request: Vec<(usize, u32)>,
    /// `(backend, ms)` samples of [`Metrics::backend_latency`].
    pub backend_latencies: Vec<(usize, u64)>,
    /// `(backend, state)` of [`Metrics::backend_breaker_state`].
    pub backend_states: Vec<(usize, u8)>,
    /// The unsettled gauge per upstream index (absent: 0), as [`Metrics::breaker_unsettled`]
    /// reads it.
    pub unsettled: std::collections::HashMap<usize, i64>,
}

impl Metrics for Recorder {
    fn count(&mut self, event: Event) {
        self.events.push(event);
    }
    fn breaker_state(&mut self, upstream: usize, state: u8) {
        self.states.push((upstream, state));
    }
    fn attempts_per_request(&mut self, upstream: usize, attempts: u32) {
        self.attempts_per_request.push((upstream, attempts));
    }
    fn backend_latency(&mut self, backend: usize, ms: u64) {
        self.backend_latencies.push((backend, ms));
    }
    fn backend_breaker_state(&mut self, backend: usize, state: u8) {
        self.backend_states.push((backend, state));
    }
    fn breaker_unsettled(&mut self, upstream: usize) -> Option<u64> {
        let value = self.unsettled.get(&upstream).copied().unwrap_or(0);
        // Envoy's gauges are unsigned: a value below 0 would wrap to a huge one.
        Some(u64::try_from(value).unwrap_or(u64::MAX))
    }
    fn move_breaker_unsettled(&mut self, upstream: usize, by: i64) {
        *self.unsettled.entry(upstream).or_insert(0) += by;
    }
}

impl Recorder {
    pub fn count_of(&self, event: Event) -> usize {
        self.events.iter().filter(|e| **e == event).count()
    }
}
