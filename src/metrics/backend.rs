//! What levee counts about its backends (etcd, a rate limit service): how each gRPC call
//! ended, what `on_backend_error` decided, and what became of idempotency records kept there.
//! Kept apart from the per-request events because these are counted per `backends` entry.

/// Per backend (`backends` entry): how its gRPC calls ended, and what `on_backend_error`
/// decided when one failed. Named `levee_backend.<backend>.calls.<result>` /
/// `.decisions.<policy>`, so that `stats_tags` make both the backend and the result labels:
/// `levee_backend_calls{levee_backend="records",levee_result="timeout"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendEvent {
    /// The call answered with gRPC status OK.
    CallOk,
    /// The call failed before its timeout (refused, reset, no healthy host, a non-OK status
    /// other than a refusal below).
    CallError,
    /// The backend answered and refused the request itself (a bad argument, a failed
    /// precondition such as etcd's "lease already exists"): it is reachable and working.
    CallRefused,
    /// The backend answered `RESOURCE_EXHAUSTED`: it is reachable but takes no more writes —
    /// etcd's "database space exceeded" once its `--quota-backend-bytes` is reached (its NOSPACE
    /// alarm), or "too many requests". A failure for the backend's breaker: it lasts until an
    /// operator frees space.
    CallExhausted,
    /// The call failed after its timeout had elapsed (Envoy reports it as UNAVAILABLE too).
    CallTimeout,
    /// The backend's breaker was open: answered at once, nothing sent.
    CallRejectedOpen,
    /// `on_backend_error` decided: refuse the request.
    DecisionDeny,
    /// `on_backend_error` decided: let the request through without the backend.
    DecisionAllow,
    /// `on_backend_error` decided: the local tier alone decides (global rate limits).
    DecisionLocal,
    /// A reservation of quota was refilled from the backend (global limits, `reserve` mode).
    ReserveRefill,
    /// An idempotency lock renewal was refused by the fencing revision: another owner took
    /// the key while its request ran.
    RenewalFenced,
    /// An idempotency record's completion was refused by the fencing revision.
    CompletionFenced,
    /// An idempotency record's completion could not be written and is sent again later.
    CompletionRetried,
    /// An idempotency record's completion could not be written before its lock would expire:
    /// the key's outcome is left unknown.
    CompletionUnknown,
}

impl BackendEvent {
    pub const ALL: [BackendEvent; 14] = [
        Self::CallOk,
        Self::CallError,
        Self::CallRefused,
        Self::CallExhausted,
        Self::CallTimeout,
        Self::CallRejectedOpen,
        Self::DecisionDeny,
        Self::DecisionAllow,
        Self::DecisionLocal,
        Self::ReserveRefill,
        Self::RenewalFenced,
        Self::CompletionFenced,
        Self::CompletionRetried,
        Self::CompletionUnknown,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Self::CallOk => "calls.ok",
            Self::CallError => "calls.error",
            Self::CallRefused => "calls.refused",
            Self::CallExhausted => "calls.exhausted",
            Self::CallTimeout => "calls.timeout",
            Self::CallRejectedOpen => "calls.rejected_open",
            Self::DecisionDeny => "decisions.deny",
            Self::DecisionAllow => "decisions.allow",
            Self::DecisionLocal => "decisions.local",
            Self::ReserveRefill => "reserve_refills",
            Self::RenewalFenced => "renewals_fenced",
            Self::CompletionFenced => "completions_fenced",
            Self::CompletionRetried => "completions_retried",
            Self::CompletionUnknown => "completions_unknown",
        }
    }
}

/// Metric names for a backend event.
pub fn backend_metric(backend: &str, what: BackendEvent) -> String {
    format!("levee_backend.{backend}.{}", what.name())
}

/// The histogram of a backend's call latencies, in milliseconds.
pub fn backend_latency_metric(backend: &str) -> String {
    format!("levee_backend.{backend}.call_latency_ms")
}

/// The state gauge of a backend's breaker (0 closed, 1 open, 2 half-open).
pub fn backend_breaker_state_metric(backend: &str) -> String {
    format!("levee_backend.{backend}.breaker_state")
}
