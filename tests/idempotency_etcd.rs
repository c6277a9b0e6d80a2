//! Mesh-wide idempotency keys end to end: one etcd member, two Envoy processes (two workers
//! each) with levee keeping its records in that etcd, one upstream behind both. A key executes
//! once across both Envoys, is replayed byte for byte by the other one, is bound to its body
//! everywhere, and an etcd outage refuses keyed requests without forwarding them until etcd is
//! back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::client::{send, Request, Response};
use harness::envoy::Envoy;
use harness::envoy_config::EnvoyOptions;
use harness::etcd::Etcd;
use harness::raw_envoy::h2_cluster;
use harness::upstream::Upstream;
use serde_json::json;

fn config() -> String {
    json!({
        "backends": { "records": { "etcd": { "cluster": "etcd", "timeout": "500ms" } } },
        "idempotency": { "backend": "records", "lock_timeout": "5s", "fingerprint": true },
    })
    .to_string()
}

fn levee_envoy(etcd: &Etcd, up: &Upstream) -> Envoy {
    Envoy::start(EnvoyOptions {
        concurrency: 2,
        extra_clusters: vec![h2_cluster("etcd", &etcd.client_ports(), true)],
        ..EnvoyOptions::levee(&config(), up.port())
    })
}

fn keyed(key: &str, body: &str) -> Request {
    Request::post("/pay", body.to_string())
        .header("idempotency-key", key)
        .timeout(Duration::from_secs(5))
}

/// Sends keyed POSTs with fresh keys until one is served (the etcd cluster's first health
/// check has passed), within `within`.
fn until_served(envoy: &Envoy, tag: &str, within: Duration) -> Response {
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let r = send(envoy.port(), &keyed(&format!("{tag}-{n}"), "x"));
        if r.status == 200 || start.elapsed() > within {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_key_executes_once_across_two_envoys_replays_everywhere_and_an_etcd_outage_denies() {
    let mut etcd = Etcd::single();
    let up = Upstream::start();
    let envoys = [levee_envoy(&etcd, &up), levee_envoy(&etcd, &up)];
    for (i, e) in envoys.iter().enumerate() {
        let r = until_served(e, &format!("warm{i}"), Duration::from_secs(10));
        assert_eq!(r.status, 200, "envoy {i} never served: {}", r.text());
    }

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
    let seen = up
        .requests()
        .into_iter()
        .find(|r| r.header("idempotency-key").as_deref() == Some("pay-1"))
        .expect("the execution");
    let fence: i64 = seen
        .header("x-levee-fence")
        .expect("the fence is forwarded")
        .parse()
        .expect("a revision");
    assert!(fence > 0);

    // Later, both Envoys replay it byte for byte (the completion is written in the background).
    for (i, e) in envoys.iter().enumerate() {
        let start = Instant::now();
        let r = loop {
            let r = send(e.port(), &keyed("pay-1", "amount=10"));
            if r.status != 409 || start.elapsed() > Duration::from_secs(3) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
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
