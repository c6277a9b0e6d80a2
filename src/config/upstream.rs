//! Validates `upstreams` (with their `cache` and `fallback` chain) and `routes`.
//!
//! This is where references are resolved: a route names an upstream, `retry` needs callout
//! mode, `forward: "callout"` and a `queue` fallback need a `cluster`, `stale_cache` needs the
//! upstream's `cache`. Orders are checked too: nothing may follow an unconditional `static`
//! fallback, and no route may follow a route that matches every request — both would be dead
//! config that looks alive.

use super::common::{header_map, key_list, methods, name, request_match};
use super::defaults as d;
use super::raw::{quote, Raw};
use super::reader::positive;
use super::reader::{err, index, join, Obj};
use super::resilience::{circuit_breaker, retry};
use super::types::{
    CacheConfig, FallbackEntry, FallbackKind, Forward, RequestMatch, RouteConfig, UpstreamConfig,
};
use super::ConfigError;

pub(crate) const FIELDS: &[&str] = &[
    "forward",
    "cluster",
    "authority",
    "timeout",
    "max_body_bytes",
    "retry",
    "circuit_breaker",
    "cache",
    "fallback",
];
pub(crate) const CACHE_FIELDS: &[&str] = &["ttl", "max_body_bytes", "max_total_bytes", "key"];
/// A fallback entry holds exactly one of these, plus optional `methods`.
pub(crate) const FALLBACK_KINDS: &[&str] = &["stale_cache", "cluster", "queue", "static"];
pub(crate) const FALLBACK_FIELDS: &[&str] =
    &["stale_cache", "cluster", "queue", "static", "methods"];
pub(crate) const STALE_CACHE_FIELDS: &[&str] = &["max_stale"];
pub(crate) const QUEUE_FIELDS: &[&str] = &["max_items", "max_bytes"];
pub(crate) const STATIC_FIELDS: &[&str] = &["status", "headers", "body"];
pub(crate) const ROUTE_FIELDS: &[&str] = &["match", "upstream"];

pub const FORWARDS: &[(&str, Forward)] =
    &[("router", Forward::Router), ("callout", Forward::Callout)];

/// The `upstreams` object, in declaration order.
pub fn upstreams(raw: &Raw, path: &str) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let map = Obj::free(raw, path)?;
    map.pairs()
        .iter()
        .map(|(key, value)| upstream(key, value, &join(path, key)))
        .collect()
}

fn upstream(key: &str, raw: &Raw, path: &str) -> Result<UpstreamConfig, ConfigError> {
    let name = name(path, key)?;
    let o = Obj::new(raw, path, FIELDS)?;
    let forward = o.choice("forward", FORWARDS)?.unwrap_or(Forward::Router);
    let cluster = non_empty(&o, "cluster")?;
    if forward == Forward::Callout && cluster.is_none() {
        return Err(err(
            path,
            "\"forward\": \"callout\" needs \"cluster\" (the Envoy cluster levee calls)",
        ));
    }
    let timeout = positive(&o, "timeout")?.unwrap_or(d::UPSTREAM_TIMEOUT);
    let retry = match o.get("retry") {
        Some(_) if forward == Forward::Router => {
            return Err(err(&o.at("retry"), "needs \"forward\": \"callout\" (in router mode Envoy's router sends the request: use the route's retry_policy, or switch to callout)"))
        }
        Some(r) => Some(retry(r, &o.at("retry"), timeout)?),
        None => None,
    };
    let cache = match o.obj("cache", CACHE_FIELDS)? {
        Some(c) => Some(cache(&c)?),
        None => None,
    };
    let fallback = match o.array("fallback")? {
        Some(items) => fallbacks(items, &o, cluster.as_deref(), cache.is_some())?,
        None => Vec::new(),
    };
    Ok(UpstreamConfig {
        name,
        forward,
        authority: non_empty(&o, "authority")?,
        cluster,
        timeout,
        max_body_bytes: o
            .int("max_body_bytes", 1, d::UPSTREAM_MAX_BODY_CAP, "")?
            .unwrap_or(d::UPSTREAM_MAX_BODY),
        retry,
        circuit_breaker: o
            .get("circuit_breaker")
            .map(|b| circuit_breaker(b, &o.at("circuit_breaker")))
            .transpose()?,
        cache,
        fallback,
    })
}

fn non_empty(o: &Obj<'_>, key: &str) -> Result<Option<String>, ConfigError> {
    match o.str(key)? {
        Some(s) if s.is_empty() || s.chars().any(char::is_whitespace) => Err(err(
            &o.at(key),
            format!("{} must be non-empty and without spaces", quote(s)),
        )),
        s => Ok(s.map(str::to_owned)),
    }
}

fn cache(c: &Obj<'_>) -> Result<CacheConfig, ConfigError> {
    let max_body_bytes = c
        .int(
            "max_body_bytes",
            1,
            d::ENVOY_BUFFER_LIMIT,
            "Envoy's default buffer limit is 1 MiB",
        )?
        .unwrap_or(d::CACHE_MAX_BODY);
    let max_total_bytes = c
        .int("max_total_bytes", 1, d::MAX_TOTAL_BYTES_CAP, "")?
        .unwrap_or(d::CACHE_MAX_TOTAL);
    if max_total_bytes < max_body_bytes {
        return Err(err(&c.at("max_total_bytes"), format!(
            "{max_total_bytes} is smaller than max_body_bytes ({max_body_bytes}): not even one answer would fit"
        )));
    }
    Ok(CacheConfig {
        ttl: positive(c, "ttl")?.unwrap_or(d::CACHE_TTL),
        max_body_bytes,
        max_total_bytes,
        key: key_list(c, "key")?,
    })
}

