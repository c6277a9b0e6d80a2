//! Mesh-wide rate limits in real Envoys: one Redis, the rate limit service peer, two Envoy
//! processes (`--concurrency 2` each) running levee with an HTTP/2 cluster to the peer.
//!
//! `exact` admits exactly the limit mesh-wide under a concurrent burst; `reserve` never admits
//! more, stays within its under-admission bound and calls the service about once per batch;
//! a failing service is decided by `on_backend_error`, and once the backend's breaker is open a
//! request no longer waits for the timeout. Windows are 1 h, so no test straddles a reset.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::envoy_config::default_wasm_path;
use harness::raw_envoy::*;
use harness::redis::Redis;
use harness::rls::{rule, unique, RlsPeer};
use harness::{send, Request};
use serde_json::json;
use std::thread;
use std::time::{Duration, Instant};

/// The peer, knowing the `levee` domain (levee's descriptors carry their own limits).
fn peer(redis: &Redis) -> RlsPeer {
    RlsPeer::start(
        redis,
        &[rule("levee", &[("levee_limit", Some("unused"))], 1, "HOUR")],
    )
}

/// An Envoy running levee with one limit `api` keyed on `x-key`, `limit` per hour, kept
/// mesh-wide by the peer in `mode` with `on_error`; answers 200 itself. Calls may take 2 s:
/// the peer shares this machine's cores with the test, and a slow answer is not what these
/// tests are about (see [`levee_envoy_with_timeout`]).
fn levee_envoy(peer_port: u16, limit: u32, mode: &str, on_error: &str) -> RawEnvoy {
    levee_envoy_with_timeout(peer_port, limit, mode, on_error, "2s")
}

fn levee_envoy_with_timeout(
    peer_port: u16,
    limit: u32,
    mode: &str,
    on_error: &str,
    timeout: &str,
) -> RawEnvoy {
    let plugin = json!({
        "backends": { "limits": { "rls": { "cluster": "ratelimit", "domain": "levee", "timeout": timeout } } },
        "rate_limits": [{ "name": "api", "key": ["header:x-key"], "algorithm": "fixed_window",
            "limit": limit, "window": "1h",
            "global": { "backend": "limits", "mode": mode, "on_backend_error": on_error } }]
    });
    let wasm = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "levee",
                "vm_config": {
                    "vm_id": "levee",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": default_wasm_path() } },
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin.to_string(),
                },
                "allow_on_headers_stop_iteration": true,
            },
        },
    });
    let direct = json!({ "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": { "inline_string": "ok" } } });
    let bootstrap = json!({
        "static_resources": {
            "listeners": [http_listener("main", vec![wasm], vec![direct])],
            "clusters": [h2_cluster("ratelimit", &[peer_port], false)],
        },
    });
    RawEnvoy::start(bootstrap, &["main"])
}

/// `n` requests for `key`, spread over `envoys` by `threads` concurrent clients; the statuses.
fn burst(envoys: &[&RawEnvoy], key: &str, n: usize, threads: usize) -> Vec<u16> {
    let ports: Vec<u16> = envoys.iter().map(|e| e.port(0)).collect();
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ports = ports.clone();
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let port = ports[i % ports.len()];
                            send(port, &Request::get("/x").header("x-key", key)).status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn admitted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 200).count()
}

