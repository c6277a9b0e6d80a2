//! The described objects of the plugin JSON, one function per block, each built over the
//! validator's field list, choice tables, defaults and bounds (see the parent module). The
//! upstream side lives in `upstream.rs`.

use super::super::defaults as d;
use super::super::effective::RATE_LIMIT_HEADERS;
use super::super::idempotency::{self as idem, ON_CONCURRENT};
use super::super::rate_limit::{self as rl, ALGORITHMS, MODES, ON_INTERNAL_ERROR};
use super::super::types::Algorithm;
use super::super::{CLIENT_IP_FIELDS, LIMITS_FIELDS, TOP_FIELDS};
use super::upstream::*;
use super::{boolean, choice, def, dur, int, list, object, Prop};
use serde_json::{json, Value};

/// The top-level object.
pub(super) fn root() -> Value {
    object(
        "One JSON object, passed as the Wasm plugin `configuration`. `{}` is a pass-through.",
        TOP_FIELDS,
        vec![
            ("client_ip", Prop::new(def("client_ip"), "How levee reads the client address for `client_ip` key parts.").default(json!({}))),
            ("limits", Prop::new(def("limits"), "Memory bounds of levee's shared tables.").default(json!({}))),
            ("rate_limits", Prop::new(list(def("rate_limit")), "Rate limits; every matching limit is checked.").default(json!([]))),
            ("rate_limit_headers", Prop::new(choice(RATE_LIMIT_HEADERS),
                "Which rate-limit headers responses carry: X-RateLimit-*, the IETF RateLimit/RateLimit-Policy fields, both or none.")
                .default("x-ratelimit")),
            ("idempotency", Prop::new(def("idempotency"), "Idempotency keys; absent = off.")),
            ("upstreams", Prop::new(json!({
                "type": "object", "propertyNames": def("name"), "additionalProperties": def("upstream"),
            }), "Named upstreams with retry, circuit breaker, cache and fallbacks; referenced by `routes`.").default(json!({}))),
            ("routes", Prop::new(list(def("route")), "Which requests go through which upstream; the first matching route wins.").default(json!([]))),
            ("backends", super::backends::backends_prop()),
        ],
        &[],
    )
}

/// Every object below the root, by `$defs` name.
pub(super) fn defs() -> Vec<(&'static str, Value)> {
    vec![
        ("client_ip", client_ip()),
        ("limits", limits()),
        ("match", request_match()),
        ("rate_limit", rate_limit()),
        ("idempotency", idempotency()),
        ("upstream", upstream()),
        ("retry", retry()),
        ("retry_budget", retry_budget()),
        ("circuit_breaker", circuit_breaker()),
        ("failure_rate", failure_rate()),
        ("cache", cache()),
        ("fallback", fallback()),
        ("stale_cache", stale_cache()),
        ("queue", queue()),
        ("static", static_answer()),
        ("route", route()),
    ]
    .into_iter()
    .chain(super::backends::defs())
    .collect()
}

fn client_ip() -> Value {
    object("The client address behind trusted proxies.", CLIENT_IP_FIELDS, vec![
        ("xff_trusted_hops", Prop::new(int(0, d::MAX_XFF_TRUSTED_HOPS),
            "How many trusted proxies in front of Envoy append to X-Forwarded-For; the client is the (N+1)-th entry from the right.")
            .default(d::XFF_TRUSTED_HOPS)),
        ("ipv6_prefix", Prop::new(int(1, d::MAX_IPV6_PREFIX), "IPv6 clients are keyed by this prefix length.").default(d::IPV6_PREFIX)),
    ], &[])
}

fn limits() -> Value {
    object("Memory bounds.", LIMITS_FIELDS, vec![
        ("max_tracked_keys", Prop::new(int(1, d::MAX_MAX_TRACKED_KEYS),
            "Slots per table (one table per rate limit, idempotency, cache); each slot costs shared memory.")
            .default(d::MAX_TRACKED_KEYS)),
        ("max_memory_bytes", Prop::new(int(d::MIN_MAX_MEMORY_BYTES, d::MAX_MAX_MEMORY_BYTES),
            "Ceiling on the shared-data bytes this config's tables may take (the bound `levee check` prints and \
             `levee_memory_bound_bytes` reports). A config over it is refused; raise it to accept a larger config, \
             knowing that configure time grows with the number of shared-data keys.")
            .default(d::MAX_MEMORY_BYTES)),
    ], &[])
}

fn request_match() -> Value {
    object("Which requests a block applies to; every present condition must hold. `{}` matches every request.",
        super::super::common::MATCH_FIELDS, vec![
        ("path_prefix", Prop::new(json!({ "type": "string", "pattern": "^/[^?#]*$" }),
            "Prefix of Envoy's normalised path, without the query string.").example("/api/")),
        ("methods", Prop::new(def("methods"), "Any of these methods (exact, upper-cased).").example(json!(["POST"]))),
        ("route_name", Prop::new(json!({ "type": "string", "minLength": 1 }), "Envoy's route name.").example("orders")),
        ("headers", Prop::new(def("header_map"), "Headers that must be present with exactly these values.")
            .example(json!({ "x-tenant": "acme" }))),
    ], &[])
}

