//! The validated plugin configuration: what the rest of levee reads.
//!
//! These types are built only by [`super::parse`], which turns the raw JSON (see `raw.rs`)
//! into them after checking every field, so code that holds a [`LeveeConfig`] never needs to
//! re-check a range, a reference or a name. Defaults are filled in here, not at use sites.

use std::time::Duration;

/// The whole plugin configuration. `{}` parses to a pass-through config.
#[derive(Debug, Clone, PartialEq)]
pub struct LeveeConfig {
    pub client_ip: ClientIpConfig,
    pub limits: Limits,
    pub rate_limits: Vec<RateLimitConfig>,
    pub rate_limit_headers: RateLimitHeaders,
    pub idempotency: Option<IdempotencyConfig>,
    /// In declaration order; `routes[i].upstream` indexes this.
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// The remote engines (`backends`), in declaration order; `idempotency.backend` and
    /// `rate_limits[].global.backend` index this.
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIpConfig {
    /// How many trusted proxies append to X-Forwarded-For after the client's entry: the
    /// client is the (N+1)-th entry from the right (default 0: the rightmost entry); see
    /// `request::client_ip` for the fallback to `source.address`.
    pub xff_trusted_hops: u32,
    /// IPv6 clients are keyed by this prefix length (default 64).
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Slots per table (one table per rate limit, idempotency, cache). Default 65536.
    pub max_tracked_keys: u32,
    /// The ceiling on the shared-data bytes the config's tables may take; a config whose
    /// bound exceeds it is refused (`crate::footprint`). Default 512 MiB.
    pub max_memory_bytes: u64,
}

/// Which request a block applies to. Every present condition must hold; empty = every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMatch {
    pub path_prefix: Option<String>,
    /// Upper-case methods; empty = any.
    pub methods: Vec<String>,
    pub route_name: Option<String>,
    /// Lower-case header names with exact values.
    pub headers: Vec<(String, String)>,
}

