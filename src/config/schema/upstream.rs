//! The described objects under `upstreams` and `routes`: forwarding, retry, circuit breaker,
//! cache and the fallback chain, built like those in `blocks.rs`.

use super::super::defaults as d;
use super::super::resilience::{self as res, JITTERS, NON_IDEMPOTENT};
use super::super::types::Forward;
use super::super::upstream::{self as up, FORWARDS};
use super::{boolean, choice, def, dur, fraction, int, list, object, token, Prop};
use serde_json::{json, Value};

pub(super) fn upstream() -> Value {
    let mut o = object("One upstream: how requests reach it and what protects it.", up::FIELDS, vec![
        ("forward", Prop::new(choice(FORWARDS),
            "\"router\": Envoy's router forwards and levee observes; \"callout\": levee calls `cluster` itself.").default("router")),
        ("cluster", Prop::new(token(), "The Envoy cluster for callouts and queued requests; required when forward = callout.")
            .example("payments")),
        ("authority", Prop::new(token(), "The :authority of callouts; default: the request's.").example("payments.internal")),
        ("timeout", Prop::new(def("duration"), "Per attempt (callout mode); > 0.").default(dur(d::UPSTREAM_TIMEOUT))),
        ("max_body_bytes", Prop::new(int(1, d::UPSTREAM_MAX_BODY_CAP), "Callout mode: the largest request body levee buffers (over it: 413).")
            .default(d::UPSTREAM_MAX_BODY)),
        ("retry", Prop::new(def("retry"), "Retries with backoff and jitter; requires forward = callout.")),
        ("circuit_breaker", Prop::new(def("circuit_breaker"), "A circuit breaker.")),
        ("cache", Prop::new(def("cache"), "Keeps answers for `stale_cache` fallbacks.")),
        ("fallback", Prop::new(list(def("fallback")), "Tried in order when the upstream fails or its breaker is open.")
            .default(json!([]))),
    ], &[]);
    let callout: Vec<&str> = FORWARDS
        .iter()
        .filter(|(_, f)| *f == Forward::Callout)
        .map(|(n, _)| *n)
        .collect();
    o["allOf"] = json!([
        { "if": { "properties": { "forward": { "enum": callout } }, "required": ["forward"] }, "then": { "required": ["cluster"] } },
        { "if": { "required": ["retry"] },
          "then": { "properties": { "forward": { "enum": callout } }, "required": ["forward"] } },
    ]);
    o
}

pub(super) fn retry() -> Value {
    object(
        "Retry policy (callout mode).",
        res::RETRY_FIELDS,
        vec![
            (
                "max_retries",
                Prop::new(
                    int(0, d::MAX_MAX_RETRIES),
                    "Retries after the first attempt.",
                )
                .default(d::MAX_RETRIES),
            ),
            (
                "base_delay",
                Prop::new(def("duration"), "First backoff step; > 0.").default(dur(d::BASE_DELAY)),
            ),
            (
                "max_delay",
                Prop::new(def("duration"), "Backoff cap; >= base_delay.")
                    .default(dur(d::MAX_DELAY)),
            ),
            (
                "jitter",
                Prop::new(choice(JITTERS), "How backoff delays are randomised.").default("full"),
            ),
            (
                "deadline",
                Prop::new(
                    def("duration"),
                    "Overall time for all attempts; default timeout x (1 + max_retries).",
                )
                .example("5s"),
            ),
            (
                "retry_on",
                Prop::new(
                    def("outcomes"),
                    "Outcomes that are retried: classes or 4xx/5xx statuses.",
                )
                .default(json!(d::RETRY_ON)),
            ),
            (
                "respect_retry_after",
                Prop::new(boolean(), "On 429/503, wait the answer's Retry-After (or X-RateLimit-Reset) instead of the backoff delay, when it fits in the deadline.").default(true),
            ),
            (
                "budget",
                Prop::new(
                    def("retry_budget"),
                    "Caps retries as a share of requests; absent = no budget.",
                ),
            ),
            (
                "non_idempotent",
                Prop::new(
                    choice(NON_IDEMPOTENT),
                    "Retry non-idempotent methods only with an idempotency key, never, or always.",
                )
                .default("with_key"),
            ),
        ],
        &[],
    )
}

pub(super) fn retry_budget() -> Value {
    object(
        "Retry budget; `{}` takes the defaults.",
        res::BUDGET_FIELDS,
        vec![
            (
                "ratio",
                Prop::new(
                    fraction(),
                    "Retries may add at most this share to the request rate.",
                )
                .default(d::BUDGET_RATIO),
            ),
            (
                "min_per_second",
                Prop::new(int(0, d::MAX_COUNT), "Retries always allowed per second.")
                    .default(d::BUDGET_MIN_PER_SECOND),
            ),
        ],
        &[],
    )
}

pub(super) fn circuit_breaker() -> Value {
    object(
        "Circuit breaker: CLOSED -> OPEN on failures, HALF_OPEN probes after reset_timeout.",
        res::BREAKER_FIELDS,
        vec![
            (
                "failure_threshold",
                Prop::new(
                    int(0, d::MAX_COUNT),
                    "Consecutive failures that open it; 0 = off (needs failure_rate).",
                )
                .default(d::FAILURE_THRESHOLD),
            ),
            (
                "failure_rate",
                Prop::new(
                    def("failure_rate"),
                    "Open on a failure share over a window; absent = off.",
                ),
            ),
            (
                "slow_call",
                Prop::new(
                    def("duration"),
                    "A call slower than this counts as a failure; absent = off.",
                )
                .example("2s"),
            ),
            (
                "reset_timeout",
                Prop::new(def("duration"), "Time OPEN before probing; > 0.")
                    .default(dur(d::RESET_TIMEOUT)),
            ),
            (
                "half_open_successes",
                Prop::new(int(1, d::MAX_HALF_OPEN), "Successful probes that close it.")
                    .default(d::HALF_OPEN_SUCCESSES),
            ),
            (
                "half_open_max_in_flight",
                Prop::new(
                    int(1, d::MAX_HALF_OPEN_IN_FLIGHT),
                    "Concurrent probes while HALF_OPEN.",
                )
                .default(d::HALF_OPEN_MAX_IN_FLIGHT),
            ),
            (
                "failure_on",
                Prop::new(def("outcomes"), "Outcomes that count as failures.")
                    .default(json!(d::FAILURE_ON)),
            ),
        ],
        &[],
    )
}

