//! The described objects of `backends` (etcd and rate limit service entries) and of a rate
//! limit's `global` block, built like those in `blocks.rs`.

use super::super::backend::{
    self as be, GLOBAL_MODES, GLOBAL_ON_BACKEND_ERROR, IDEMPOTENCY_ON_BACKEND_ERROR,
};
use super::super::defaults as d;
use super::{choice, def, dur, object, token, Prop};
use serde_json::{json, Value};

/// The `backends` property of the root object.
pub(super) fn backends_prop() -> Prop {
    Prop::new(
        json!({ "type": "object", "propertyNames": def("name"), "additionalProperties": def("backend") }),
        "Named remote engines for mesh-wide state, reached through Envoy clusters (HTTP/2) with gRPC calls; \
         referenced by `idempotency.backend` and `rate_limits[].global.backend`.",
    )
    .default(json!({}))
}

/// `idempotency.backend` and `idempotency.on_backend_error`.
pub(super) fn idempotency_props() -> Vec<(&'static str, Prop)> {
    vec![
        ("backend", Prop::new(def("name"),
            "An etcd entry of `backends`: records are kept there, shared by every Envoy; absent = this Envoy's shared data.")
            .example("records")),
        ("on_backend_error", Prop::new(choice(IDEMPOTENCY_ON_BACKEND_ERROR),
            "With `backend`, when etcd cannot be reached: \"deny\" answers 503 with Retry-After and forwards nothing; \
             \"allow\" forwards unprotected (may execute twice).")
            .default("deny")),
    ]
}

/// `rate_limits[].global`.
pub(super) fn global_prop() -> Prop {
    Prop::new(
        def("global_limit"),
        "Also keep this limit mesh-wide in a rate limit service; `window` must then be 1s, 1m, 1h or 1d.",
    )
    .example(json!({ "backend": "limits" }))
}

pub(super) fn defs() -> Vec<(&'static str, Value)> {
    vec![
        ("backend", backend()),
        ("etcd_backend", etcd()),
        ("rls_backend", rls()),
        ("global_limit", global()),
    ]
}

fn backend() -> Value {
    let mut o = object(
        "One remote engine: exactly one of etcd, rls.",
        be::KINDS,
        vec![
            (
                "etcd",
                Prop::new(def("etcd_backend"), "etcd v3, for idempotency records.")
                    .example(json!({ "cluster": "etcd" })),
            ),
            (
                "rls",
                Prop::new(
                    def("rls_backend"),
                    "An Envoy rate limit service (RLS v3), for global limits.",
                )
                .example(json!({ "cluster": "ratelimit", "domain": "levee" })),
            ),
        ],
        &[],
    );
    o["oneOf"] = be::KINDS
        .iter()
        .map(|k| json!({ "required": [k] }))
        .collect();
    o
}

fn etcd() -> Value {
    object("etcd v3 reached through an Envoy cluster.", be::ETCD_FIELDS, vec![
        ("cluster", Prop::new(token(), "The Envoy cluster (HTTP/2) of the etcd members.").example("etcd")),
        ("prefix", Prop::new(json!({ "type": "string", "pattern": format!("^[!-~]{{1,{}}}$", d::MAX_ETCD_PREFIX_LEN) }),
            "Every key levee writes starts with this.").default(d::ETCD_PREFIX)),
        ("timeout", Prop::new(def("duration"), "Per call; > 0, at most 1m.").default(dur(d::ETCD_TIMEOUT))),
    ], &["cluster"])
}

fn rls() -> Value {
    object("A rate limit service reached through an Envoy cluster.", be::RLS_FIELDS, vec![
        ("cluster", Prop::new(token(), "The Envoy cluster (HTTP/2) of the rate limit service.").example("ratelimit")),
        ("domain", Prop::new(json!({ "type": "string", "pattern": format!("^[!-~]{{1,{}}}$", d::MAX_RLS_DOMAIN_LEN) }),
            "The service's domain for levee's descriptors.").example("levee")),
        ("timeout", Prop::new(def("duration"), "Per call; > 0, at most 1m.").default(dur(d::RLS_TIMEOUT))),
    ], &["cluster", "domain"])
}

fn global() -> Value {
    object("A mesh-wide limit kept by a rate limit service; the limit's own algorithm stays the local tier in front of it.",
        be::GLOBAL_FIELDS, vec![
        ("backend", Prop::new(def("name"), "An rls entry of `backends`.").example("limits")),
        ("mode", Prop::new(choice(GLOBAL_MODES),
            "\"exact\": one call per request that passed the local tier; \"reserve\": batches of quota reserved with one call and spent locally.")
            .default("reserve")),
        ("on_backend_error", Prop::new(choice(GLOBAL_ON_BACKEND_ERROR),
            "When the service cannot be reached: \"local\" lets the local tier decide, \"allow\" admits, \"deny\" answers 429 with Retry-After: 1.")
            .default("local")),
    ], &["backend"])
}
