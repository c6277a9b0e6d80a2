//! Mesh-wide idempotency keys beyond Envoy's router, end to end: one etcd member, two Envoy
//! processes (two workers each) keeping their records in it. A callout-mode upstream executes
//! a key once across both Envoys with the fence on every attempt; a lock held by a slow request
//! is renewed, so a retry on the other Envoy gets `409` instead of a second execution; the
//! secondary cluster's answer completes the record. Switching `backend` changes only the scope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::callout_upstream;
use harness::client::{send, Request, Response};
use harness::envoy::Envoy;
use harness::etcd::Etcd;
use harness::idempotency_etcd::{etcd_cluster, etcd_options};
use harness::keyed::{self, assert_all_served, fences, keyed_since};
use harness::upstream::{Reply, Upstream};
use serde_json::{json, Value};

/// Records in etcd, with `lock_timeout`.
fn records(lock_timeout: &str) -> Value {
    harness::idempotency_etcd::records(json!({ "lock_timeout": lock_timeout, "fingerprint": true }))
}

/// Two Envoys (two workers each) with `config`, the etcd cluster, and `secondary` if any.
fn two_envoys(
    etcd: &Etcd,
    up: &Upstream,
    config: &Value,
    secondary: Option<&Upstream>,
) -> [Envoy; 2] {
    let start = || {
        let mut o = etcd_options(etcd_cluster(etcd), up, config);
        o.route_timeout = Duration::from_secs(20);
        if let Some(s) = secondary {
            o.clusters.push(("secondary".into(), s.port()));
        }
        Envoy::start(o)
    };
    let envoys = [start(), start()];
    assert_all_served(&[&envoys[0], &envoys[1]], "warm", Duration::from_secs(15));
    envoys
}

fn keyed(key: &str, body: &str) -> Request {
    keyed::keyed(key, body).timeout(Duration::from_secs(15))
}

/// Retries `req` while it is answered `409` (a completion still being written), up to 5 s.
fn settled(port: u16, req: &Request) -> Response {
    keyed::settled(port, req, Duration::from_secs(5))
}

/// Waits until the upstream has seen `n` requests with key `key` (so the key is claimed).
fn wait_seen(up: &Upstream, key: &str, n: usize) {
    let start = Instant::now();
    while fences(up, key).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{key} never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn callout_mode_executes_a_key_once_across_two_envoys_with_the_fence_on_every_attempt() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let svc = json!({ "timeout": "5s", "retry": { "max_retries": 2, "base_delay": "50ms",
        "max_delay": "50ms", "retry_on": ["5xx"], "non_idempotent": "with_key" } });
    let config = callout_upstream(&svc, &records("10s"));
    let envoys = two_envoys(&etcd, &up, &config, None);
    let (port0, port1) = (envoys[0].port(), envoys[1].port());

    // The first attempt fails, the retry is slow; meanwhile the other Envoy refuses the key.
    up.script(
        "pay-1",
        vec![
            Reply::status(503),
            Reply::status(201)
                .body("paid-1")
                .delay(Duration::from_millis(1500)),
        ],
    );
    let first = std::thread::spawn(move || {
        send(
            port0,
            &keyed("pay-1", "amount=10").header("x-script-key", "pay-1"),
        )
    });
    wait_seen(&up, "pay-1", 2);
    let during = send(
        port1,
        &keyed("pay-1", "amount=10").header("x-script-key", "pay-1"),
    );
    assert_eq!(during.status, 409, "{}", during.text());
    assert!(during.header("retry-after").is_some());
    let first = first.join().expect("client thread");
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.body, b"paid-1");

    let seen = fences(&up, "pay-1");
    assert_eq!(seen.len(), 2, "two attempts, no second execution: {seen:?}");
    let fence: i64 = seen[0]
        .as_deref()
        .expect("fenced")
        .parse()
        .expect("a revision");
    assert!(fence > 0);
    assert_eq!(seen[1], seen[0], "every attempt carries the claim's fence");

    // Later, both Envoys replay it byte for byte; another body is 422.
    for (i, port) in [port0, port1].into_iter().enumerate() {
        let r = settled(port, &keyed("pay-1", "amount=10"));
        assert_eq!(r.status, 201, "envoy {i}: {}", r.text());
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(r.body, b"paid-1", "envoy {i} replays byte for byte");
        let r = send(port, &keyed("pay-1", "amount=99"));
        assert_eq!(r.status, 422, "envoy {i}: {}", r.text());
    }
    assert_eq!(fences(&up, "pay-1").len(), 2);

    // Every attempt failed before acting: the key is released, the other Envoy executes it.
    up.script("pay-2", vec![Reply::status(503); 3]);
    let r = send(port0, &keyed("pay-2", "a").header("x-script-key", "pay-2"));
    assert_eq!(r.status, 503, "{}", r.text());
    let r = settled(port1, &keyed("pay-2", "a"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("idempotent-replayed").is_none(), "executed again");
    assert_eq!(fences(&up, "pay-2").len(), 4);
}