fn rate_limit() -> Value {
    let mut o = object("One rate limit.", rl::FIELDS, vec![
        ("name", Prop::new(def("name"), "Unique; used in metrics, logs and headers.").example("per-user")),
        ("match", Prop::new(def("match"), "Which requests this limit counts; absent = every request.").default(json!({}))),
        ("key", Prop::new(def("key_parts"), "Whom a bucket belongs to; [] = one global bucket.").default(json!([]))),
        ("algorithm", Prop::new(choice(ALGORITHMS), "The counting algorithm.").default("token_bucket")),
        ("limit", Prop::new(int(1, d::MAX_LIMIT),
            format!("Requests admitted per window (at most {} for sliding_window_log).", d::MAX_SLIDING_LOG_LIMIT).as_str())
            .example(100)),
        ("window", Prop::new(def("duration"), "The period `limit` applies to; > 0 and at most 366d.").example("1m")),
        ("burst", Prop::new(int(1, d::MAX_LIMIT), "token_bucket / leaky_bucket only: bucket capacity; default = limit.").example(100)),
        ("max_delay", Prop::new(def("duration"),
            "leaky_bucket only: > 0 shapes traffic (delays requests up to this, at most 1h) instead of rejecting.")
            .default(dur(std::time::Duration::ZERO))),
        ("mode", Prop::new(choice(MODES), "\"shadow\" counts and reports but never rejects.").default("enforce")),
        ("status", Prop::new(def("status"), "The status of a rejection.").default(d::RATE_LIMIT_STATUS)),
        ("on_internal_error", Prop::new(choice(ON_INTERNAL_ERROR), "What to do when shared state cannot be updated.").default("allow")),
        ("global", super::backends::global_prop()),
    ], &["name", "limit", "window"]);
    // The validator refuses knobs an algorithm would ignore.
    let non_bucket: Vec<&str> = ALGORITHMS
        .iter()
        .filter(|(_, a)| !matches!(a, Algorithm::TokenBucket | Algorithm::LeakyBucket))
        .map(|(n, _)| *n)
        .collect();
    let leaky: Vec<&str> = ALGORITHMS
        .iter()
        .filter(|(_, a)| *a == Algorithm::LeakyBucket)
        .map(|(n, _)| *n)
        .collect();
    o["allOf"] = json!([
        { "if": { "properties": { "algorithm": { "enum": non_bucket } }, "required": ["algorithm"] },
          "then": { "not": { "required": ["burst"] } } },
        { "if": { "not": { "properties": { "algorithm": { "enum": leaky } }, "required": ["algorithm"] } },
          "then": { "not": { "required": ["max_delay"] } } },
    ]);
    o
}

fn idempotency() -> Value {
    object("Idempotency keys: a retried request with the same key gets the stored answer.", idem::FIELDS, vec![
        ("methods", Prop::new(json!({ "type": "array", "items": def("method"), "minItems": 1 }), "Methods that use keys.")
            .default(json!(d::IDEMPOTENCY_METHODS))),
        ("match", Prop::new(def("match"), "Which requests use keys; absent = every request.").default(json!({}))),
        ("header", Prop::new(def("header_name"), "The request header carrying the key.").default(d::IDEMPOTENCY_HEADER)),
        ("required", Prop::new(boolean(), "true: a matching request without the header gets 400.").default(false)),
        ("scope", Prop::new(def("key_parts"), "Key parts that prefix the client's key (e.g. the user).").default(json!([]))),
        ("ttl", Prop::new(def("duration"), "How long a stored response is kept; > 0.").default(dur(d::IDEMPOTENCY_TTL))),
        ("lock_timeout", Prop::new(def("duration"), "An in-flight record not renewed for this long may be retaken; > 0.")
            .default(dur(d::LOCK_TIMEOUT))),
        ("fingerprint", Prop::new(boolean(), "Hash method + path + body; the same key with another payload gets 422.").default(true)),
        ("on_concurrent", Prop::new(choice(ON_CONCURRENT), "While the first request is in flight: 409 (\"reject\") or wait for its answer.")
            .default("reject")),
        ("release_on", Prop::new(list(def("status")), "Upstream statuses that mean \"not processed\": the key is released, not stored.")
            .default(json!(d::RELEASE_ON))),
        ("max_key_length", Prop::new(int(1, d::MAX_MAX_KEY_LENGTH), "Longest accepted key.").default(d::MAX_KEY_LENGTH)),
        ("max_body_bytes", Prop::new(int(1, d::ENVOY_BUFFER_LIMIT),
            "Per request and stored response; at most Envoy's default buffer limit.").default(d::IDEMPOTENCY_MAX_BODY)),
        ("max_stored_bytes", Prop::new(int(1, d::MAX_TOTAL_BYTES_CAP), "All stored responses together; >= max_body_bytes.")
            .default(d::MAX_STORED_BYTES)),
        ("on_internal_error", Prop::new(choice(ON_INTERNAL_ERROR), "What to do when shared state cannot be updated.").default("deny")),
    ].into_iter().chain(super::backends::idempotency_props()).collect(), &[])
}
