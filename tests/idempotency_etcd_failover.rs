//! Mesh-wide idempotency keys when something dies: a three-member etcd loses its leader in the
//! middle of a storm of distinct keyed POSTs spread over two Envoys, and an Envoy is killed
//! (SIGKILL, as an evicted pod) while it holds a key's lock. Both run the real levee.wasm in
//! real Envoys (two workers each); the upstream counts executions per key.
//!
//! What must hold: no key executes twice; every key a client saw executed is replayed byte for
//! byte by every Envoy afterwards; a lock whose owner died is refused (`409`) until
//! `lock_timeout` and then retaken with a higher fence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use harness::client::{send, try_send, Response};
use harness::envoy::Envoy;
use harness::etcd::Etcd;
use harness::idempotency_etcd::{self, etcd_cluster, records};
use harness::keyed::{assert_all_served, fence_of, keyed, settled};
use harness::upstream::Upstream;
use serde_json::{json, Value};

fn config(lock_timeout: &str) -> Value {
    records(json!({ "lock_timeout": lock_timeout, "fingerprint": true,
        "on_backend_error": "deny" }))
}

/// The etcd cluster as the docs ship it: every member an endpoint, HTTP/2, a TCP health check
/// every 0.5 s also while idle (`no_traffic_interval`), and outlier detection that ejects a
/// member after two failed calls in a row (at most one of the three). Measured with the leader
/// killed mid-storm: 503s for about 1.5 s with the health check, the outlier detection or both;
/// without either, a third of the calls keep going to the dead member and 503s go on.
fn outlier_cluster(etcd: &Etcd) -> Value {
    let mut cluster = etcd_cluster(etcd);
    cluster["outlier_detection"] = json!({
        "consecutive_5xx": 2,
        "consecutive_gateway_failure": 2,
        "interval": "0.5s",
        "base_ejection_time": "5s",
        "max_ejection_percent": 34,
    });
    cluster
}

/// An Envoy with levee (two workers) whose records live in `etcd`.
fn levee_envoy(etcd: &Etcd, up: &Upstream, config: &Value) -> Envoy {
    idempotency_etcd::levee_envoy(outlier_cluster(etcd), up, config)
}

/// One attempt of the storm: when it was answered, and how (`0`: no HTTP answer).
struct Attempt {
    at: Instant,
    status: u16,
}

/// A storm key's fate: its attempts, and the 2xx answer its client got, if any.
struct KeyFate {
    attempts: Vec<Attempt>,
    executed: Option<Response>,
}

/// Sends `key` to Envoy `first`, and on anything but a 2xx to the other Envoy, alternating,
/// up to `tries` times with a short pause: what a client with a retry policy does.
fn send_with_retries(ports: [u16; 2], first: usize, key: &str, tries: usize) -> KeyFate {
    let mut fate = KeyFate {
        attempts: Vec::new(),
        executed: None,
    };
    for n in 0..tries {
        let port = ports[(first + n) % 2];
        let answer = try_send(port, &keyed(key, key)).ok();
        let status = answer.as_ref().map_or(0, |r| r.status);
        fate.attempts.push(Attempt {
            at: Instant::now(),
            status,
        });
        if (200..300).contains(&status) {
            fate.executed = answer;
            return fate;
        }
        thread::sleep(Duration::from_millis(150));
    }
    fate
}

