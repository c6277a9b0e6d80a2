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

use harness::client::{send, try_send, Request};
use harness::etcd::Etcd;
use harness::idempotency_etcd::{etcd_cluster, levee_envoy, records};
use harness::keyed::{self, settled};
use harness::upstream::Upstream;
use serde_json::json;

fn keyed(key: &str) -> Request {
    keyed::keyed(key, "amount=10").timeout(Duration::from_secs(30))
}

/// The fences the upstream saw with key `key`, in arrival order.
fn fences(up: &Upstream, key: &str) -> Vec<i64> {
    keyed::fences(up, key)
        .into_iter()
        .filter_map(|f| f?.parse().ok())
        .collect()
}

#[test]
fn an_owner_frozen_past_its_lock_is_fenced_out_and_the_record_keeps_its_successors_answer() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let config = records(json!({ "lock_timeout": "2s", "on_backend_error": "deny" }));
    let start = || levee_envoy(etcd_cluster(&etcd), &up, &config);
    let (envoy_a, envoy_b) = (start(), start());
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
