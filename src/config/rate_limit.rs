//! Validates `rate_limits[]` into [`RateLimitConfig`].
//!
//! Beyond types and ranges, it refuses settings that an algorithm would silently ignore
//! (`burst` on a fixed window, `max_delay` outside the leaky bucket): a knob that does
//! nothing is a misunderstanding waiting for an incident.

use super::common::{key_list, name, request_match};
use super::defaults as d;
use super::raw::Raw;
use super::reader::{err, Obj};
use super::types::{Algorithm, BackendConfig, Mode, OnInternalError, RateLimitConfig};
use super::ConfigError;
use std::time::Duration;

pub(crate) const FIELDS: &[&str] = &[
    "name",
    "match",
    "key",
    "algorithm",
    "limit",
    "window",
    "burst",
    "max_delay",
    "mode",
    "status",
    "on_internal_error",
    "global",
];

pub const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("fixed_window", Algorithm::FixedWindow),
    ("sliding_window_log", Algorithm::SlidingWindowLog),
    ("sliding_window_counter", Algorithm::SlidingWindowCounter),
    ("token_bucket", Algorithm::TokenBucket),
    ("leaky_bucket", Algorithm::LeakyBucket),
];
pub const MODES: &[(&str, Mode)] = &[("enforce", Mode::Enforce), ("shadow", Mode::Shadow)];
pub const ON_INTERNAL_ERROR: &[(&str, OnInternalError)] = &[
    ("allow", OnInternalError::Allow),
    ("deny", OnInternalError::Deny),
];

/// Validates the whole list: each entry, then that names are unique.
pub fn rate_limits(
    items: &[Raw],
    path: &str,
    backends: &[BackendConfig],
) -> Result<Vec<RateLimitConfig>, ConfigError> {
    let mut out: Vec<RateLimitConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let o = Obj::new(item, &super::reader::index(path, i), FIELDS)?;
        let rl = rate_limit(&o, backends)?;
        if let Some(j) = out.iter().position(|r| r.name == rl.name) {
            return Err(err(
                &o.at("name"),
                format!(
                    "\"{}\" is already the name of {path}[{j}] (names must be unique)",
                    rl.name
                ),
            ));
        }
        out.push(rl);
    }
    Ok(out)
}

fn rate_limit(o: &Obj<'_>, backends: &[BackendConfig]) -> Result<RateLimitConfig, ConfigError> {
    let name = match o.str("name")? {
        Some(s) => name(&o.at("name"), s)?,
        None => {
            return Err(err(
                o.path(),
                "missing field \"name\" (e.g. \"name\": \"per-user\")",
            ))
        }
    };
    let algorithm = o
        .choice("algorithm", ALGORITHMS)?
        .unwrap_or(Algorithm::TokenBucket);
    let limit = o.int("limit", 1, d::MAX_LIMIT, "")?.ok_or_else(|| {
        err(
            o.path(),
            "missing field \"limit\" (requests admitted per window, e.g. 100)",
        )
    })?;
    if algorithm == Algorithm::SlidingWindowLog && limit > d::MAX_SLIDING_LOG_LIMIT {
        return Err(err(&o.at("limit"), format!(
            "{limit} is too large for sliding_window_log, which stores one timestamp per admitted request (use at most {}, or sliding_window_counter)",
            d::MAX_SLIDING_LOG_LIMIT
        )));
    }
    let window = o
        .duration("window")?
        .ok_or_else(|| err(o.path(), "missing field \"window\" (e.g. \"1m\")"))?;
    if window.is_zero() {
        return Err(err(
            &o.at("window"),
            "must be greater than 0s (e.g. \"1s\", \"1m\")",
        ));
    }
    if window > d::MAX_WINDOW {
        return Err(err(&o.at("window"), "is longer than 366d (levee's state lives in one Envoy process and a restart forgets it)"));
    }
    let bucket = matches!(algorithm, Algorithm::TokenBucket | Algorithm::LeakyBucket);
    let burst = match o.int("burst", 1, d::MAX_LIMIT, "")? {
        Some(_) if !bucket => {
            return Err(err(
                &o.at("burst"),
                "only token_bucket and leaky_bucket use burst (remove it or change algorithm)",
            ))
        }
        Some(b) => b,
        None => limit,
    };
    let max_delay = match o.duration("max_delay")? {
        Some(_) if algorithm != Algorithm::LeakyBucket => {
            return Err(err(&o.at("max_delay"), "only leaky_bucket can delay requests (remove it or use \"algorithm\": \"leaky_bucket\")"))
        }
        Some(m) if m > d::MAX_SHAPING_DELAY => {
            return Err(err(&o.at("max_delay"), "is longer than 1h (a held request keeps its connection and memory open)"))
        }
        Some(m) => m,
        None => Duration::ZERO,
    };
    let status = o.int(
        "status",
        d::MIN_FAILURE_STATUS,
        d::MAX_STATUS,
        "a rejection must be a 4xx or 5xx status",
    )?;
    Ok(RateLimitConfig {
        name,
        matcher: request_match(o, "match")?,
        key: key_list(o, "key")?,
        algorithm,
        limit,
        window,
        burst,
        max_delay,
        mode: o.choice("mode", MODES)?.unwrap_or(Mode::Enforce),
        status: status.map_or(d::RATE_LIMIT_STATUS, |s| s as u16),
        on_internal_error: o
            .choice("on_internal_error", ON_INTERNAL_ERROR)?
            .unwrap_or(OnInternalError::Allow),
        global: o
            .get("global")
            .map(|g| super::backend::global(g, &o.at("global"), window, backends))
            .transpose()?,
    })
}
