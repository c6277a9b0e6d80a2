//! Upstreams that misbehave: garbage `Retry-After`, huge headers, resets mid-body, stalls
//! past every timeout.

use std::time::{Duration, Instant};

use super::common::*;
use super::harness::*;

fn retrying(extra: serde_json::Value) -> serde_json::Value {
    let mut retry = serde_json::json!({ "max_retries": 3, "base_delay": "50ms", "max_delay": "200ms",
        "deadline": "3s", "respect_retry_after": true, "retry_on": ["5xx", "reset", "timeout", "429"] });
    for (k, v) in extra.as_object().unwrap() {
        retry[k] = v.clone();
    }
    callout_upstream(
        &serde_json::json!({ "timeout": "500ms", "retry": retry }),
        &serde_json::json!({}),
    )
}

#[test]
fn garbage_retry_after_values_never_stall_or_break_retries() {
    let (up, envoy) = start(retrying(serde_json::json!({})));
    let garbage = [
        "soon",
        "-5",
        "1.5",
        "99999999999999999999999",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 99 Foo 2024 99:99:99 GMT",
        "",
    ];
    for (i, value) in garbage.iter().enumerate() {
        let key = format!("ra-{i}");
        up.script(
            &key,
            vec![
                Reply::status(503)
                    .header("retry-after", value)
                    .header("x-ratelimit-reset", value),
                Reply::status(200).body("ok"),
            ],
        );
        let started = Instant::now();
        let r = send(
            envoy.port(),
            &Request::get("/x").header("x-script-key", &key),
        );
        let waited = started.elapsed();
        // A wait beyond the deadline gives up at once (the 503 goes through); anything else
        // that does not parse falls back to the backoff (≤ 200 ms).
        match r.status {
            200 => assert!(
                waited < Duration::from_secs(2),
                "{value:?}: waited {waited:?}"
            ),
            503 => assert!(
                waited < Duration::from_millis(500),
                "{value:?}: gave up after {waited:?}"
            ),
            s => panic!("{value:?}: {s} {}", r.text()),
        }
    }
    // A real one is honoured.
    up.script(
        "ra-1s",
        vec![
            Reply::status(429).header("retry-after", "1"),
            Reply::status(200),
        ],
    );
    let started = Instant::now();
    assert_eq!(
        send(
            envoy.port(),
            &Request::get("/x").header("x-script-key", "ra-1s")
        )
        .status,
        200
    );
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_clean(&envoy);
}

