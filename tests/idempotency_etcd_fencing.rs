//! An owner that was frozen past its lock: Envoy A claims a key in etcd and forwards the
//! request, then the whole Envoy process is paused (SIGSTOP: a stalled node, a frozen
//! container), so it cannot renew its lock. After `lock_timeout` Envoy B retakes the key with
//! a higher fence and executes it. When A runs again, its renewal and its completion are
//! refused by the fencing revision: the key's record keeps B's answer, on every Envoy.
//!
//! The second execution is what `x-levee-fence` exists for: the upstream saw A's fence and
//! then B's higher one, so a backend that keeps the highest fence refuses A's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::thread;
use std::time::{Duration, Instant};

use harness::client::{send, try_send, Request, Response};
use harness::envoy::Envoy;
use harness::envoy_config::EnvoyOptions;
use harness::etcd::Etcd;
use harness::raw_envoy::h2_cluster;
use harness::upstream::Upstream;
use serde_json::json;

fn levee_envoy(etcd: &Etcd, up: &Upstream) -> Envoy {
    let config = json!({
        "backends": { "records": { "etcd": { "cluster": "etcd", "timeout": "500ms" } } },
        "idempotency": { "backend": "records", "lock_timeout": "2s", "on_backend_error": "deny" },
    });
    Envoy::start(EnvoyOptions {
        concurrency: 2,
        extra_clusters: vec![h2_cluster("etcd", &etcd.client_ports(), true)],
        ..EnvoyOptions::levee(&config.to_string(), up.port())
    })
}

fn keyed(key: &str) -> Request {
    Request::post("/pay", "amount=10")
        .header("idempotency-key", key)
        .timeout(Duration::from_secs(30))
}

/// Sends `req` until it is answered something else than 409, within `within`.
fn settled(port: u16, req: &Request, within: Duration) -> Response {
    let start = Instant::now();
    loop {
        let r = send(port, req);
        if r.status != 409 || start.elapsed() > within {
            return r;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The fences the upstream saw with key `key`, in arrival order.
fn fences(up: &Upstream, key: &str) -> Vec<i64> {
    up.requests()
        .into_iter()
        .filter(|r| r.header("idempotency-key").as_deref() == Some(key))
        .filter_map(|r| r.header("x-levee-fence")?.parse().ok())
        .collect()
}

#[test]
fn an_owner_frozen_past_its_lock_is_fenced_out_and_the_record_keeps_its_successors_answer() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let (envoy_a, envoy_b) = (levee_envoy(&etcd, &up), levee_envoy(&etcd, &up));
    for (name, e) in [("A", &envoy_a), ("B", &envoy_b)] {
        let r = settled(
            e.port(),
            &keyed(&format!("warm-{name}")),
            Duration::from_secs(15),
        );
        assert_eq!(r.status, 200, "{name} never served: {}", r.text());
    }

    // A claims the key and forwards it; the upstream answers after 1 s. A is frozen meanwhile.
    let port_a = envoy_a.port();
    let first = keyed("frozen").header("x-upstream-delay-ms", "1000");
    let before = up.count();
    let client_a = thread::spawn(move || try_send(port_a, &first));
    assert!(up.wait_for_count(before + 1, Duration::from_secs(10)));
    let fenced_before = envoy_a.stat("levee_backend.records.renewals_fenced")
        + envoy_a.stat("levee_backend.records.completions_fenced");
    assert_eq!(fenced_before, 0);
    envoy_a.pause();

    // A renews nothing while frozen: after lock_timeout (2 s) B retakes the key and executes.
    let start = Instant::now();
    let retaken = loop {
        let r = send(envoy_b.port(), &keyed("frozen"));
        if r.status != 409 {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never retaken");
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(retaken.status, 200, "{}", retaken.text());
    assert!(retaken.header("idempotent-replayed").is_none());
    let seen = fences(&up, "frozen");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1] > seen[0], "B's fence {seen:?}");

    // A runs again: its client gets A's answer, but A's renewal and completion are refused.
    envoy_a.resume();
    let answer_a = client_a.join().expect("client thread").expect("A answers");
    assert_eq!(answer_a.status, 200, "{}", answer_a.text());
    assert_ne!(answer_a.body, retaken.body, "two executions, two answers");
    let deadline = Instant::now() + Duration::from_secs(10);
    let fenced = loop {
        let n = envoy_a.stat("levee_backend.records.renewals_fenced")
            + envoy_a.stat("levee_backend.records.completions_fenced");
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(fenced >= 1, "A's late writes were not refused by the fence");
    eprintln!(
        "frozen owner: retaken by B {:?} after A was paused; fences {seen:?}; \
         A's renewals fenced {}, completions fenced {}",
        start.elapsed(),
        envoy_a.stat("levee_backend.records.renewals_fenced"),
        envoy_a.stat("levee_backend.records.completions_fenced")
    );

    // The record is B's: both Envoys replay B's answer byte for byte.
    for (name, e) in [("A", &envoy_a), ("B", &envoy_b)] {
        let r = settled(e.port(), &keyed("frozen"), Duration::from_secs(5));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(r.body, retaken.body, "{name} replays B's answer");
    }
    assert_eq!(up.count_for("idempotency-key", "frozen"), 2);
}