#[test]
fn a_slow_request_keeps_its_lock_by_renewing_it_so_the_other_envoy_refuses_the_retry() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let config = records("2s");
    let envoys = two_envoys(&etcd, &up, &config, None);
    let (port0, port1) = (envoys[0].port(), envoys[1].port());

    // The upstream stalls 5 s, well past the 2 s lock: the lock is renewed meanwhile.
    let slow = keyed("slow", "a").header("x-upstream-delay-ms", "5000");
    let first = std::thread::spawn(move || send(port0, &slow));
    wait_seen(&up, "slow", 1);
    let start = Instant::now();
    for at in [2_300, 3_800] {
        std::thread::sleep(Duration::from_millis(at).saturating_sub(start.elapsed()));
        let retry = send(port1, &keyed("slow", "a"));
        assert_eq!(retry.status, 409, "at ~{at} ms: {}", retry.text());
        assert!(retry.header("retry-after").is_some());
    }
    assert_eq!(
        up.count_for("idempotency-key", "slow"),
        1,
        "not executed twice"
    );
    let first = first.join().expect("client thread");
    assert_eq!(first.status, 200, "{}", first.text());

    // Then both Envoys replay the slow request's answer.
    for (i, port) in [port0, port1].into_iter().enumerate() {
        let r = settled(port, &keyed("slow", "a"));
        assert_eq!(r.status, 200, "envoy {i}: {}", r.text());
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(r.body, first.body, "envoy {i}");
    }
    assert_eq!(up.count_for("idempotency-key", "slow"), 1);
    let renewals_fenced: u64 = envoys
        .iter()
        .map(|e| e.stat("levee_backend.records.renewals_fenced"))
        .sum();
    assert_eq!(renewals_fenced, 0);
}

#[test]
fn the_secondary_clusters_answer_completes_the_record_and_the_other_envoy_replays_it() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let secondary = Upstream::start();
    let svc = json!({ "timeout": "5s", "retry": { "max_retries": 0 },
        "fallback": [{ "cluster": "secondary" }] });
    let config = callout_upstream(&svc, &records("10s"));
    let envoys = two_envoys(&etcd, &up, &config, Some(&secondary));
    let (port0, port1) = (envoys[0].port(), envoys[1].port());

    up.script("sec-1", vec![Reply::status(503)]);
    let r = send(
        port0,
        &keyed("sec-1", "amount=5").header("x-script-key", "sec-1"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-levee-fallback").as_deref(), Some("secondary"));
    let served = r.body.clone();
    let at_secondary: Vec<_> = secondary
        .requests()
        .into_iter()
        .filter(|q| q.header("idempotency-key").as_deref() == Some("sec-1"))
        .collect();
    assert_eq!(at_secondary.len(), 1);
    assert_eq!(
        at_secondary[0].header("x-levee-fence"),
        fences(&up, "sec-1")[0],
        "the secondary sees the claim's fence"
    );

    // The other Envoy replays what the client got from the secondary; nothing runs again.
    let r = settled(
        port1,
        &keyed("sec-1", "amount=5").header("x-script-key", "sec-1"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(r.body, served, "byte for byte");
    assert_eq!(fences(&up, "sec-1").len(), 1);
    assert_eq!(secondary.count_for("idempotency-key", "sec-1"), 1);
}

#[test]
fn a_queued_request_keeps_its_key_on_both_envoys_and_its_delivery_is_replayed_everywhere() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let svc = json!({ "timeout": "1s",
        "retry": { "max_retries": 0, "base_delay": "100ms", "max_delay": "300ms" },
        "circuit_breaker": { "failure_threshold": 3, "reset_timeout": "1s" },
        "fallback": [{ "queue": { "max_items": 10, "max_bytes": 1048576 }, "methods": ["POST"] }] });
    let config = callout_upstream(&svc, &records("2s"));
    let envoys = two_envoys(&etcd, &up, &config, None);
    let (port0, port1) = (envoys[0].port(), envoys[1].port());
    up.set_default(Some(Reply::status(503)));

    let queued = send(port0, &keyed("order-1", "sku=1"));
    assert_eq!(queued.status, 202, "{}", queued.text());
    assert_eq!(queued.header("x-levee-fallback").as_deref(), Some("queued"));
    // Past the 2 s lock, the queued copy still holds the key: the other Envoy refuses a retry.
    std::thread::sleep(Duration::from_millis(3_000));
    let retry = send(port1, &keyed("order-1", "sku=1"));
    assert_eq!(retry.status, 409, "{}", retry.text());

    let recovered_at = Instant::now();
    up.set_default(None);
    let delivered = envoys[0].wait_for_stat(
        "levee_fallback.svc.queue_delivered",
        1,
        Duration::from_secs(20),
    );
    assert_eq!(delivered, 1);
    let seen = fences(&up, "order-1");
    let after = keyed_since(&up, "order-1", recovered_at);
    assert_eq!(after.len(), 1, "delivered once after recovery");
    assert_eq!(
        after[0].header("x-levee-fence"),
        seen[0],
        "the delivery carries the fence"
    );

    // The delivered answer, not the 202, is what both Envoys replay.
    let first = settled(port1, &keyed("order-1", "sku=1"));
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed").as_deref(), Some("true"));
    let again = settled(port0, &keyed("order-1", "sku=1"));
    assert_eq!(again.body, first.body, "byte for byte on both Envoys");
    let executed_after = keyed_since(&up, "order-1", recovered_at).len();
    assert_eq!(executed_after, 1);
}