pub(super) fn failure_rate() -> Value {
    object(
        "Failure-rate rule; `{}` takes the defaults.",
        res::FAILURE_RATE_FIELDS,
        vec![
            (
                "threshold",
                Prop::new(fraction(), "Failure share that opens the breaker.")
                    .default(d::FAILURE_RATE_THRESHOLD),
            ),
            (
                "minimum_calls",
                Prop::new(
                    int(1, d::MAX_COUNT),
                    "Calls in the window before the rate counts.",
                )
                .default(d::FAILURE_RATE_MINIMUM_CALLS),
            ),
            (
                "window",
                Prop::new(def("duration"), "The sliding window; > 0.")
                    .default(dur(d::FAILURE_RATE_WINDOW)),
            ),
        ],
        &[],
    )
}

pub(super) fn cache() -> Value {
    object(
        "Answer cache for stale fallbacks.",
        up::CACHE_FIELDS,
        vec![
            (
                "ttl",
                Prop::new(def("duration"), "How long a stored answer is kept for stale_cache fallbacks (fresh answers always come from the upstream); > 0.")
                    .default(dur(d::CACHE_TTL)),
            ),
            (
                "max_body_bytes",
                Prop::new(int(1, d::ENVOY_BUFFER_LIMIT), "Largest cached body.")
                    .default(d::CACHE_MAX_BODY),
            ),
            (
                "max_total_bytes",
                Prop::new(
                    int(1, d::MAX_TOTAL_BYTES_CAP),
                    "All cached bodies together; >= max_body_bytes.",
                )
                .default(d::CACHE_MAX_TOTAL),
            ),
            (
                "key",
                Prop::new(def("key_parts"), "Key parts beyond method + path + query.")
                    .default(json!([])),
            ),
        ],
        &[],
    )
}

pub(super) fn fallback() -> Value {
    let mut o = object(
        "One fallback: exactly one of stale_cache, cluster, queue, static, plus optional methods.",
        up::FALLBACK_FIELDS,
        vec![
            (
                "stale_cache",
                Prop::new(
                    def("stale_cache"),
                    "Serve the last cached answer (needs the upstream's cache).",
                ),
            ),
            (
                "cluster",
                Prop::new(token(), "Send the request to this secondary Envoy cluster.")
                    .example("payments-replica"),
            ),
            (
                "queue",
                Prop::new(
                    def("queue"),
                    "Accept with 202 and deliver later to the upstream's cluster.",
                ),
            ),
            (
                "static",
                Prop::new(def("static"), "Answer with a fixed response."),
            ),
            (
                "methods",
                Prop::new(
                    json!({ "type": "array", "items": def("method"), "minItems": 1 }),
                    "Only for these methods; absent = every method.",
                )
                .example(json!(["GET", "HEAD"])),
            ),
        ],
        &[],
    );
    o["oneOf"] = up::FALLBACK_KINDS
        .iter()
        .map(|k| json!({ "required": [k] }))
        .collect();
    o
}

pub(super) fn stale_cache() -> Value {
    object(
        "Stale answers from the cache.",
        up::STALE_CACHE_FIELDS,
        vec![(
            "max_stale",
            Prop::new(
                def("duration"),
                "The oldest copy (time since levee stored it) a stale_cache fallback serves; copies are kept at most cache.ttl; > 0.",
            )
            .default(dur(d::MAX_STALE)),
        )],
        &[],
    )
}

pub(super) fn queue() -> Value {
    object(
        "A bounded queue of accepted requests.",
        up::QUEUE_FIELDS,
        vec![
            (
                "max_items",
                Prop::new(int(1, d::MAX_COUNT), "Requests held at most.")
                    .default(d::QUEUE_MAX_ITEMS),
            ),
            (
                "max_bytes",
                Prop::new(int(1, d::MAX_QUEUE_BYTES), "Bytes held at most.")
                    .default(d::QUEUE_MAX_BYTES),
            ),
        ],
        &[],
    )
}

pub(super) fn static_answer() -> Value {
    object(
        "A fixed response.",
        up::STATIC_FIELDS,
        vec![
            (
                "status",
                Prop::new(int(d::MIN_STATIC_STATUS, d::MAX_STATUS), "The status.")
                    .default(d::STATIC_STATUS),
            ),
            (
                "headers",
                Prop::new(def("header_map"), "Response headers.").default(json!({})),
            ),
            (
                "body",
                Prop::new(json!({ "type": "string" }), "Response body.").default(""),
            ),
        ],
        &[],
    )
}

pub(super) fn route() -> Value {
    object(
        "Sends matching requests through an upstream.",
        up::ROUTE_FIELDS,
        vec![
            (
                "match",
                Prop::new(
                    def("match"),
                    "Which requests; absent = every request (then it must be the last route).",
                )
                .default(json!({})),
            ),
            (
                "upstream",
                Prop::new(def("name"), "A key of `upstreams`.").example("payments"),
            ),
        ],
        &["upstream"],
    )
}
