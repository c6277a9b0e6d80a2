//! Plugin configuration: parse the raw JSON, then validate it into [`types::LeveeConfig`].
//!
//! Every error names the JSON path and the fix, e.g.
//! `rate_limits[1].window: "10 parsecs" is not a duration (use e.g. "500ms", "1m")`, because
//! the one line Envoy logs when it refuses a config is all an operator will see.

pub(crate) mod backend;
mod common;
pub mod defaults;
pub mod duration;
mod effective;
mod idempotency;
pub mod key_parts;
mod rate_limit;
mod raw;
mod reader;
pub mod reference;
mod resilience;
pub mod schema;
pub mod types;
mod upstream;

#[cfg(test)]
mod tests;

pub use effective::to_effective_json;
pub use types::*;

use reader::Obj;

/// The fields of the top-level object, of `client_ip` and of `limits` (also read by [`schema`]).
pub(crate) const TOP_FIELDS: &[&str] = &[
    "client_ip",
    "limits",
    "rate_limits",
    "rate_limit_headers",
    "idempotency",
    "upstreams",
    "routes",
    "backends",
];
pub(crate) const CLIENT_IP_FIELDS: &[&str] = &["xff_trusted_hops", "ipv6_prefix"];
pub(crate) const LIMITS_FIELDS: &[&str] = &["max_tracked_keys", "max_memory_bytes"];

/// A config that cannot be used, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `rate_limits[1].window`; empty for the document itself.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "levee config: {}", self.message)
        } else {
            write!(f, "levee config: {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates a plugin configuration. Empty input is the same as `{}`: a
/// pass-through config (no rate limits, no idempotency, no upstreams, no routes).
pub fn parse(json: &[u8]) -> Result<LeveeConfig, ConfigError> {
    let raw = raw::read(json).map_err(|m| reader::err("", m))?;
    let top = Obj::new(&raw, "", TOP_FIELDS)?;

    let client_ip = match top.obj("client_ip", CLIENT_IP_FIELDS)? {
        Some(c) => ClientIpConfig {
            xff_trusted_hops: c
                .int(
                    "xff_trusted_hops",
                    0,
                    defaults::MAX_XFF_TRUSTED_HOPS,
                    "the number of proxies in front of Envoy that append to X-Forwarded-For",
                )?
                .map_or(defaults::XFF_TRUSTED_HOPS, |n| n as u32),
            ipv6_prefix: c
                .int("ipv6_prefix", 1, defaults::MAX_IPV6_PREFIX, "")?
                .map_or(defaults::IPV6_PREFIX, |n| n as u8),
        },
        None => ClientIpConfig {
            xff_trusted_hops: defaults::XFF_TRUSTED_HOPS,
            ipv6_prefix: defaults::IPV6_PREFIX,
        },
    };
    let limits = match top.obj("limits", LIMITS_FIELDS)? {
        Some(l) => Limits {
            max_tracked_keys: l
                .int(
                    "max_tracked_keys",
                    1,
                    defaults::MAX_MAX_TRACKED_KEYS,
                    "slots per table; each slot costs shared memory",
                )?
                .map_or(defaults::MAX_TRACKED_KEYS, |n| n as u32),
            max_memory_bytes: l
                .int(
                    "max_memory_bytes",
                    defaults::MIN_MAX_MEMORY_BYTES,
                    defaults::MAX_MAX_MEMORY_BYTES,
                    "the most shared-data bytes this config's tables may take",
                )?
                .unwrap_or(defaults::MAX_MEMORY_BYTES),
        },
        None => Limits {
            max_tracked_keys: defaults::MAX_TRACKED_KEYS,
            max_memory_bytes: defaults::MAX_MEMORY_BYTES,
        },
    };
    let backends = match top.get("backends") {
        Some(b) => backend::backends(b, &top.at("backends"))?,
        None => Vec::new(),
    };
    let rate_limits = match top.array("rate_limits")? {
        Some(items) => rate_limit::rate_limits(items, &top.at("rate_limits"), &backends)?,
        None => Vec::new(),
    };
    let rate_limit_headers = top
        .choice("rate_limit_headers", effective::RATE_LIMIT_HEADERS)?
        .unwrap_or(RateLimitHeaders::XRateLimit);
    let idempotency = match top.get("idempotency") {
        Some(i) => Some(idempotency::idempotency(
            i,
            &top.at("idempotency"),
            &backends,
        )?),
        None => None,
    };
    let upstreams = match top.get("upstreams") {
        Some(u) => upstream::upstreams(u, &top.at("upstreams"))?,
        None => Vec::new(),
    };
    let routes = match top.array("routes")? {
        Some(items) => upstream::routes(items, &top.at("routes"), &upstreams)?,
        None => Vec::new(),
    };
    Ok(LeveeConfig {
        client_ip,
        limits,
        rate_limits,
        rate_limit_headers,
        idempotency,
        upstreams,
        routes,
        backends,
    })
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod backend_tests;
