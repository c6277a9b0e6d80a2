//! Callout forwarding and retries against a real Envoy with 4 workers: attempts, backoff
//! bounds, what is never retried, idempotency keys and non-idempotent methods, Retry-After,
//! the deadline, timeouts, the retry budget under an outage, jitter spread, and the breaker
//! fed by every attempt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;

fn start(svc: serde_json::Value) -> (Upstream, Envoy) {
    start_with(svc, serde_json::json!({}))
}

fn start_with(svc: serde_json::Value, extra: serde_json::Value) -> (Upstream, Envoy) {
    start_levee(&callout_upstream(&svc, &extra), |o| o.concurrency = 4)
}

fn retry(extra: serde_json::Value) -> serde_json::Value {
    let mut r = serde_json::json!({ "max_retries": 3, "base_delay": "100ms", "max_delay": "1s", "deadline": "5s" });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    serde_json::json!({ "retry": r })
}

fn arrivals(up: &Upstream, key: &str) -> Vec<Instant> {
    up.requests()
        .into_iter()
        .filter(|r| r.header("x-script-key").as_deref() == Some(key))
        .map(|r| r.at)
        .collect()
}

#[test]
fn a_request_failing_twice_succeeds_on_attempt_three_within_the_backoff_bounds() {
    let (up, envoy) = start(retry(serde_json::json!({})));
    up.script(
        "k3",
        vec![
            Reply::status(503),
            Reply::status(502),
            Reply::status(200).body("third time"),
        ],
    );
    let started = Instant::now();
    let r = send(
        envoy.port(),
        &Request::get("/orders?x=1")
            .header("x-script-key", "k3")
            .header("x-request-id", "rid-1"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "third time");
    assert_eq!(r.header("x-levee-attempts").as_deref(), Some("3"));
    let at = arrivals(&up, "k3");
    assert_eq!(at.len(), 3);
    // Full jitter: retry n waits rand(0, min(max_delay, base·2ⁿ)): ≤ 100 ms, then ≤ 200 ms.
    assert!(
        at[1] - at[0] <= Duration::from_millis(100 + 150),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] <= Duration::from_millis(200 + 150),
        "{:?}",
        at[2] - at[1]
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let seen = up.requests();
    assert!(seen
        .iter()
        .all(|s| s.path == "/orders?x=1" && s.header("x-request-id").as_deref() == Some("rid-1")));
    assert_eq!(envoy.stat("levee_upstream.svc.retries"), 2);
}

#[test]
fn client_errors_are_never_retried() {
    let (up, envoy) = start(retry(serde_json::json!({})));
    for status in [404, 400, 401] {
        let key = format!("k{status}");
        up.script(&key, vec![Reply::status(status), Reply::status(200)]);
        let r = send(
            envoy.port(),
            &Request::get("/x").header("x-script-key", &key),
        );
        assert_eq!(r.status, status);
        assert_eq!(r.header("x-levee-attempts").as_deref(), Some("1"));
    }
    assert_eq!(up.count(), 3);
}

#[test]
fn a_post_is_retried_only_with_an_idempotency_key_which_every_attempt_carries() {
    let (up, envoy) = start(retry(serde_json::json!({})));
    up.script("plain", vec![Reply::status(503), Reply::status(200)]);
    let r = send(
        envoy.port(),
        &Request::post("/pay", b"amount=5".to_vec()).header("x-script-key", "plain"),
    );
    assert_eq!(
        r.status, 503,
        "an un-keyed POST is not retried: its answer is served"
    );
    assert_eq!(arrivals(&up, "plain").len(), 1);

    up.script("keyed", vec![Reply::status(503), Reply::status(201)]);
    let r = send(
        envoy.port(),
        &Request::post("/pay", b"amount=5".to_vec())
            .header("x-script-key", "keyed")
            .header("idempotency-key", "pay-77"),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-levee-attempts").as_deref(), Some("2"));
    let sent: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|s| s.header("x-script-key").as_deref() == Some("keyed"))
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|s| s.header("idempotency-key").as_deref() == Some("pay-77")
                && s.body == b"amount=5")
    );
}

#[test]
fn retry_after_from_the_upstream_is_honoured() {
    let (up, envoy) = start(retry(serde_json::json!({})));
    up.script(
        "ra",
        vec![
            Reply::status(503).header("retry-after", "1"),
            Reply::status(200),
        ],
    );
    let r = send(
        envoy.port(),
        &Request::get("/x").header("x-script-key", "ra"),
    );
    assert_eq!(r.status, 200);
    let at = arrivals(&up, "ra");
    assert!(
        at[1] - at[0] >= Duration::from_millis(950),
        "waited {:?}",
        at[1] - at[0]
    );
}

#[test]
fn the_deadline_caps_an_always_failing_upstream() {
    let (up, envoy) = start(retry(
        serde_json::json!({ "max_retries": 10, "base_delay": "150ms", "jitter": "none", "deadline": "1s" }),
    ));
    up.set_default(Some(Reply::status(503)));
    let started = Instant::now();
    let r = send(envoy.port(), &Request::get("/down"));
    let took = started.elapsed();
    assert_eq!(r.status, 503);
    assert!(
        took < Duration::from_millis(1_600),
        "bounded by the deadline: {took:?}"
    );
    let attempts: usize = r.header("x-levee-attempts").unwrap().parse().unwrap();
    assert!(
        (2..=5).contains(&attempts),
        "150/300/600 ms waits fit ~3 retries in 1 s: {attempts}"
    );
    assert_eq!(up.count(), attempts);
}