#[test]
fn the_etcd_leader_killed_mid_storm_loses_no_record_and_executes_no_key_twice() {
    let mut etcd = Etcd::cluster(3);
    let up = Upstream::start();
    let cfg = config("30s");
    let envoys = [levee_envoy(&etcd, &up, &cfg), levee_envoy(&etcd, &up, &cfg)];
    assert_all_served(&[&envoys[0], &envoys[1]], "warm", Duration::from_secs(15));
    let ports = [envoys[0].port(), envoys[1].port()];

    // Six clients send distinct keys over both Envoys; the leader dies about 1.5 s in.
    const CLIENTS: usize = 6;
    let stop = AtomicBool::new(false);
    let fates: Mutex<HashMap<String, KeyFate>> = Mutex::new(HashMap::new());
    let (killed_at, leader) = thread::scope(|s| {
        for c in 0..CLIENTS {
            let (stop, fates) = (&stop, &fates);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("storm-{c}-{n}");
                    let fate = send_with_retries(ports, (c + n) % 2, &key, 8);
                    fates.lock().unwrap().insert(key, fate);
                    n += 1;
                }
            });
        }
        thread::sleep(Duration::from_millis(1500));
        let leader = etcd.wait_for_leader(Duration::from_secs(5));
        etcd.kill(leader);
        let killed_at = Instant::now();
        thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::SeqCst);
        (killed_at, leader)
    });
    let new_leader = etcd.wait_for_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    let fates = fates.into_inner().unwrap();

    // What the election cost the clients.
    let served: Vec<(&String, &Response)> = fates
        .iter()
        .filter_map(|(k, f)| Some((k, f.executed.as_ref()?)))
        .collect();
    let attempts: Vec<&Attempt> = fates.values().flat_map(|f| &f.attempts).collect();
    let count = |status: u16| attempts.iter().filter(|a| a.status == status).count();
    let gave_up = fates.len() - served.len();
    let last_503 = attempts
        .iter()
        .filter(|a| a.status == 503 && a.at > killed_at)
        .map(|a| a.at - killed_at)
        .max();
    let retried = fates.values().filter(|f| f.attempts.len() > 1).count();
    eprintln!(
        "leader killed mid-storm: {} keys, {} answered 2xx, {} retried, {} gave up after 8 tries; \
         attempts: {} in all, {} x 503, {} x 409, {} without an answer; \
         last 503 {:?} after the kill",
        fates.len(),
        served.len(),
        retried,
        gave_up,
        attempts.len(),
        count(503),
        count(409),
        count(0),
        last_503
    );
    eprintln!("after the kill, per 250 ms: [2xx 503 409 other]");
    for b in 0..24u32 {
        let (from, to) = (
            Duration::from_millis(250) * b,
            Duration::from_millis(250) * (b + 1),
        );
        let in_bucket: Vec<u16> = attempts
            .iter()
            .filter(|a| a.at > killed_at && a.at - killed_at >= from && a.at - killed_at < to)
            .map(|a| a.status)
            .collect();
        let n = |f: &dyn Fn(u16) -> bool| in_bucket.iter().filter(|s| f(**s)).count();
        eprintln!(
            "  {from:?}: {} {} {} {}",
            n(&|s| (200..300).contains(&s)),
            n(&|s| s == 503),
            n(&|s| s == 409),
            n(&|s| !(200..300).contains(&s) && s != 503 && s != 409)
        );
    }
    // Per key, from the upstream's log: no key executed twice.
    let mut executions: HashMap<String, usize> = HashMap::new();
    for r in up.requests() {
        if let Some(key) = r.header("idempotency-key") {
            *executions.entry(key).or_default() += 1;
        }
    }
    let twice: Vec<(&String, &usize)> = executions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "keys executed more than once: {twice:?}");

    // Every key whose client got a 2xx executed once and is replayed by both Envoys.
    for (key, answer) in &served {
        assert_eq!(executions.get(*key), Some(&1), "{key} answered 2xx");
        for (i, port) in ports.iter().enumerate() {
            let r = settled(*port, &keyed(key, key), Duration::from_secs(15));
            assert_eq!(r.status, answer.status, "{key} on envoy {i}: {}", r.text());
            assert_eq!(
                r.header("idempotent-replayed").as_deref(),
                Some("true"),
                "{key} on envoy {i}"
            );
            assert_eq!(
                r.body, answer.body,
                "{key} replayed byte for byte by envoy {i}"
            );
        }
    }
    assert_eq!(
        executions
            .keys()
            .filter(|k| k.starts_with("storm-"))
            .count(),
        served.len(),
        "an execution whose client never saw a 2xx"
    );

    assert!(served.len() >= 50, "the storm served {} keys", served.len());
    // The election costs about one election timeout plus the backend breaker's second.
    assert!(
        last_503.is_none_or(|t| t < Duration::from_secs(4)),
        "503s until {last_503:?} after the kill"
    );
    // Service came back after the election: keys sent in the last second all got a 2xx.
    let late_failures = fates
        .values()
        .filter(|f| f.attempts[0].at > killed_at + Duration::from_secs(4))
        .filter(|f| f.executed.is_none())
        .count();
    assert_eq!(late_failures, 0, "keys still failing 4 s after the kill");
}

