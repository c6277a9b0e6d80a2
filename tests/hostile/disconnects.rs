//! Clients that vanish at every stage: while the shaper holds them, during a callout, during
//! a backoff wait, while holding an idempotency lock, while waiting for another's key. After
//! each: nothing held, nothing sent on their behalf later, and the next request behaves.

use std::time::{Duration, Instant};

use super::common::*;
use super::harness::client::send_raw_and_disconnect_after;
use super::harness::*;

fn hang_up_after(envoy: &Envoy, req: &Request, ms: u64) {
    let r = send_and_disconnect_after(envoy.port(), req, Duration::from_millis(ms));
    assert!(
        r.is_none(),
        "expected no answer within {ms} ms, got {:?}",
        r.map(|r| r.status)
    );
}

#[test]
fn a_client_that_leaves_while_shaped_is_never_forwarded() {
    // One request a second, no burst, delays up to 3 s.
    let (up, envoy) = start(serde_json::json!({
        "rate_limits": [{ "name": "shaper", "algorithm": "leaky_bucket", "limit": 1, "window": "1s",
                          "burst": 1, "max_delay": "3s" }],
    }));
    assert_eq!(send(envoy.port(), &Request::get("/first")).status, 200);
    std::thread::scope(|s| {
        for i in 0..2 {
            let envoy = &envoy;
            s.spawn(move || hang_up_after(envoy, &Request::get(&format!("/left-{i}")), 300));
        }
    });
    assert_clean(&envoy);
    // Their release times pass with nobody to release.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        up.count(),
        1,
        "a request whose client left was forwarded anyway"
    );
    let next = send(envoy.port(), &Request::get("/next"));
    assert_eq!(next.status, 200);
    assert!(
        next.elapsed < Duration::from_millis(1_500),
        "{:?}",
        next.elapsed
    );
    assert_clean(&envoy);
}

#[test]
fn a_client_that_leaves_during_a_callout_or_a_backoff_wait_stops_its_retries() {
    let (up, envoy) = start(callout_upstream(
        &serde_json::json!({ "timeout": "2s", "retry": { "max_retries": 3, "base_delay": "1500ms",
            "max_delay": "1500ms", "jitter": "none", "deadline": "10s" } }),
        &serde_json::json!({}),
    ));
    // During the attempt.
    hang_up_after(
        &envoy,
        &Request::get("/slow").header("x-upstream-delay-ms", "1000"),
        300,
    );
    assert_clean(&envoy);
    // During the backoff after a 503: the retry is never sent.
    up.script("backoff", vec![Reply::status(503), Reply::status(200)]);
    hang_up_after(
        &envoy,
        &Request::get("/b").header("x-script-key", "backoff"),
        400,
    );
    assert_clean(&envoy);
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(
        up.script_remaining("backoff"),
        1,
        "a retry went out after its client left"
    );
    let r = send(
        envoy.port(),
        &Request::get("/after").header("x-script-key", "backoff"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_clean(&envoy);
}

#[test]
fn a_client_that_leaves_while_holding_an_idempotency_lock() {
    let (up, envoy) = start(serde_json::json!({ "idempotency": { "lock_timeout": "1s" } }));
    let post =
        |key: &str| Request::post("/pay", b"amount=1".to_vec()).header("idempotency-key", key);
    // After forwarding: the upstream may act, the key stays locked until lock_timeout.
    hang_up_after(
        &envoy,
        &post("gone-after").header("x-upstream-delay-ms", "1500"),
        300,
    );
    assert_eq!(send(envoy.port(), &post("gone-after")).status, 409);
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(
        send(envoy.port(), &post("gone-after")).status,
        200,
        "retaken after lock_timeout"
    );
    assert_eq!(up.count_for("idempotency-key", "gone-after"), 2);
    // Before forwarding (half the body sent): released, the next request executes at once.
    let bytes = post("gone-before").to_bytes();
    let cut = &bytes[..bytes.len() - 4];
    let r = send_raw_and_disconnect_after(envoy.port(), cut, "POST", Duration::from_millis(300));
    assert!(r.is_none());
    assert_clean(&envoy);
    let started = Instant::now();
    assert_eq!(send(envoy.port(), &post("gone-before")).status, 200);
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(up.count_for("idempotency-key", "gone-before"), 1);
    assert_clean(&envoy);
}

#[test]
fn a_client_that_leaves_while_waiting_for_another_requests_key() {
    let (up, envoy) = start(
        serde_json::json!({ "idempotency": { "on_concurrent": "wait", "lock_timeout": "3s" } }),
    );
    let post = Request::post("/pay", b"a".to_vec()).header("idempotency-key", "shared");
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            send(
                envoy.port(),
                &post.clone().header("x-upstream-delay-ms", "1200"),
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        hang_up_after(&envoy, &post, 300);
        assert_eq!(first.join().unwrap().status, 200);
    });
    let replay = send(envoy.port(), &post);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(up.count(), 1);
    assert_clean(&envoy);
}

#[test]
fn a_half_open_probe_whose_client_leaves_in_callout_mode_does_not_stick() {
    let (up, envoy) = start(callout_upstream(
        &serde_json::json!({ "timeout": "500ms",
            "circuit_breaker": { "failure_threshold": 1, "reset_timeout": "300ms", "half_open_max_in_flight": 1 } }),
        &serde_json::json!({}),
    ));
    assert_eq!(
        send(
            envoy.port(),
            &Request::get("/x").header("x-upstream-status", "500")
        )
        .status,
        500
    );
    assert_eq!(send(envoy.port(), &Request::get("/x")).status, 503, "open");
    std::thread::sleep(Duration::from_millis(400));
    // The probe's client leaves while the upstream stalls: its lease (the attempt timeout
    // plus a second) runs out on its own.
    hang_up_after(
        &envoy,
        &Request::get("/probe").header("x-upstream-delay-ms", "3000"),
        100,
    );
    let r = send(envoy.port(), &Request::get("/x"));
    assert_eq!(
        r.status, 503,
        "the vanished probe still holds the only slot"
    );
    std::thread::sleep(Duration::from_millis(1_600));
    let r = send(envoy.port(), &Request::get("/x"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(up.count() >= 2);
    assert_clean(&envoy);
}
