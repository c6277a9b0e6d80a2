//! The fuzzer's findings (src/fuzz_tests/regressions.rs), proven against a real Envoy.
//! All three are fixed on main (bc097dd, 11f4652, 93ee820); these keep them fixed.

use std::time::Duration;

use super::common::*;
use super::harness::*;

/// Fixed in bc097dd.
#[test]
fn a_body_that_arrives_while_the_shaper_holds_the_request_is_read_after_release() {
    // Two tokens a second, no burst: the second POST waits ~500 ms, and its body (sent with
    // the headers) arrives while it waits. It must still be forwarded once released.
    let (up, envoy) = start(serde_json::json!({
        "rate_limits": [{ "name": "shaper", "algorithm": "leaky_bucket", "limit": 2, "window": "1s",
                          "burst": 1, "max_delay": "900ms" }],
        "idempotency": {},
    }));
    let post = |key: &str| {
        Request::post("/pay", b"amount=1".to_vec())
            .header("idempotency-key", key)
            .timeout(Duration::from_secs(8))
    };
    let rs = burst(2, |i| try_send(envoy.port(), &post(&format!("shaped-{i}"))));
    for r in &rs {
        let r = r.as_ref().expect("answered, not hung");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.elapsed < Duration::from_secs(3), "took {:?}", r.elapsed);
    }
    assert_eq!(up.count(), 2);
    assert_clean(&envoy);
}

#[test]
fn a_grpc_request_to_a_callout_upstream_whose_answer_fails_is_never_left_hanging() {
    // gRPC cannot go by callout, so it goes through the router; its 503 must reach the client
    // (router mode after response headers: only stale cache or static may replace it).
    let (up, envoy) = start_with(
        callout_upstream(
            &serde_json::json!({ "fallback": [{ "cluster": "secondary" }] }),
            &serde_json::json!({}),
        ),
        |o| o.clusters.push(("secondary".into(), o.clusters[0].1)),
    );
    let r = try_send(
        envoy.port(),
        &Request::post("/pkg.Svc/Call", b"\0\0\0\0\0".to_vec())
            .header("content-type", "application/grpc")
            .header("x-upstream-status", "503")
            .header("x-upstream-body", "")
            .timeout(Duration::from_secs(8)),
    );
    let r = r.expect("answered, not hung");
    assert_eq!(r.status, 503);
    assert_eq!(
        up.count(),
        1,
        "the secondary was called after the response had begun"
    );
    assert_clean(&envoy);
}

#[test]
fn a_keyed_request_the_secondary_cluster_answers_is_not_executed_twice() {
    for forward in ["router", "callout"] {
        let (up, envoy) = start_with(
            serde_json::json!({
                "idempotency": {},
                "upstreams": { "svc": { "forward": forward, "cluster": "upstream",
                    "circuit_breaker": { "failure_threshold": 1, "reset_timeout": "30s" },
                    "fallback": [{ "cluster": "secondary" }] } },
                "routes": [{ "match": { "path_prefix": "/" }, "upstream": "svc" }],
            }),
            |o| o.clusters.push(("secondary".into(), o.clusters[0].1)),
        );
        // One failure opens the breaker; the secondary (the same test upstream behind another
        // cluster name) answers then.
        let _ = send(
            envoy.port(),
            &Request::get("/x").header("x-upstream-status", "500"),
        );
        let post = Request::new("POST", "/pay").header("idempotency-key", "once");
        let first = send(envoy.port(), &post);
        assert_eq!(first.status, 200, "{forward}: {}", first.text());
        assert_eq!(
            first.header("x-levee-fallback").as_deref(),
            Some("secondary")
        );
        let retry = send(envoy.port(), &post);
        assert_eq!(
            up.count_for("idempotency-key", "once"),
            1,
            "{forward}: executed twice"
        );
        assert!(
            retry.status == 200 || retry.status == 409,
            "{forward}: {}",
            retry.status
        );
        assert_clean(&envoy);
    }
}