#[test]
fn a_lock_held_by_a_killed_envoy_is_refused_until_lock_timeout_then_retaken_with_a_higher_fence() {
    let etcd = Etcd::single();
    let up = Upstream::start();
    let cfg = config("2s");
    let mut envoy_a = levee_envoy(&etcd, &up, &cfg);
    let envoy_b = levee_envoy(&etcd, &up, &cfg);
    assert_all_served(&[&envoy_a, &envoy_b], "warm", Duration::from_secs(15));

    // Envoy A claims the key and forwards it to an upstream that stalls; A dies with the lock.
    let before = up.count();
    let port_a = envoy_a.port();
    let stalled = keyed("held", "amount=10")
        .header("x-upstream-delay-ms", "20000")
        .timeout(Duration::from_secs(30));
    let client_a = thread::spawn(move || try_send(port_a, &stalled));
    assert!(up.wait_for_count(before + 1, Duration::from_secs(10)));
    let forwarded_at = Instant::now();
    envoy_a.kill();
    let fence_a = fence_of(&up, "held", 0);
    let a_answer = client_a.join().expect("client thread");
    assert!(
        a_answer.as_ref().map_or(true, |r| r.status >= 500),
        "A's client got an answer from a killed Envoy: {:?}",
        a_answer.map(|r| r.status)
    );

    // The same key on Envoy B: 409 with Retry-After while A's lock lasts, then executed.
    let mut refused = 0;
    let retaken = loop {
        let r = send(envoy_b.port(), &keyed("held", "amount=10"));
        if r.status != 409 {
            break r;
        }
        assert!(r.header("retry-after").is_some(), "409 without Retry-After");
        refused += 1;
        assert!(
            forwarded_at.elapsed() < Duration::from_secs(10),
            "still refused 10 s after A died"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let retaken_after = forwarded_at.elapsed();
    assert_eq!(retaken.status, 200, "{}", retaken.text());
    assert!(retaken.header("idempotent-replayed").is_none(), "executed");
    assert!(refused > 0, "B took the key before A's lock expired");
    assert!(
        retaken_after >= Duration::from_millis(1800),
        "retaken {retaken_after:?} after A claimed it, lock_timeout is 2 s"
    );
    assert_eq!(up.count_for("idempotency-key", "held"), 2);
    let fence_b = fence_of(&up, "held", 1);
    assert!(
        fence_b > fence_a,
        "B's fence {fence_b} not above A's {fence_a}"
    );
    eprintln!(
        "killed owner: {refused} x 409 on B, retaken {retaken_after:?} after A forwarded it; \
         fences {fence_a} -> {fence_b}"
    );

    // B's answer is the key's record: replayed by B and by a fresh Envoy (A's replacement).
    let envoy_c = levee_envoy(&etcd, &up, &cfg);
    for (name, port) in [("B", envoy_b.port()), ("C", envoy_c.port())] {
        let r = settled(port, &keyed("held", "amount=10"), Duration::from_secs(5));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(
            r.body, retaken.body,
            "{name} replays B's answer byte for byte"
        );
    }
    assert_eq!(up.count_for("idempotency-key", "held"), 2);
}