#[test]
fn an_attempt_that_times_out_is_retried_and_reported_as_504() {
    let (up, envoy) = start(serde_json::json!({ "timeout": "300ms", "retry": {
        "max_retries": 1, "base_delay": "10ms", "deadline": "5s", "retry_on": ["timeout"] } }));
    up.set_default(Some(Reply::status(200).delay(Duration::from_millis(2_000))));
    let started = Instant::now();
    let r = send(envoy.port(), &Request::get("/slow"));
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-levee-attempts").as_deref(), Some("2"));
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_outage_under_load_keeps_retries_within_the_budget() {
    let (up, envoy) = start(retry(
        serde_json::json!({ "base_delay": "20ms", "budget": { "ratio": 0.1, "min_per_second": 1 } }),
    ));
    up.set_default(Some(Reply::status(503)));
    let started = Instant::now();
    let responses = burst(40, |_| send(envoy.port(), &Request::get("/outage")));
    let seconds = started.elapsed().as_secs_f64().ceil();
    assert!(responses.iter().all(|r| r.status == 503));
    let retries = up.count() - 40;
    let allowed = (0.1 * 40.0 + 1.0 * (seconds + 10.0)) as usize; // the window is 10 s wide
    assert!(retries <= allowed, "{retries} retries > budget {allowed}");
    assert!(
        retries < 40 * 3,
        "the budget stopped most retries: {retries}"
    );
    assert!(envoy.stat("levee_upstream.svc.budget_exhausted") > 0);
}

#[test]
fn jitter_spreads_concurrent_retries_in_time() {
    let (up, envoy) = start(retry(
        serde_json::json!({ "base_delay": "400ms", "max_delay": "400ms" }),
    ));
    for i in 0..20 {
        up.script(
            &format!("j{i}"),
            vec![Reply::status(503), Reply::status(200)],
        );
    }
    let responses = burst(20, |i| {
        send(
            envoy.port(),
            &Request::get("/j").header("x-script-key", format!("j{i}")),
        )
    });
    assert!(responses.iter().all(|r| r.status == 200));
    let mut retry_at: Vec<Instant> = (0..20)
        .map(|i| arrivals(&up, &format!("j{i}"))[1])
        .collect();
    retry_at.sort();
    let spread = *retry_at.last().unwrap() - retry_at[0];
    assert!(
        spread > Duration::from_millis(150),
        "full jitter over 0..400 ms spreads retries: {spread:?}"
    );
}

#[test]
fn every_attempt_feeds_the_breaker_and_an_open_breaker_stops_attempts() {
    let (up, envoy) = start(serde_json::json!({
        "retry": { "max_retries": 5, "base_delay": "10ms", "deadline": "5s" },
        "circuit_breaker": { "failure_threshold": 3, "reset_timeout": "30s" } }));
    up.set_default(Some(Reply::status(500)));
    let r = send(envoy.port(), &Request::get("/b"));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-levee-circuit").as_deref(), Some("open"));
    assert_eq!(
        up.count(),
        3,
        "the third failed attempt opened it; no more attempts"
    );
    let again = send(envoy.port(), &Request::get("/b"));
    assert_eq!(again.header("x-levee-circuit").as_deref(), Some("open"));
    assert_eq!(up.count(), 3);
}

#[test]
fn grpc_requests_bypass_callout_mode() {
    let (up, envoy) = start(retry(serde_json::json!({})));
    up.script("grpc", vec![Reply::status(503), Reply::status(200)]);
    let r = send(
        envoy.port(),
        &Request::post("/pkg.Service/Method", b"\0\0\0\0\0".to_vec())
            .header("x-script-key", "grpc")
            .header("content-type", "application/grpc"),
    );
    assert!(
        r.header("x-levee-attempts").is_none(),
        "went through Envoy's router: {}",
        r.status
    );
    assert_eq!(arrivals(&up, "grpc").len(), 1);
}

#[test]
fn idempotency_keys_work_in_callout_mode_too() {
    let (up, envoy) = start_with(
        retry(serde_json::json!({})),
        serde_json::json!({ "idempotency": {} }),
    );
    let req = || {
        Request::post("/pay", b"amount=7".to_vec())
            .header("idempotency-key", "co-1")
            .header("x-upstream-delay-ms", "300")
            .header("x-upstream-status", "201")
    };
    let responses = burst(8, |_| send(envoy.port(), &req()));
    assert_eq!(up.count_for("idempotency-key", "co-1"), 1);
    assert_eq!(responses.iter().filter(|r| r.status == 201).count(), 1);
    assert!(responses.iter().all(|r| r.status == 201 || r.status == 409));
    let replay = send(envoy.port(), &req());
    assert_eq!(replay.status, 201);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(up.count_for("idempotency-key", "co-1"), 1);
}

#[test]
fn callouts_drop_the_proxys_own_headers_and_keep_proxy_status() {
    let (up, envoy) = start(serde_json::json!({}));
    up.script(
        "ps",
        vec![Reply::status(200)
            .header("proxy-status", "backend; error=none")
            .header("x-kept", "1")],
    );
    let r = send(
        envoy.port(),
        &Request::get("/p")
            .header("x-script-key", "ps")
            .header("proxy-authorization", "Basic eA==")
            .header("x-end-to-end", "yes"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-levee-attempts").as_deref(),
        Some("1"),
        "a callout answered"
    );
    assert_eq!(
        r.header("proxy-status").as_deref(),
        Some("backend; error=none")
    );
    assert_eq!(r.header("x-kept").as_deref(), Some("1"));
    let got = up.requests();
    let sent = got
        .iter()
        .find(|q| q.header("x-script-key").as_deref() == Some("ps"))
        .unwrap();
    assert_eq!(
        sent.header("proxy-authorization"),
        None,
        "credentials for this proxy stay here"
    );
    assert_eq!(sent.header("x-end-to-end").as_deref(), Some("yes"));
}
