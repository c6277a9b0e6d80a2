//! Mesh-wide idempotency keys end to end: one etcd member, two Envoy processes (two workers
//! each) with levee keeping its records in that etcd, one upstream behind both. A key executes
//! once across both Envoys, is replayed byte for byte by the other one, is bound to its body
//! everywhere, and an etcd outage refuses keyed requests without forwarding them until etcd is
//! back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use harness::client::{send, Request, Response};
use harness::envoy::Envoy;
use harness::etcd::Etcd;
use harness::idempotency_etcd::{etcd_cluster, levee_envoy as start_envoy, records};
use harness::keyed::{assert_all_served, fence_of, keyed, settled, until_served};
use harness::upstream::Upstream;
use serde_json::{json, Value};

fn config(lock_timeout: &str, on_backend_error: &str) -> Value {
    records(json!({ "lock_timeout": lock_timeout, "fingerprint": true,
        "on_backend_error": on_backend_error }))
}

fn levee_envoy(etcd: &Etcd, up: &Upstream, config: &Value) -> Envoy {
    start_envoy(etcd_cluster(etcd), up, config)
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_key_executes_once_across_two_envoys_replays_everywhere_and_an_etcd_outage_denies() {
    let mut etcd = Etcd::single();
    let up = Upstream::start();
    let cfg = config("5s", "deny");
    let envoys = [levee_envoy(&etcd, &up, &cfg), levee_envoy(&etcd, &up, &cfg)];
    assert_all_served(&[&envoys[0], &envoys[1]], "warm", Duration::from_secs(10));

    // 16 concurrent same-key POSTs over both Envoys: one execution, the rest 409 or replays.
    let slow = || keyed("pay-1", "amount=10").header("x-upstream-delay-ms", "300");
    let answers: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let port = envoys[i % 2].port();
                let req = slow();
                s.spawn(move || send(port, &req))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(up.count_for("idempotency-key", "pay-1"), 1, "executed once");
    let executed: Vec<&Response> = answers.iter().filter(|r| r.status == 200).collect();
    assert!(!executed.is_empty());
    for r in &answers {
        assert!(
            r.status == 200 || r.status == 409,
            "{} {}",
            r.status,
            r.text()
        );
    }
    let original = executed
        .iter()
        .find(|r| r.header("idempotent-replayed").is_none())
        .expect("the execution's own answer")
        .body
        .clone();
    assert!(fence_of(&up, "pay-1", 0) > 0);

    // Later, both Envoys replay it byte for byte (the completion is written in the background).
    for (i, e) in envoys.iter().enumerate() {
        let r = settled(
            e.port(),
            &keyed("pay-1", "amount=10"),
            Duration::from_secs(3),
        );
        assert_eq!(r.status, 200, "envoy {i}: {}", r.text());
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(r.body, original, "envoy {i} replays byte for byte");
        // Another body under the same key: 422 on both.
        let r = send(e.port(), &keyed("pay-1", "amount=99"));
        assert_eq!(r.status, 422, "envoy {i}: {}", r.text());
    }
    assert_eq!(up.count_for("idempotency-key", "pay-1"), 1);

    // What a keyed POST costs over an unkeyed one (claim + background completion).
    let port = envoys[0].port();
    let (mut keyed_t, mut plain_t) = (Vec::new(), Vec::new());
    for n in 0..30 {
        plain_t.push(send(port, &Request::post("/pay", "x")).elapsed);
        let r = send(port, &keyed(&format!("lat-{n}"), "x"));
        assert_eq!(r.status, 200);
        keyed_t.push(r.elapsed);
    }
    let (k, p) = (median(keyed_t), median(plain_t));
    eprintln!(
        "keyed POST median {k:?}, unkeyed {p:?}: {:?} added",
        k.saturating_sub(p)
    );

    // etcd down: 503 + Retry-After, nothing forwarded.
    etcd.kill(0);
    for (i, e) in envoys.iter().enumerate() {
        let key = format!("down-{i}");
        let r = send(e.port(), &keyed(&key, "x"));
        assert_eq!(r.status, 503, "envoy {i}: {}", r.text());
        assert!(r.header("retry-after").is_some());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(up.count_for("idempotency-key", &key), 0);
    }

    // etcd back: normal service without restarting Envoy.
    etcd.restart(0);
    for (i, e) in envoys.iter().enumerate() {
        let r = until_served(e, &format!("back{i}"), Duration::from_secs(15));
        assert_eq!(
            r.status,
            200,
            "envoy {i} after etcd came back: {}",
            r.text()
        );
    }
}

#[test]
fn an_expired_lock_is_retaken_with_a_higher_fence_and_allow_forwards_when_etcd_is_down() {
    let mut etcd = Etcd::single();
    let up = Upstream::start();
    let cfg = config("1s", "allow");
    let envoys = [levee_envoy(&etcd, &up, &cfg), levee_envoy(&etcd, &up, &cfg)];
    assert_all_served(&[&envoys[0], &envoys[1]], "warm", Duration::from_secs(10));

    // Envoy 0 is paused while its request runs, so its 1 s lock is not renewed and expires; a
    // retry on Envoy 1 retakes the key.
    let (port0, port1) = (envoys[0].port(), envoys[1].port());
    let slow = keyed("slow", "a").header("x-upstream-delay-ms", "2500");
    let first = std::thread::spawn(move || send(port0, &slow));
    std::thread::sleep(Duration::from_millis(300));
    signal(envoys[0].pid(), "-STOP");
    std::thread::sleep(Duration::from_millis(1500));
    let retry = send(port1, &keyed("slow", "a"));
    signal(envoys[0].pid(), "-CONT");
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert!(retry.header("idempotent-replayed").is_none(), "executed");
    assert_eq!(up.count_for("idempotency-key", "slow"), 2);
    assert!(
        fence_of(&up, "slow", 1) > fence_of(&up, "slow", 0),
        "the retaken key carries a higher fence"
    );
    let first = first.join().expect("client thread");
    assert_eq!(first.status, 200);
    // The old owner's late completion is refused: the record keeps the retry's answer.
    std::thread::sleep(Duration::from_millis(300));
    let r = settled(port0, &keyed("slow", "a"), Duration::from_secs(3));
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(r.body, retry.body, "the newest owner's answer is kept");
    assert_eq!(
        envoys[0].stat("levee_backend.records.completions_fenced"),
        1
    );

    // etcd down with allow: forwarded without a record (and without a fence).
    etcd.kill(0);
    let r = send(port0, &keyed("unprotected", "a"));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.header("idempotency-key").as_deref() == Some("unprotected"))
        .collect();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("x-levee-fence").is_none());
}
