//! Graceful fallback against a real Envoy with 4 workers: stale cache with `Age`, static
//! default, secondary cluster, queue-for-later with delivery once the upstream recovers, a
//! full queue falling through, and an open breaker that keeps every fallback away from the
//! failing upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::keyed::keyed_since;
use harness::*;

const STATIC: &str = r#"{ "static": { "status": 200, "headers": { "content-type": "application/json" }, "body": "{\"items\":[]}" } }"#;

fn start(
    svc: serde_json::Value,
    extra: serde_json::Value,
    secondary: Option<&Upstream>,
) -> (Upstream, Envoy) {
    start_levee(&single_upstream(svc, &extra), |o| {
        o.concurrency = 4;
        if let Some(s) = secondary {
            o.clusters.push(("secondary".into(), s.port()));
        }
    })
}

fn static_entry() -> serde_json::Value {
    serde_json::from_str(STATIC).unwrap()
}

#[test]
fn a_cached_get_is_served_stale_with_age_and_an_uncached_one_gets_the_static_default() {
    let svc = serde_json::json!({
        "cache": { "ttl": "5m" },
        "fallback": [ { "stale_cache": { "max_stale": "1h" }, "methods": ["GET", "HEAD"] }, static_entry() ]
    });
    let (up, envoy) = start(svc, serde_json::json!({}), None);
    let fresh = send(
        envoy.port(),
        &Request::get("/items/1").header("x-upstream-body", "fresh-1"),
    );
    assert_eq!(fresh.status, 200);
    assert!(fresh.header("x-levee-fallback").is_none());
    std::thread::sleep(Duration::from_millis(1_100));
    let stale = send(
        envoy.port(),
        &Request::get("/items/1").header("x-upstream-status", "503"),
    );
    assert_eq!(stale.status, 200);
    assert_eq!(stale.text(), "fresh-1");
    assert_eq!(
        stale.header("x-levee-fallback").as_deref(),
        Some("stale-cache")
    );
    let age: u64 = stale.header("age").unwrap().parse().unwrap();
    assert!((1..=3).contains(&age), "Age {age}");
    let uncached = send(
        envoy.port(),
        &Request::get("/items/2").header("x-upstream-status", "500"),
    );
    assert_eq!(uncached.status, 200);
    assert_eq!(uncached.text(), "{\"items\":[]}");
    assert_eq!(
        uncached.header("x-levee-fallback").as_deref(),
        Some("static")
    );
    assert_eq!(
        uncached.header("content-type").as_deref(),
        Some("application/json")
    );
    // One user's answer never reaches another: credentials without `public` are not stored.
    send(
        envoy.port(),
        &Request::get("/me")
            .header("authorization", "Bearer a")
            .header("x-upstream-body", "alice"),
    );
    let other = send(
        envoy.port(),
        &Request::get("/me")
            .header("authorization", "Bearer b")
            .header("x-upstream-status", "503"),
    );
    assert_ne!(other.text(), "alice");
    assert_eq!(other.header("x-levee-fallback").as_deref(), Some("static"));
    assert_eq!(up.count(), 5);
    assert_eq!(envoy.stat("levee_fallback.svc.stale_cache"), 1);
    assert_eq!(envoy.stat("levee_fallback.svc.static"), 2);
}

#[test]
fn with_the_breaker_open_fallbacks_never_touch_the_failing_upstream() {
    let svc = serde_json::json!({
        "circuit_breaker": { "failure_threshold": 2, "reset_timeout": "30s" },
        "cache": { "ttl": "5m" },
        "fallback": [ { "stale_cache": { "max_stale": "1h" } }, static_entry() ]
    });
    let (up, envoy) = start(svc, serde_json::json!({}), None);
    assert_eq!(
        send(
            envoy.port(),
            &Request::get("/cached").header("x-upstream-body", "v1")
        )
        .status,
        200
    );
    for _ in 0..2 {
        send(
            envoy.port(),
            &Request::get("/x").header("x-upstream-status", "503"),
        );
    }
    assert_eq!(envoy.stat("levee_breaker.svc.opened"), 1);
    let seen = up.count();
    let stale = send(envoy.port(), &Request::get("/cached"));
    assert_eq!(stale.text(), "v1");
    assert_eq!(
        stale.header("x-levee-fallback").as_deref(),
        Some("stale-cache")
    );
    let fallback = send(envoy.port(), &Request::get("/never-cached"));
    assert_eq!(
        fallback.header("x-levee-fallback").as_deref(),
        Some("static")
    );
    assert_eq!(up.count(), seen, "no fallback touched the failing upstream");
}

