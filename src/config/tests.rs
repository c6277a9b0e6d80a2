//! Behaviour tests for [`super::parse`]: what is accepted, what each default is, and that
//! every refusal names the JSON path and the fix.

use super::*;
use std::time::Duration;

/// The config `json` parses to (the test fails with the refusal otherwise).
pub(super) fn ok(json: &str) -> LeveeConfig {
    parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// The refusal of `json` (the test fails if it is accepted).
pub(super) fn error(json: &str) -> String {
    match parse(json.as_bytes()) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn rl(body: &str) -> String {
    format!(r#"{{"rate_limits": [{{"name": "a", "limit": 10, "window": "1s"{body}}}]}}"#)
}

fn up(body: &str) -> String {
    format!(r#"{{"upstreams": {{"pay": {{{body}}}}}}}"#)
}

#[test]
fn empty_input_and_empty_object_are_pass_through() {
    for doc in ["", "{}", "  \n"] {
        let c = ok(doc);
        assert!(c.rate_limits.is_empty() && c.upstreams.is_empty() && c.routes.is_empty());
        assert_eq!(c.idempotency, None);
        assert_eq!(
            c.client_ip,
            ClientIpConfig {
                xff_trusted_hops: 0,
                ipv6_prefix: 64
            }
        );
        assert_eq!(c.limits.max_tracked_keys, 65_536);
        assert_eq!(c.rate_limit_headers, RateLimitHeaders::XRateLimit);
    }
}

#[test]
fn invalid_json_is_reported_with_position() {
    assert!(error("{\"rate_limits\": [}").starts_with("levee config: invalid JSON:"));
    assert_eq!(
        error("[]"),
        "levee config: expected an object, got an array"
    );
}

#[test]
fn unknown_field_in_rate_limit_names_the_path() {
    let e = error(r#"{"rate_limits": [{"name": "a", "limt": 5}]}"#);
    assert!(e.starts_with("levee config: rate_limits[0]: unknown field \"limt\" (expected one of: name, match, key,"), "{e}");
    assert!(e.ends_with("did you mean \"limit\"?)"), "{e}");
}

#[test]
fn unknown_top_level_field_is_refused() {
    assert!(
        error(r#"{"ratelimits": []}"#).starts_with("levee config: unknown field \"ratelimits\"")
    );
}

#[test]
fn bad_window_names_the_path_and_the_fix() {
    let doc = r#"{"rate_limits": [{"name": "a", "limit": 1, "window": "1s"}, {"name": "b", "limit": 1, "window": "10 parsecs"}]}"#;
    assert_eq!(error(doc), "levee config: rate_limits[1].window: \"10 parsecs\" is not a duration (use e.g. \"500ms\", \"1m\")");
}

#[test]
fn wrong_types_name_the_path() {
    assert_eq!(
        error(&rl(r#", "mode": 1"#)),
        "levee config: rate_limits[0].mode: expected a string, got 1"
    );
    assert_eq!(
        error(r#"{"rate_limits": {}}"#),
        "levee config: rate_limits: expected an array, got an object"
    );
    assert_eq!(
        error(r#"{"rate_limits": [{"name": "a", "limit": 1.5, "window": "1s"}]}"#),
        "levee config: rate_limits[0].limit: expected a whole number, got 1.5"
    );
}

#[test]
fn rate_limit_defaults_follow_the_spec() {
    let c = ok(&rl(""));
    let r = &c.rate_limits[0];
    assert_eq!(r.algorithm, Algorithm::TokenBucket);
    assert_eq!(
        (r.limit, r.burst, r.window),
        (10, 10, Duration::from_secs(1))
    );
    assert_eq!(
        (r.max_delay, r.mode, r.status),
        (Duration::ZERO, Mode::Enforce, 429)
    );
    assert_eq!(r.on_internal_error, OnInternalError::Allow);
    assert!(r.key.is_empty() && r.matcher == RequestMatch::default());
}

#[test]
fn match_lower_cases_headers_and_upper_cases_methods() {
    let c = ok(&rl(
        r#", "match": {"path_prefix": "/api/", "methods": ["post", "GET", "Post"], "route_name": "orders", "headers": {"X-Tenant": "acme"}}"#,
    ));
    let m = &c.rate_limits[0].matcher;
    assert_eq!(m.methods, ["POST", "GET"]);
    assert_eq!(m.headers, [("x-tenant".to_owned(), "acme".to_owned())]);
    assert_eq!(m.path_prefix.as_deref(), Some("/api/"));
    assert_eq!(m.route_name.as_deref(), Some("orders"));
}

#[test]
fn path_prefix_must_start_with_slash() {
    assert!(error(&rl(r#", "match": {"path_prefix": "api"}"#))
        .contains("rate_limits[0].match.path_prefix: \"api\" must start with \"/\""));
}

#[test]
fn duplicate_rate_limit_names_are_refused() {
    let doc = r#"{"rate_limits": [{"name": "a", "limit": 1, "window": "1s"}, {"name": "a", "limit": 2, "window": "1s"}]}"#;
    assert_eq!(error(doc), "levee config: rate_limits[1].name: \"a\" is already the name of rate_limits[0] (names must be unique)");
}

#[test]
fn names_must_be_lower_case_slugs() {
    let e = error(r#"{"rate_limits": [{"name": "Per User", "limit": 1, "window": "1s"}]}"#);
    assert!(e.contains("rate_limits[0].name: \"Per User\" is not a valid name (use 1-64 characters from a-z, 0-9"), "{e}");
    assert!(error(&up("").replace("pay", &"x".repeat(65))).contains("is not a valid name"));
}

#[test]
fn sliding_window_log_limit_is_capped_with_the_reason() {
    let e = error(
        &rl(r#", "algorithm": "sliding_window_log", "limit": 20000"#)
            .replace(r#""limit": 10, "#, ""),
    );
    assert!(e.contains("rate_limits[0].limit: 20000 is too large for sliding_window_log, which stores one timestamp per admitted request"), "{e}");
    assert!(
        ok(&rl(r#", "algorithm": "sliding_window_log""#)).rate_limits[0].algorithm
            == Algorithm::SlidingWindowLog
    );
}

#[test]
fn burst_and_max_delay_only_where_the_algorithm_uses_them() {
    assert!(error(&rl(r#", "algorithm": "fixed_window", "burst": 5"#))
        .contains("rate_limits[0].burst: only token_bucket and leaky_bucket use burst"));
    assert!(error(&rl(r#", "max_delay": "1s""#))
        .contains("rate_limits[0].max_delay: only leaky_bucket can delay"));
    let c = ok(&rl(
        r#", "algorithm": "leaky_bucket", "burst": 3, "max_delay": "250ms""#,
    ));
    assert_eq!(
        (c.rate_limits[0].burst, c.rate_limits[0].max_delay),
        (3, Duration::from_millis(250))
    );
}

#[test]
fn out_of_range_numbers_are_refused() {
    assert!(error(&rl("").replace(r#""limit": 10"#, r#""limit": 0"#))
        .contains("rate_limits[0].limit: 0 is out of range (use 1..="));
    assert!(error(&rl("").replace("1s", "0s"))
        .contains("rate_limits[0].window: must be greater than 0s"));
    assert!(error(&rl(r#", "status": 200"#)).contains("rate_limits[0].status: 200 is out of range (use 400..=599: a rejection must be a 4xx or 5xx status)"));
    assert!(error(r#"{"limits": {"max_tracked_keys": 0}}"#)
        .contains("limits.max_tracked_keys: 0 is out of range (use 1..=16777216"));
    assert!(error(r#"{"limits": {"max_tracked_keys": 16777217}}"#).contains("out of range"));
    assert!(error(r#"{"client_ip": {"ipv6_prefix": 0}}"#)
        .contains("client_ip.ipv6_prefix: 0 is out of range (use 1..=128)"));
    assert!(error(r#"{"client_ip": {"ipv6_prefix": 129}}"#).contains("out of range"));
}

#[test]
fn unknown_key_part_lists_the_valid_forms() {
    let e = error(&rl(r#", "key": ["header:x-user", "cookie:sid"]"#));
    assert!(e.contains("rate_limits[0].key[1]: \"cookie:sid\" is not a key part (use one of: source_ip, client_ip,"), "{e}");
}

#[test]
fn idempotency_defaults_follow_the_spec() {
    let i = ok(r#"{"idempotency": {}}"#).idempotency.unwrap();
    assert_eq!(i.methods, ["POST", "PATCH"]);
    assert_eq!(i.header, "idempotency-key");
    assert_eq!(
        (i.ttl, i.lock_timeout),
        (Duration::from_secs(86_400), Duration::from_secs(30))
    );
    assert_eq!(i.release_on, [408, 425, 429, 503]);
    assert!(i.fingerprint && !i.required && i.scope.is_empty());
    assert_eq!(
        (i.max_key_length, i.max_body_bytes, i.max_stored_bytes),
        (255, 262_144, 67_108_864)
    );
    assert_eq!(
        (i.on_concurrent, i.on_internal_error),
        (OnConcurrent::Reject, OnInternalError::Deny)
    );
}

#[test]
fn idempotency_header_is_stored_lower_case() {
    assert_eq!(
        ok(r#"{"idempotency": {"header": "X-Request-Key"}}"#)
            .idempotency
            .unwrap()
            .header,
        "x-request-key"
    );
}

#[test]
fn idempotency_body_limit_explains_envoys_buffer() {
    let e = error(r#"{"idempotency": {"max_body_bytes": 2000000}}"#);
    assert!(e.contains("idempotency.max_body_bytes: 2000000 is out of range (use 1..=1048576: Envoy's default buffer limit is 1 MiB"), "{e}");
}

#[test]
fn release_on_refuses_success_statuses() {
    assert!(error(r#"{"idempotency": {"release_on": [503, 200]}}"#)
        .contains("idempotency.release_on[1]: 200 is out of range"));
}

#[test]
fn upstream_defaults_are_router_mode_with_envoys_timeout() {
    let u = &ok(&up("")).upstreams[0];
    assert_eq!(
        (u.name.as_str(), u.forward, u.timeout),
        ("pay", Forward::Router, Duration::from_secs(15))
    );
    assert_eq!(u.max_body_bytes, 1_048_576);
    assert!(
        u.retry.is_none()
            && u.circuit_breaker.is_none()
            && u.cache.is_none()
            && u.fallback.is_empty()
    );
}

#[test]
fn callout_without_cluster_is_refused() {
    assert_eq!(error(&up(r#""forward": "callout""#)),
        "levee config: upstreams.pay: \"forward\": \"callout\" needs \"cluster\" (the Envoy cluster levee calls)");
}

#[test]
fn retry_on_a_router_mode_upstream_is_refused() {
    assert!(error(&up(r#""retry": {}"#))
        .starts_with("levee config: upstreams.pay.retry: needs \"forward\": \"callout\""));
}

#[test]
fn retry_defaults_and_deadline_from_timeout() {
    let c = ok(&up(
        r#""forward": "callout", "cluster": "pay", "timeout": "2s", "retry": {}"#,
    ));
    let r = c.upstreams[0].retry.as_ref().unwrap();
    assert_eq!(
        (r.max_retries, r.jitter, r.deadline),
        (2, Jitter::Full, Duration::from_secs(6))
    );
    assert_eq!(
        (r.base_delay, r.max_delay),
        (Duration::from_millis(100), Duration::from_secs(2))
    );
    assert_eq!(
        r.retry_on,
        [
            OutcomeClass::FiveXx,
            OutcomeClass::Reset,
            OutcomeClass::Timeout,
            OutcomeClass::ConnectFailure
        ]
    );
    assert_eq!(
        (r.budget, r.non_idempotent, r.respect_retry_after),
        (None, NonIdempotent::WithKey, true)
    );
}

#[test]
fn retry_on_accepts_classes_and_status_codes() {
    let c = ok(&up(
        r#""forward": "callout", "cluster": "c", "retry": {"retry_on": ["gateway_error", "429", 409], "budget": {}}"#,
    ));
    let r = c.upstreams[0].retry.as_ref().unwrap();
    assert_eq!(
        r.retry_on,
        [
            OutcomeClass::GatewayError,
            OutcomeClass::Status(429),
            OutcomeClass::Status(409)
        ]
    );
    assert_eq!(
        r.budget,
        Some(RetryBudget {
            ratio: 0.2,
            min_per_second: 10
        })
    );
    assert!(error(&up(
        r#""forward": "callout", "cluster": "c", "retry": {"retry_on": ["200"]}"#
    ))
    .contains("retry.retry_on[0]: 200 is not a failure status"));
}

#[test]
fn budget_ratio_must_be_a_fraction() {
    for bad in ["0", "1.5", "-0.1"] {
        let e = error(&up(&format!(
            r#""forward": "callout", "cluster": "c", "retry": {{"budget": {{"ratio": {bad}}}}}"#
        )));
        assert!(
            e.contains("upstreams.pay.retry.budget.ratio:") && e.contains("(0, 1]"),
            "{e}"
        );
    }
}

#[test]
fn breaker_defaults_and_failure_rate_bounds() {
    let b = ok(&up(r#""circuit_breaker": {"failure_rate": {}}"#)).upstreams[0]
        .circuit_breaker
        .clone()
        .unwrap();
    assert_eq!(
        (
            b.failure_threshold,
            b.reset_timeout,
            b.half_open_successes,
            b.half_open_max_in_flight
        ),
        (5, Duration::from_secs(30), 3, 1)
    );
    assert_eq!(
        b.failure_rate,
        Some(FailureRate {
            threshold: 0.5,
            minimum_calls: 20,
            window: Duration::from_secs(10)
        })
    );
    assert_eq!(
        b.failure_on,
        [
            OutcomeClass::FiveXx,
            OutcomeClass::Timeout,
            OutcomeClass::Reset,
            OutcomeClass::ConnectFailure
        ]
    );
    assert!(error(&up(
        r#""circuit_breaker": {"failure_rate": {"threshold": 0}}"#
    ))
    .contains("circuit_breaker.failure_rate.threshold: 0 is out of range"));
    assert!(error(&up(r#""circuit_breaker": {"failure_threshold": 0}"#))
        .contains("nothing could open the breaker"));
}

#[test]
fn fallback_after_unconditional_static_is_refused() {
    let e = error(&up(
        r#""fallback": [{"static": {"status": 200}}, {"static": {}}]"#,
    ));
    assert!(e.starts_with("levee config: upstreams.pay.fallback[1]: can never run: upstreams.pay.fallback[0] is a static fallback for every method"), "{e}");
    let c = ok(&up(
        r#""fallback": [{"static": {"status": 503}, "methods": ["get"]}, {"static": {"body": "{}", "headers": {"Content-Type": "application/json"}}}]"#,
    ));
    assert_eq!(c.upstreams[0].fallback[0].methods, ["GET"]);
    assert_eq!(
        c.upstreams[0].fallback[1].kind,
        FallbackKind::Static {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec()
        }
    );
}

#[test]
fn fallback_entry_needs_exactly_one_kind() {
    assert!(
        error(&up(r#""fallback": [{"methods": ["GET"]}]"#)).contains(
            "fallback[0]: expected exactly one of stale_cache, cluster, queue, static (found 0)"
        )
    );
    assert!(error(&up(r#""fallback": [{"static": {}, "cluster": "x"}]"#)).contains("(found 2)"));
}

#[test]
fn stale_cache_and_queue_need_what_they_read_from() {
    assert!(error(&up(r#""fallback": [{"stale_cache": {}}]"#))
        .contains("upstreams.pay.fallback[0].stale_cache: needs upstreams.pay.cache"));
    assert!(error(&up(r#""fallback": [{"queue": {}}]"#))
        .contains("upstreams.pay.fallback[0].queue: needs upstreams.pay.cluster"));
    let c = ok(&up(
        r#""cluster": "pay", "cache": {}, "fallback": [{"stale_cache": {}}, {"cluster": "replica"}, {"queue": {"max_items": 5}}]"#,
    ));
    let kinds: Vec<_> = c.upstreams[0]
        .fallback
        .iter()
        .map(|f| f.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            FallbackKind::StaleCache {
                max_stale: Duration::from_secs(3600)
            },
            FallbackKind::Cluster {
                cluster: "replica".into()
            },
            FallbackKind::Queue {
                max_items: 5,
                max_bytes: 16_777_216
            },
        ]
    );
}

#[test]
fn routes_resolve_upstreams_in_declaration_order() {
    let c = ok(
        r#"{"upstreams": {"zeta": {}, "alpha": {}}, "routes": [{"match": {"path_prefix": "/a"}, "upstream": "alpha"}, {"upstream": "zeta"}]}"#,
    );
    assert_eq!(c.upstreams[0].name, "zeta");
    assert_eq!((c.routes[0].upstream, c.routes[1].upstream), (1, 0));
}

#[test]
fn dangling_route_upstream_is_refused() {
    let e = error(r#"{"upstreams": {"pay": {}}, "routes": [{"upstream": "payments"}]}"#);
    assert_eq!(
        e,
        "levee config: routes[0].upstream: \"payments\" is not in \"upstreams\" (defined: pay)"
    );
}

#[test]
fn route_after_a_catch_all_route_is_refused() {
    let e = error(
        r#"{"upstreams": {"pay": {}}, "routes": [{"upstream": "pay"}, {"match": {"path_prefix": "/x"}, "upstream": "pay"}]}"#,
    );
    assert!(
        e.contains("routes[1]: can never match: routes[0] matches every request"),
        "{e}"
    );
}

#[test]
fn duplicate_upstream_names_are_refused() {
    assert!(error(r#"{"upstreams": {"pay": {}, "pay": {}}}"#)
        .contains("upstreams: duplicate field \"pay\""));
}

#[test]
fn the_spec_example_parses() {
    let doc = r#"{
      "client_ip": { "xff_trusted_hops": 1, "ipv6_prefix": 56 },
      "limits": { "max_tracked_keys": 65536 },
      "rate_limits": [{ "name": "per-user", "match": { "path_prefix": "/api/", "methods": ["POST"], "route_name": "orders",
          "headers": { "x-tenant": "acme" } }, "key": ["header:x-user-id"], "algorithm": "token_bucket",
          "limit": 100, "window": "1m", "burst": 100, "mode": "enforce", "status": 429, "on_internal_error": "allow" }],
      "rate_limit_headers": "both",
      "idempotency": { "methods": ["POST", "PATCH"], "match": { "path_prefix": "/" }, "header": "Idempotency-Key",
          "required": false, "scope": ["header:x-user-id"], "ttl": "24h", "lock_timeout": "30s", "fingerprint": true,
          "on_concurrent": "reject", "release_on": [408, 425, 429, 503], "max_key_length": 255, "max_body_bytes": 262144,
          "max_stored_bytes": 67108864, "on_internal_error": "deny" },
      "upstreams": { "payments": { "forward": "callout", "cluster": "payments", "authority": "payments.internal",
          "timeout": "2s", "max_body_bytes": 1048576,
          "retry": { "max_retries": 3, "base_delay": "100ms", "max_delay": "2s", "jitter": "full", "deadline": "5s",
              "retry_on": ["5xx", "reset", "timeout", "connect_failure", "429"], "respect_retry_after": true,
              "budget": { "ratio": 0.2, "min_per_second": 10 }, "non_idempotent": "with_key" },
          "circuit_breaker": { "failure_threshold": 5, "failure_rate": { "threshold": 0.5, "minimum_calls": 20, "window": "10s" },
              "slow_call": "2s", "reset_timeout": "30s", "half_open_successes": 3, "half_open_max_in_flight": 1,
              "failure_on": ["5xx", "timeout", "reset", "connect_failure"] },
          "cache": { "ttl": "5m", "max_body_bytes": 65536, "max_total_bytes": 33554432, "key": ["header:x-user-id"] },
          "fallback": [
            { "stale_cache": { "max_stale": "1h" }, "methods": ["GET", "HEAD"] },
            { "cluster": "payments-replica" },
            { "queue": { "max_items": 1000, "max_bytes": 16777216 }, "methods": ["POST"] },
            { "static": { "status": 200, "headers": { "content-type": "application/json" }, "body": "{\"items\":[]}" } } ] } },
      "routes": [ { "match": { "path_prefix": "/payments" }, "upstream": "payments" } ]
    }"#;
    let c = ok(doc);
    assert_eq!(c.client_ip.ipv6_prefix, 56);
    assert_eq!(c.rate_limits[0].key, [KeyPart::Header("x-user-id".into())]);
    assert_eq!(
        c.upstreams[0].retry.as_ref().unwrap().deadline,
        Duration::from_secs(5)
    );
    assert_eq!(c.upstreams[0].fallback.len(), 4);
    // The effective config parses back to the same config.
    let effective = to_effective_json(&c);
    assert_eq!(ok(&effective.to_string()), c);
}

#[test]
fn effective_json_fills_in_every_default() {
    let c = ok(
        r#"{"idempotency": {}, "upstreams": {"pay": {"forward": "callout", "cluster": "c", "retry": {}, "circuit_breaker": {}}}}"#,
    );
    let v = to_effective_json(&c);
    assert_eq!(v["upstreams"]["pay"]["retry"]["deadline"], "45s");
    assert_eq!(
        v["upstreams"]["pay"]["circuit_breaker"]["failure_on"][0],
        "5xx"
    );
    assert_eq!(v["idempotency"]["ttl"], "1d");
    assert_eq!(v["rate_limit_headers"], "x-ratelimit");
    assert_eq!(ok(&v.to_string()), c);
}

#[test]
fn enum_values_list_the_choices() {
    assert_eq!(
        error(r#"{"rate_limit_headers": "draft"}"#),
        "levee config: rate_limit_headers: \"draft\" is not one of: x-ratelimit, ietf, both, none"
    );
    assert!(error(&rl(r#", "algorithm": "gcra""#)).contains(
        "rate_limits[0].algorithm: \"gcra\" is not one of: fixed_window, sliding_window_log,"
    ));
}

#[test]
fn null_fields_take_their_defaults() {
    let c = ok(r#"{"client_ip": {"ipv6_prefix": null}, "idempotency": {"ttl": null}}"#);
    assert_eq!(c.client_ip.ipv6_prefix, 64);
    assert_eq!(c.idempotency.unwrap().ttl, Duration::from_secs(86_400));
}

#[test]
fn static_fallback_headers_must_be_valid() {
    assert!(error(&up(r#""fallback": [{"static": {"headers": {"bad header": "x"}}}]"#))
        .contains("upstreams.pay.fallback[0].static.headers[\"bad header\"]: \"bad header\" is not a valid header name"));
    assert!(error(&up(r#""fallback": [{"static": {"status": 600}}]"#))
        .contains("static.status: 600 is out of range (use 100..=599)"));
}