#[test]
fn huge_response_headers_pass_through_and_replay_or_are_refused_cleanly() {
    // Router mode with idempotency: a 40 KB header is captured and replayed byte for byte.
    let (up, envoy) = start(serde_json::json!({ "idempotency": {} }));
    let big = "h".repeat(40_000);
    up.script(
        "big",
        vec![Reply::status(201).header("x-big", &big).body("made")],
    );
    let post = Request::post("/pay", b"a".to_vec())
        .header("idempotency-key", "big-headers")
        .header("x-script-key", "big");
    let first = send(envoy.port(), &post);
    assert_eq!(first.status, 201);
    assert_eq!(first.header("x-big").map(|v| v.len()), Some(40_000));
    let again = send(envoy.port(), &post);
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.header("x-big"), first.header("x-big"));
    assert_eq!(up.count(), 1);
    assert_clean(&envoy);

    // Callout mode: the same header through dispatch_http_call, and one over Envoy's limit.
    let (up, envoy) = start(callout_upstream(
        &serde_json::json!({}),
        &serde_json::json!({}),
    ));
    up.script("big", vec![Reply::status(200).header("x-big", &big)]);
    let r = send(
        envoy.port(),
        &Request::get("/x").header("x-script-key", "big"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-big").map(|v| v.len()), Some(40_000));
    let over = "o".repeat(100_000);
    up.script("over", vec![Reply::status(200).header("x-over", &over)]);
    let r = send(
        envoy.port(),
        &Request::get("/x").header("x-script-key", "over"),
    );
    assert!(
        r.status == 502 || r.status == 503,
        "an answer Envoy cannot read is a failure: {}",
        r.status
    );
    assert_clean(&envoy);
}

#[test]
fn a_reset_mid_body_leaves_a_keyed_request_locked_then_retakeable() {
    let (up, envoy) = start(serde_json::json!({ "idempotency": { "lock_timeout": "1s" } }));
    let post = |key: &str| Request::post("/pay", b"a".to_vec()).header("idempotency-key", key);
    up.script(
        "cut",
        vec![Reply::status(200)
            .body("x".repeat(4_000))
            .reset_after_headers()],
    );
    // The client sees the headers, then the connection dies mid-body.
    let r = try_send(envoy.port(), &post("k-cut").header("x-script-key", "cut"));
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|r| r.body.len() < 4_000),
        "{r:?}"
    );
    // The upstream may have acted: locked until lock_timeout, then retaken.
    let locked = send(envoy.port(), &post("k-cut"));
    assert_eq!(locked.status, 409, "{}", locked.text());
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(send(envoy.port(), &post("k-cut")).status, 200);
    assert_eq!(up.count_for("idempotency-key", "k-cut"), 2);
    assert_clean(&envoy);

    // Callout mode: a cut answer is a reset; with retries on reset the next attempt serves.
    let (up, envoy) = start(retrying(serde_json::json!({})));
    up.script(
        "cut",
        vec![
            Reply::status(200)
                .body("x".repeat(4_000))
                .reset_after_headers(),
            Reply::status(200).body("whole"),
        ],
    );
    let r = send(
        envoy.port(),
        &Request::get("/x").header("x-script-key", "cut"),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "whole"));
    assert_eq!(r.header("x-levee-attempts").as_deref(), Some("2"));
    assert_clean(&envoy);
}

#[test]
fn stalls_past_every_timeout_end_in_time() {
    // Router: the route timeout (400 ms) answers 504; the keyed request stays locked.
    let (up, envoy) = start_with(
        serde_json::json!({ "idempotency": { "lock_timeout": "1s" },
            "upstreams": { "svc": { "circuit_breaker": { "failure_threshold": 2, "reset_timeout": "500ms" } } },
            "routes": [{ "match": { "path_prefix": "/" }, "upstream": "svc" }] }),
        |o| o.route_timeout = Duration::from_millis(400),
    );
    let stall = |key: &str| {
        Request::post("/pay", b"a".to_vec())
            .header("idempotency-key", key)
            .header("x-upstream-delay-ms", "3000")
    };
    let r = send(envoy.port(), &stall("s1"));
    assert_eq!(r.status, 504);
    assert!(r.elapsed < Duration::from_secs(2), "{:?}", r.elapsed);
    assert_eq!(send(envoy.port(), &stall("s1")).status, 409);
    let _ = send(envoy.port(), &stall("s2")); // second timeout: the breaker opens
    let open = send(envoy.port(), &Request::get("/x"));
    assert_eq!(open.status, 503);
    assert_eq!(open.header("x-levee-circuit").as_deref(), Some("open"));
    // Nothing is stuck: after reset_timeout and lock_timeout everything works again.
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(send(envoy.port(), &Request::get("/x")).status, 200);
    assert_eq!(
        send(
            envoy.port(),
            &Request::post("/pay", b"a".to_vec()).header("idempotency-key", "s1")
        )
        .status,
        200
    );
    drop(up);
    assert_clean(&envoy);

    // Callout: per-attempt timeout 300 ms, deadline 1 s, the upstream stalls 3 s every time.
    let (_up, envoy) = start(callout_upstream(
        &serde_json::json!({ "timeout": "300ms", "retry": { "max_retries": 5, "base_delay": "50ms", "deadline": "1s" } }),
        &serde_json::json!({}),
    ));
    let r = send(
        envoy.port(),
        &Request::get("/x").header("x-upstream-delay-ms", "3000"),
    );
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.elapsed < Duration::from_millis(1_600),
        "the deadline bounds the whole request: {:?}",
        r.elapsed
    );
    assert_clean(&envoy);
}