fn fallbacks(
    items: &[Raw],
    up: &Obj<'_>,
    cluster: Option<&str>,
    has_cache: bool,
) -> Result<Vec<FallbackEntry>, ConfigError> {
    let path = up.at("fallback");
    let mut out: Vec<FallbackEntry> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = index(&path, i);
        if let Some(j) = out
            .iter()
            .position(|e| e.methods.is_empty() && matches!(e.kind, FallbackKind::Static { .. }))
        {
            return Err(err(&at, format!(
                "can never run: {path}[{j}] is a static fallback for every method (move this entry before it, or give that one \"methods\")"
            )));
        }
        let o = Obj::new(item, &at, FALLBACK_FIELDS)?;
        let kinds: Vec<&str> = FALLBACK_KINDS
            .iter()
            .copied()
            .filter(|k| o.get(k).is_some())
            .collect();
        let kind = match kinds.as_slice() {
            [one] => *one,
            _ => {
                return Err(err(
                    &at,
                    format!(
                        "expected exactly one of {} (found {})",
                        FALLBACK_KINDS.join(", "),
                        kinds.len()
                    ),
                ))
            }
        };
        let kind = match kind {
            "stale_cache" => {
                let s = o.obj("stale_cache", STALE_CACHE_FIELDS)?;
                if !has_cache {
                    return Err(err(
                        &o.at("stale_cache"),
                        format!(
                            "needs {} (stale answers come from the cache: add \"cache\": {{}})",
                            up.at("cache")
                        ),
                    ));
                }
                let max_stale = match &s {
                    Some(s) => positive(s, "max_stale")?,
                    None => None,
                };
                FallbackKind::StaleCache {
                    max_stale: max_stale.unwrap_or(d::MAX_STALE),
                }
            }
            "cluster" => {
                let secondary = non_empty(&o, "cluster")?.unwrap_or_default();
                if Some(secondary.as_str()) == cluster {
                    return Err(err(
                        &o.at("cluster"),
                        format!(
                            "{} is this upstream's own cluster (name a secondary one)",
                            quote(&secondary)
                        ),
                    ));
                }
                FallbackKind::Cluster { cluster: secondary }
            }
            "queue" => {
                let q = o.obj("queue", QUEUE_FIELDS)?;
                if cluster.is_none() {
                    return Err(err(
                        &o.at("queue"),
                        format!(
                            "needs {} (the Envoy cluster queued requests are delivered to)",
                            up.at("cluster")
                        ),
                    ));
                }
                let (items, bytes) = match &q {
                    Some(q) => (
                        q.int("max_items", 1, d::MAX_COUNT, "")?,
                        q.int("max_bytes", 1, d::MAX_QUEUE_BYTES, "")?,
                    ),
                    None => (None, None),
                };
                FallbackKind::Queue {
                    max_items: items.map_or(d::QUEUE_MAX_ITEMS, |n| n as u32),
                    max_bytes: bytes.unwrap_or(d::QUEUE_MAX_BYTES),
                }
            }
            _ => static_answer(&o)?,
        };
        let methods = match o.strings("methods")? {
            Some(list) if list.is_empty() => {
                return Err(err(
                    &o.at("methods"),
                    "is empty (omit it to apply to every method)",
                ))
            }
            Some(list) => methods(list)?,
            None => Vec::new(),
        };
        out.push(FallbackEntry { kind, methods });
    }
    Ok(out)
}

fn static_answer(o: &Obj<'_>) -> Result<FallbackKind, ConfigError> {
    let s = o.obj("static", STATIC_FIELDS)?;
    let Some(s) = s else {
        return Ok(FallbackKind::Static {
            status: d::STATIC_STATUS,
            headers: Vec::new(),
            body: Vec::new(),
        });
    };
    let headers = match s.get("headers") {
        Some(h) => header_map(&Obj::free(h, &s.at("headers"))?)?,
        None => Vec::new(),
    };
    Ok(FallbackKind::Static {
        status: s
            .int("status", d::MIN_STATIC_STATUS, d::MAX_STATUS, "")?
            .map_or(d::STATIC_STATUS, |n| n as u16),
        headers,
        body: s.str("body")?.unwrap_or_default().as_bytes().to_vec(),
    })
}

/// `routes[]`, each resolved to an index into `upstreams`.
pub fn routes(
    items: &[Raw],
    path: &str,
    ups: &[UpstreamConfig],
) -> Result<Vec<RouteConfig>, ConfigError> {
    let mut out: Vec<RouteConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = index(path, i);
        if let Some(j) = out
            .iter()
            .position(|r| r.matcher == RequestMatch::default())
        {
            return Err(err(&at, format!("can never match: {path}[{j}] matches every request and the first matching route wins (reorder, or give it a \"match\")")));
        }
        let o = Obj::new(item, &at, ROUTE_FIELDS)?;
        let target = o.str("upstream")?.ok_or_else(|| {
            err(
                &at,
                "missing field \"upstream\" (the name of an entry in \"upstreams\")",
            )
        })?;
        let upstream = ups.iter().position(|u| u.name == target).ok_or_else(|| {
            let known: Vec<&str> = ups.iter().map(|u| u.name.as_str()).collect();
            let known = if known.is_empty() {
                "none are defined".to_owned()
            } else {
                format!("defined: {}", known.join(", "))
            };
            err(
                &o.at("upstream"),
                format!("{} is not in \"upstreams\" ({known})", quote(target)),
            )
        })?;
        out.push(RouteConfig {
            matcher: request_match(&o, "match")?,
            upstream,
        });
    }
    Ok(out)
}