#[test]
fn the_secondary_cluster_answers_when_the_primary_fails() {
    let secondary = Upstream::start();
    let svc = serde_json::json!({
        "forward": "callout", "cluster": "upstream",
        "fallback": [ { "cluster": "secondary" }, static_entry() ]
    });
    let (up, envoy) = start(svc, serde_json::json!({}), Some(&secondary));
    up.set_default(Some(Reply::status(503)));
    let r = send(envoy.port(), &Request::get("/report"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-levee-fallback").as_deref(), Some("secondary"));
    assert_eq!(up.count(), 1);
    assert_eq!(secondary.count(), 1);
    assert_eq!(secondary.requests()[0].path, "/report");
    // A failing secondary passes on to the next entry.
    secondary.set_default(Some(Reply::status(500)));
    let r = send(envoy.port(), &Request::get("/report"));
    assert_eq!(r.header("x-levee-fallback").as_deref(), Some("static"));
}

#[test]
fn in_router_mode_the_secondary_cluster_answers_while_the_breaker_is_open() {
    let secondary = Upstream::start();
    let svc = serde_json::json!({
        "circuit_breaker": { "failure_threshold": 1, "reset_timeout": "30s" },
        "fallback": [ { "cluster": "secondary" }, static_entry() ]
    });
    let (up, envoy) = start(svc, serde_json::json!({}), Some(&secondary));
    // The failure itself is seen in the response: only stale cache / static may replace it.
    let first = send(
        envoy.port(),
        &Request::get("/r").header("x-upstream-status", "503"),
    );
    assert_eq!(first.header("x-levee-fallback").as_deref(), Some("static"));
    // Now the breaker is open: the request never goes upstream, the secondary answers.
    let r = send(envoy.port(), &Request::get("/r"));
    assert_eq!(
        r.header("x-levee-fallback").as_deref(),
        Some("secondary"),
        "{} {}",
        r.status,
        r.text()
    );
    assert_eq!(up.count(), 1);
    assert_eq!(secondary.count(), 1);
}

fn queue_config(max_items: u32) -> (serde_json::Value, serde_json::Value) {
    let svc = serde_json::json!({
        "forward": "callout", "cluster": "upstream", "timeout": "1s",
        "retry": { "max_retries": 0, "base_delay": "100ms", "max_delay": "300ms" },
        "circuit_breaker": { "failure_threshold": 3, "reset_timeout": "1s" },
        "fallback": [ { "queue": { "max_items": max_items, "max_bytes": 1048576 }, "methods": ["POST"] }, static_entry() ]
    });
    (
        svc,
        serde_json::json!({ "idempotency": { "lock_timeout": "1s" } }),
    )
}

#[test]
fn a_queued_post_is_delivered_once_the_upstream_recovers_and_its_answer_is_replayed() {
    let (svc, extra) = queue_config(100);
    let (up, envoy) = start(svc, extra, None);
    up.set_default(Some(Reply::status(503)));
    let post =
        || Request::post("/orders", b"{\"sku\":1}".to_vec()).header("idempotency-key", "order-1");
    let queued = send(envoy.port(), &post());
    assert_eq!(queued.status, 202, "{}", queued.text());
    assert_eq!(queued.header("x-levee-fallback").as_deref(), Some("queued"));
    assert_eq!(queued.json()["status"], "queued");
    // The queued copy keeps the key locked past lock_timeout: a retry does not execute.
    std::thread::sleep(Duration::from_millis(1_600));
    let retry = send(envoy.port(), &post());
    assert_eq!(retry.status, 409, "{}", retry.text());
    let recovered_at = Instant::now();
    up.set_default(None);
    let delivered = envoy.wait_for_stat(
        "levee_fallback.svc.queue_delivered",
        1,
        Duration::from_secs(15),
    );
    assert_eq!(delivered, 1);
    let after = keyed_since(&up, "order-1", recovered_at);
    assert_eq!(after.len(), 1, "delivered once after recovery");
    assert_eq!(after[0].body, b"{\"sku\":1}");
    // The delivered answer, not the 202, is what the idempotency record keeps.
    let replay = send(envoy.port(), &post());
    assert_eq!(replay.status, 200);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.at >= recovered_at)
            .count(),
        1
    );
}

#[test]
fn a_full_queue_falls_through_to_the_next_fallback() {
    let (svc, extra) = queue_config(1);
    // One worker, so that "the" queue is one queue (queues are per worker).
    let config = single_upstream(
        svc,
        &serde_json::json!({ "idempotency": extra["idempotency"].clone() }),
    );
    let (up, envoy) = start_levee(&config, |o| o.concurrency = 1);
    up.set_default(Some(Reply::status(503)));
    let first = send(envoy.port(), &Request::post("/o", b"a".to_vec()));
    assert_eq!(first.status, 202);
    let second = send(envoy.port(), &Request::post("/o", b"b".to_vec()));
    assert_eq!(
        second.header("x-levee-fallback").as_deref(),
        Some("static"),
        "{}",
        second.status
    );
}

#[test]
fn a_keyed_post_whose_failure_a_fallback_replaced_never_executes_twice() {
    let svc = serde_json::json!({ "fallback": [ static_entry() ] });
    let (up, envoy) = start(svc, serde_json::json!({ "idempotency": {} }), None);
    let post = || {
        Request::post("/pay", b"x".to_vec())
            .header("idempotency-key", "fb-1")
            .header("x-upstream-status", "500")
    };
    let first = send(envoy.port(), &post());
    assert_eq!(first.header("x-levee-fallback").as_deref(), Some("static"));
    let again = send(envoy.port(), &post());
    assert_eq!(
        again.status,
        409,
        "completed with status 500: {}",
        again.text()
    );
    assert_eq!(up.count_for("idempotency-key", "fb-1"), 1);
}

#[test]
fn router_mode_never_queues_a_body_it_did_not_buffer() {
    let svc = serde_json::json!({
        "circuit_breaker": { "failure_threshold": 1, "reset_timeout": "30s" },
        "cluster": "upstream",
        "fallback": [ { "queue": { "max_items": 10, "max_bytes": 65536 } }, static_entry() ]
    });
    let (up, envoy) = start(svc, serde_json::json!({}), None);
    send(
        envoy.port(),
        &Request::get("/x").header("x-upstream-status", "503"),
    );
    let post = send(
        envoy.port(),
        &Request::post("/orders", b"{\"sku\":9}".to_vec()),
    );
    assert_eq!(
        post.header("x-levee-fallback").as_deref(),
        Some("static"),
        "{}",
        post.status
    );
    let get = send(envoy.port(), &Request::get("/orders"));
    assert_eq!(get.status, 202, "a body-less request may be queued");
    assert_eq!(up.count(), 1);
}
