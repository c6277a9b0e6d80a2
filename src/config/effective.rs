//! The effective configuration: a validated [`LeveeConfig`] written back as plugin JSON with
//! every default filled in, for `levee check` and for operators asking "what does levee
//! actually run with?". Feeding the output back to [`super::parse`] yields the same config.

use super::backend::{GLOBAL_MODES, GLOBAL_ON_BACKEND_ERROR, IDEMPOTENCY_ON_BACKEND_ERROR};
use super::duration::format as dur;
use super::idempotency::ON_CONCURRENT;
use super::key_parts::display;
use super::rate_limit::{ALGORITHMS, MODES, ON_INTERNAL_ERROR};
use super::resilience::{JITTERS, NON_IDEMPOTENT};
use super::types::*;
use super::upstream::FORWARDS;
use serde_json::{json, Map, Value};

pub const RATE_LIMIT_HEADERS: &[(&str, RateLimitHeaders)] = &[
    ("x-ratelimit", RateLimitHeaders::XRateLimit),
    ("ietf", RateLimitHeaders::Ietf),
    ("both", RateLimitHeaders::Both),
    ("none", RateLimitHeaders::None),
];

/// The name a choice table gives to `value`.
fn name_of<T: PartialEq>(table: &[(&'static str, T)], value: &T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| v == value)
        .map_or("?", |(n, _)| *n)
}

fn keys(parts: &[KeyPart]) -> Value {
    Value::from(parts.iter().map(display).collect::<Vec<_>>())
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

fn matcher(m: &RequestMatch) -> Value {
    let mut o = Map::new();
    if let Some(p) = &m.path_prefix {
        o.insert("path_prefix".into(), p.as_str().into());
    }
    if !m.methods.is_empty() {
        o.insert("methods".into(), m.methods.clone().into());
    }
    if let Some(r) = &m.route_name {
        o.insert("route_name".into(), r.as_str().into());
    }
    if !m.headers.is_empty() {
        o.insert("headers".into(), pairs(&m.headers));
    }
    Value::Object(o)
}

fn outcomes(list: &[OutcomeClass]) -> Value {
    list.iter()
        .map(|c| match c {
            OutcomeClass::FiveXx => Value::from("5xx"),
            OutcomeClass::GatewayError => "gateway_error".into(),
            OutcomeClass::Timeout => "timeout".into(),
            OutcomeClass::Reset => "reset".into(),
            OutcomeClass::ConnectFailure => "connect_failure".into(),
            OutcomeClass::Status(s) => (*s).into(),
        })
        .collect()
}

/// The name of the backend at `index` (validated configs always have it).
fn backend_name(backends: &[BackendConfig], index: usize) -> &str {
    backends.get(index).map_or("?", |b| b.name.as_str())
}

fn backend(b: &BackendConfig) -> Value {
    match &b.kind {
        BackendKind::Etcd(e) => json!({ "etcd": {
            "cluster": e.cluster, "prefix": e.prefix, "timeout": dur(e.timeout),
        } }),
        BackendKind::Rls(r) => json!({ "rls": {
            "cluster": r.cluster, "domain": r.domain, "timeout": dur(r.timeout),
        } }),
    }
}

fn rate_limit(r: &RateLimitConfig, backends: &[BackendConfig]) -> Value {
    let mut v = json!({
        "name": r.name, "match": matcher(&r.matcher), "key": keys(&r.key),
        "algorithm": name_of(ALGORITHMS, &r.algorithm), "limit": r.limit, "window": dur(r.window),
        "mode": name_of(MODES, &r.mode), "status": r.status,
        "on_internal_error": name_of(ON_INTERNAL_ERROR, &r.on_internal_error),
    });
    if matches!(r.algorithm, Algorithm::TokenBucket | Algorithm::LeakyBucket) {
        v["burst"] = r.burst.into();
    }
    if r.algorithm == Algorithm::LeakyBucket {
        v["max_delay"] = dur(r.max_delay).into();
    }
    if let Some(g) = &r.global {
        v["global"] = json!({
            "backend": backend_name(backends, g.backend),
            "mode": name_of(GLOBAL_MODES, &g.mode),
            "on_backend_error": name_of(GLOBAL_ON_BACKEND_ERROR, &g.on_backend_error),
        });
    }
    v
}

fn idempotency(i: &IdempotencyConfig, backends: &[BackendConfig]) -> Value {
    let mut v = json!({
        "methods": i.methods, "match": matcher(&i.matcher), "header": i.header, "required": i.required,
        "scope": keys(&i.scope), "ttl": dur(i.ttl), "lock_timeout": dur(i.lock_timeout),
        "fingerprint": i.fingerprint, "on_concurrent": name_of(ON_CONCURRENT, &i.on_concurrent),
        "release_on": i.release_on, "max_key_length": i.max_key_length, "max_body_bytes": i.max_body_bytes,
        "max_stored_bytes": i.max_stored_bytes, "on_internal_error": name_of(ON_INTERNAL_ERROR, &i.on_internal_error),
    });
    if let Some(b) = i.backend {
        v["backend"] = backend_name(backends, b).into();
        v["on_backend_error"] = name_of(IDEMPOTENCY_ON_BACKEND_ERROR, &i.on_backend_error).into();
    }
    v
}

fn retry(r: &RetryConfig) -> Value {
    let mut v = json!({
        "max_retries": r.max_retries, "base_delay": dur(r.base_delay), "max_delay": dur(r.max_delay),
        "jitter": name_of(JITTERS, &r.jitter), "deadline": dur(r.deadline), "retry_on": outcomes(&r.retry_on),
        "respect_retry_after": r.respect_retry_after, "non_idempotent": name_of(NON_IDEMPOTENT, &r.non_idempotent),
    });
    if let Some(b) = &r.budget {
        v["budget"] = json!({ "ratio": b.ratio, "min_per_second": b.min_per_second });
    }
    v
}

fn breaker(b: &BreakerConfig) -> Value {
    let mut v = json!({
        "failure_threshold": b.failure_threshold, "reset_timeout": dur(b.reset_timeout),
        "half_open_successes": b.half_open_successes, "half_open_max_in_flight": b.half_open_max_in_flight,
        "failure_on": outcomes(&b.failure_on),
    });
    if let Some(r) = &b.failure_rate {
        v["failure_rate"] = json!({ "threshold": r.threshold, "minimum_calls": r.minimum_calls, "window": dur(r.window) });
    }
    if let Some(s) = b.slow_call {
        v["slow_call"] = dur(s).into();
    }
    v
}

fn fallback(f: &FallbackEntry) -> Value {
    let mut v = match &f.kind {
        FallbackKind::StaleCache { max_stale } => {
            json!({ "stale_cache": { "max_stale": dur(*max_stale) } })
        }
        FallbackKind::Cluster { cluster } => json!({ "cluster": cluster }),
        FallbackKind::Queue {
            max_items,
            max_bytes,
        } => json!({ "queue": { "max_items": max_items, "max_bytes": max_bytes } }),
        FallbackKind::Static {
            status,
            headers,
            body,
        } => json!({ "static": {
            "status": status, "headers": pairs(headers), "body": String::from_utf8_lossy(body),
        } }),
    };
    if !f.methods.is_empty() {
        v["methods"] = f.methods.clone().into();
    }
    v
}

fn upstream(u: &UpstreamConfig) -> Value {
    let mut v = json!({
        "forward": name_of(FORWARDS, &u.forward), "timeout": dur(u.timeout), "max_body_bytes": u.max_body_bytes,
        "fallback": u.fallback.iter().map(fallback).collect::<Vec<_>>(),
    });
    if let Some(c) = &u.cluster {
        v["cluster"] = c.as_str().into();
    }
    if let Some(a) = &u.authority {
        v["authority"] = a.as_str().into();
    }
    if let Some(r) = &u.retry {
        v["retry"] = retry(r);
    }
    if let Some(b) = &u.circuit_breaker {
        v["circuit_breaker"] = breaker(b);
    }
    if let Some(c) = &u.cache {
        v["cache"] = json!({ "ttl": dur(c.ttl), "max_body_bytes": c.max_body_bytes,
                             "max_total_bytes": c.max_total_bytes, "key": keys(&c.key) });
    }
    v
}

/// The effective config as plugin JSON, every default written out. Object keys come out
/// sorted (`serde_json` without `preserve_order`), so `upstreams` may be listed in another
/// order than declared; routes refer to upstreams by name, so nothing depends on it.
pub fn to_effective_json(cfg: &LeveeConfig) -> Value {
    let mut v = json!({
        "client_ip": { "xff_trusted_hops": cfg.client_ip.xff_trusted_hops, "ipv6_prefix": cfg.client_ip.ipv6_prefix },
        "limits": { "max_tracked_keys": cfg.limits.max_tracked_keys, "max_memory_bytes": cfg.limits.max_memory_bytes },
        "rate_limits": cfg.rate_limits.iter().map(|r| rate_limit(r, &cfg.backends)).collect::<Vec<_>>(),
        "rate_limit_headers": name_of(RATE_LIMIT_HEADERS, &cfg.rate_limit_headers),
        "upstreams": cfg.upstreams.iter().map(|u| (u.name.clone(), upstream(u))).collect::<Map<_, _>>(),
        "routes": cfg.routes.iter().map(|r| json!({
            "match": matcher(&r.matcher),
            "upstream": cfg.upstreams.get(r.upstream).map_or("?", |u| u.name.as_str()),
        })).collect::<Vec<_>>(),
    });
    if let Some(i) = &cfg.idempotency {
        v["idempotency"] = idempotency(i, &cfg.backends);
    }
    v["backends"] = cfg
        .backends
        .iter()
        .map(|b| (b.name.clone(), backend(b)))
        .collect::<Map<_, _>>()
        .into();
    v
}