#[test]
fn exact_admits_exactly_the_limit_across_two_envoys() {
    let redis = Redis::start();
    let peer = peer(&redis);
    let a = levee_envoy(peer.port(), 12, "exact", "deny");
    let b = levee_envoy(peer.port(), 12, "exact", "deny");
    let key = unique("exact");
    let statuses = burst(&[&a, &b], &key, 40, 8);
    assert_eq!(admitted(&statuses), 12, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let one = send(a.port(0), &Request::get("/x").header("x-key", &key));
    assert_eq!(one.status, 429);
    assert_eq!(one.header("x-ratelimit-limit").as_deref(), Some("12"));
    eprintln!("exact: 12 admitted of 41, {} calls", peer.calls());
}

#[test]
fn reserve_never_admits_more_than_the_limit_and_calls_about_once_per_batch() {
    let redis = Redis::start();
    let peer = peer(&redis);
    let limit = 400;
    let a = levee_envoy(peer.port(), limit, "reserve", "deny");
    let b = levee_envoy(peer.port(), limit, "reserve", "deny");
    let key = unique("reserve");
    let started = Instant::now();
    let statuses = burst(&[&a, &b], &key, 600, 4);
    let elapsed = started.elapsed();
    let n = admitted(&statuses);
    let calls = peer.calls();
    // q_max = limit / 16 = 25; at most that many units unused per Envoy (and Envoy worker
    // pools are shared, so two Envoys: 50).
    assert!(n <= limit as usize, "{n} admitted > {limit}");
    assert!(
        n >= limit as usize - 50,
        "{n} admitted: more unused than the bound"
    );
    assert!(calls <= 600 / 5, "{calls} calls for 600 requests");
    eprintln!(
        "reserve: {n} admitted of 600 (limit {limit}), {calls} ShouldRateLimit calls, {:.2} ms per request",
        elapsed.as_secs_f64() * 1000.0 / 600.0 * 4.0
    );
}

#[test]
fn a_failing_service_is_decided_by_on_backend_error_and_the_breaker_stops_the_waiting() {
    let redis = Redis::start();
    let peer = peer(&redis);
    peer.set_fault(json!({ "grpc_status": "UNAVAILABLE" }));
    let deny = levee_envoy(peer.port(), 5, "exact", "deny");
    let local = levee_envoy(peer.port(), 5, "exact", "local");
    let allow = levee_envoy(peer.port(), 5, "reserve", "allow");
    let key = unique("down");
    let r = send(deny.port(0), &Request::get("/x").header("x-key", &key));
    assert_eq!(
        (r.status, r.header("retry-after").as_deref()),
        (429, Some("1"))
    );
    assert_eq!(
        admitted(&burst(&[&local], &key, 12, 1)),
        5,
        "the local tier holds its limit"
    );
    assert_eq!(admitted(&burst(&[&allow], &key, 12, 1)), 12);

    // Black-holed: every call waits out the 50 ms timeout until the breaker opens (an Envoy
    // whose breaker has seen no failure yet).
    let slow = levee_envoy_with_timeout(peer.port(), 5, "reserve", "allow", "50ms");
    peer.set_fault(json!({ "delay_ms": 1000 }));
    let key = unique("slow");
    let latency = |e: &RawEnvoy| {
        let t = Instant::now();
        send(e.port(0), &Request::get("/x").header("x-key", &key));
        t.elapsed()
    };
    let first: Vec<Duration> = (0..12).map(|_| latency(&slow)).collect();
    let after: Vec<Duration> = (0..10).map(|_| latency(&slow)).collect();
    let slowest_after = after.iter().max().copied().unwrap_or_default();
    eprintln!("black-holed: first calls {first:?}; once the breaker is open {after:?}");
    assert!(first[0] >= Duration::from_millis(45), "{first:?}");
    assert!(slowest_after < Duration::from_millis(40), "{after:?}");

    // Back: once the breaker lets a probe through, the service decides again (while it
    // failed, `allow` admitted everything).
    peer.set_fault(json!({}));
    thread::sleep(Duration::from_millis(2_000));
    let key = unique("back");
    let statuses = burst(&[&slow], &key, 8, 1);
    assert_eq!(admitted(&statuses), 5, "{statuses:?}");
}

#[test]
fn unknown_verdicts_unknown_domains_and_answers_without_statuses() {
    let redis = Redis::start();
    // A peer that knows no domain: every answer lacks a limit.
    let unknown_domain = RlsPeer::start(&redis, &[]);
    let e = levee_envoy(unknown_domain.port(), 5, "exact", "deny");
    let r = send(e.port(0), &Request::get("/x").header("x-key", "k"));
    assert_eq!(r.status, 429, "a misconfigured service is a backend error");
    assert!(e.log().contains("cannot be used"), "logged");

    let peer = peer(&redis);
    let e = levee_envoy(peer.port(), 3, "exact", "allow");
    peer.set_fault(json!({ "overall_unknown": true }));
    let key = unique("unknown");
    assert_eq!(
        admitted(&burst(&[&e], &key, 5, 1)),
        5,
        "UNKNOWN: allow admits"
    );
    peer.set_fault(json!({ "no_statuses": true }));
    let key = unique("headers");
    let statuses = burst(&[&e], &key, 5, 1);
    assert_eq!(
        admitted(&statuses),
        3,
        "read from the draft-03 headers: {statuses:?}"
    );
}
