//! The Envoy rate limit service protocol, v3 (`envoy.service.ratelimit.v3`), as spoken by
//! envoyproxy/ratelimit and Kuadrant's Limitador: the one call `ShouldRateLimit`.

pub mod answer;
pub mod descriptor;
pub mod request;
pub mod response;

pub use answer::{verdict, Misconfigured, Verdict};
pub use descriptor::{bounded_value, limit_descriptor, unit_for_window_secs};
pub use request::{Descriptor, Entry, LimitOverride, RateLimitRequest, Unit};
pub use response::{
    Code, CurrentLimit, DescriptorStatus, HeaderValue, ProtoDuration, Quota, RateLimitResponse,
};

/// gRPC service of [`RateLimitRequest`].
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// gRPC method of [`RateLimitRequest`].
pub const METHOD: &str = "ShouldRateLimit";