/// One part of a key that identifies "who" a limit or record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// Envoy's computed downstream address (`source.address`), port stripped.
    SourceIp,
    /// levee's own reading of X-Forwarded-For with `client_ip.xff_trusted_hops`.
    ClientIp,
    Method,
    /// Normalised path without the query string.
    Path,
    RouteName,
    /// Lower-case header name.
    Header(String),
    Query(String),
    /// `metadata:FILTER/PATH` → filter name and the path inside its struct.
    Metadata {
        filter: String,
        path: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    FixedWindow,
    SlidingWindowLog,
    SlidingWindowCounter,
    TokenBucket,
    LeakyBucket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInternalError {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub name: String,
    pub matcher: RequestMatch,
    pub key: Vec<KeyPart>,
    pub algorithm: Algorithm,
    pub limit: u64,
    pub window: Duration,
    /// token_bucket / leaky_bucket capacity; equals `limit` when not given.
    pub burst: u64,
    /// leaky_bucket only; zero = police (reject), > 0 = shape (delay up to this).
    pub max_delay: Duration,
    pub mode: Mode,
    pub status: u16,
    pub on_internal_error: OnInternalError,
    /// A mesh-wide limit kept by a rate limit service; `None` = this Envoy's tables alone.
    pub global: Option<GlobalLimit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitHeaders {
    XRateLimit,
    Ietf,
    Both,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConcurrent {
    Reject,
    Wait,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyConfig {
    /// Upper-case; default POST, PATCH.
    pub methods: Vec<String>,
    pub matcher: RequestMatch,
    /// Lower-case header name; default `idempotency-key`.
    pub header: String,
    pub required: bool,
    pub scope: Vec<KeyPart>,
    pub ttl: Duration,
    pub lock_timeout: Duration,
    pub fingerprint: bool,
    pub on_concurrent: OnConcurrent,
    pub release_on: Vec<u16>,
    pub max_key_length: u32,
    pub max_body_bytes: u64,
    pub max_stored_bytes: u64,
    pub on_internal_error: OnInternalError,
    /// Index into [`LeveeConfig::backends`] (always an etcd backend); `None` = shared data.
    pub backend: Option<usize>,
    /// What a keyed request gets when the backend cannot be reached (only with `backend`).
    pub on_backend_error: IdempotencyOnBackendError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Router,
    Callout,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub forward: Forward,
    pub cluster: Option<String>,
    pub authority: Option<String>,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    pub retry: Option<RetryConfig>,
    pub circuit_breaker: Option<BreakerConfig>,
    pub cache: Option<CacheConfig>,
    pub fallback: Vec<FallbackEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Full,
    Equal,
    Decorrelated,
    None,
}

/// A class of upstream outcome, as `retry_on` and `failure_on` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// Any 500–599 answer.
    FiveXx,
    /// 502, 503 or 504.
    GatewayError,
    /// No answer within the attempt timeout.
    Timeout,
    /// The attempt ended with no response headers.
    Reset,
    /// Envoy's 503 "upstream connect error".
    ConnectFailure,
    /// One exact status, e.g. 429.
    Status(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonIdempotent {
    WithKey,
    Never,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub jitter: Jitter,
    pub deadline: Duration,
    pub retry_on: Vec<OutcomeClass>,
    pub respect_retry_after: bool,
    pub budget: Option<RetryBudget>,
    pub non_idempotent: NonIdempotent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate {
    pub threshold: f64,
    pub minimum_calls: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub failure_rate: Option<FailureRate>,
    pub slow_call: Option<Duration>,
    pub reset_timeout: Duration,
    pub half_open_successes: u32,
    pub half_open_max_in_flight: u32,
    pub failure_on: Vec<OutcomeClass>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub max_body_bytes: u64,
    pub max_total_bytes: u64,
    pub key: Vec<KeyPart>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FallbackKind {
    StaleCache {
        max_stale: Duration,
    },
    /// Another Envoy cluster, called out to with the same request.
    Cluster {
        cluster: String,
    },
    Queue {
        max_items: u32,
        max_bytes: u64,
    },
    Static {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FallbackEntry {
    pub kind: FallbackKind,
    /// Upper-case; empty = every method.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub matcher: RequestMatch,
    /// Index into [`LeveeConfig::upstreams`].
    pub upstream: usize,
}

/// One named remote engine, reached through an Envoy cluster with gRPC calls.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
}

impl BackendConfig {
    /// The Envoy cluster the calls go through.
    pub fn cluster(&self) -> &str {
        match &self.kind {
            BackendKind::Etcd(e) => &e.cluster,
            BackendKind::Rls(r) => &r.cluster,
        }
    }
    /// How long one call may take before it counts as failed.
    pub fn timeout(&self) -> Duration {
        match &self.kind {
            BackendKind::Etcd(e) => e.timeout,
            BackendKind::Rls(r) => r.timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendKind {
    Etcd(EtcdBackend),
    Rls(RlsBackend),
}

/// etcd v3 (`etcdserverpb.KV`, `Lease`), for idempotency records.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdBackend {
    pub cluster: String,
    /// Every key levee writes starts with this (default `levee/`).
    pub prefix: String,
    pub timeout: Duration,
}

/// An Envoy rate limit service (`envoy.service.ratelimit.v3`), for global limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RlsBackend {
    pub cluster: String,
    /// The service's `domain` levee's descriptors are sent under.
    pub domain: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyOnBackendError {
    /// 503 problem+json with `Retry-After`; nothing forwarded.
    Deny,
    /// Forward unprotected (may execute twice); counted.
    Allow,
}

/// `rate_limits[].global`: the limit is also kept by a rate limit service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalLimit {
    /// Index into [`LeveeConfig::backends`] (always an rls backend).
    pub backend: usize,
    pub mode: GlobalMode,
    pub on_backend_error: GlobalOnBackendError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalMode {
    /// One call per request that passed the local tier.
    Exact,
    /// Batches of quota reserved with one call, spent locally.
    Reserve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalOnBackendError {
    /// The local tier alone decides.
    Local,
    Allow,
    /// 429 with `Retry-After: 1`.
    Deny,
}
