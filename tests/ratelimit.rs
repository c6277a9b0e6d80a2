//! Rate limiting against a real Envoy with 4 workers: exact bounds under concurrent bursts,
//! per-key isolation, time-driven refills and windows, the shaper, shadow mode, several
//! limits on one request, headers, and bounded memory under key floods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::*;

fn start(config: serde_json::Value) -> (Upstream, Envoy) {
    start_levee(&config, |o| o.concurrency = 4)
}

fn one_limit(
    algorithm: &str,
    limit: u64,
    window: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut l = serde_json::json!({
        "name": "per-user", "key": ["header:x-user"], "algorithm": algorithm,
        "limit": limit, "window": window
    });
    if let (Some(l), Some(e)) = (l.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            l.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({ "rate_limits": [l] })
}

fn statuses(responses: &[Response]) -> (usize, usize) {
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let limited = responses.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        ok + limited,
        responses.len(),
        "unexpected statuses: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    (ok, limited)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn every_algorithm_admits_exactly_its_bound_of_a_concurrent_burst_per_key() {
    for algorithm in [
        "fixed_window",
        "sliding_window_log",
        "sliding_window_counter",
        "token_bucket",
        "leaky_bucket",
    ] {
        let (up, envoy) = start(one_limit(algorithm, 10, "1h", serde_json::json!({})));
        for round in 0..3 {
            let user = format!("{algorithm}-{round}");
            let responses = burst(48, |_| {
                send(
                    envoy.port(),
                    &Request::get("/burst").header("x-user", &user),
                )
            });
            let (ok, limited) = statuses(&responses);
            assert_eq!((ok, limited), (10, 38), "{algorithm} round {round}");
            assert_eq!(
                up.count_for("x-user", &user),
                10,
                "{algorithm}: upstream saw more than the limit"
            );
        }
        // Another key is untouched by the exhausted ones.
        let r = send(
            envoy.port(),
            &Request::get("/burst").header("x-user", "fresh"),
        );
        assert_eq!(r.status, 200, "{algorithm}: another key was affected");
        assert_eq!(
            envoy.stat("levee_ratelimit.per-user.rejected"),
            3 * 38,
            "{algorithm}"
        );
        assert_eq!(envoy.stat("levee_internal_errors"), 0, "{algorithm}");
    }
}

#[test]
fn a_rejection_is_429_problem_json_with_retry_after_and_headers() {
    let (_up, envoy) = start(one_limit("fixed_window", 2, "1h", serde_json::json!({})));
    let first = send(envoy.port(), &Request::get("/h").header("x-user", "u"));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining").as_deref(), Some("1"));
    let reset: u64 = first.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let hour_end = (unix_now() as u64 / 3600 + 1) * 3600;
    assert_eq!(
        reset, hour_end,
        "fixed window Reset is the end of the epoch-aligned window"
    );
    send(envoy.port(), &Request::get("/h").header("x-user", "u"));
    let limited = send(envoy.port(), &Request::get("/h").header("x-user", "u"));
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: serde_json::Value = serde_json::from_slice(&limited.body).unwrap();
    assert_eq!(body["limit"], "per-user");
    assert_eq!(body["status"], 429);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    let expected = hour_end as f64 - unix_now();
    assert!(
        (retry_after as f64 - expected).abs() <= 2.0,
        "retry-after {retry_after} vs {expected}"
    );
    assert_eq!(
        limited.header("x-ratelimit-remaining").as_deref(),
        Some("0")
    );
}

#[test]
fn custom_status_and_ietf_headers() {
    let mut cfg = one_limit(
        "token_bucket",
        1,
        "1m",
        serde_json::json!({ "status": 503 }),
    );
    cfg["rate_limit_headers"] = "ietf".into();
    let (_up, envoy) = start(cfg);
    let ok = send(envoy.port(), &Request::get("/i").header("x-user", "u"));
    assert_eq!(
        ok.header("ratelimit-policy").as_deref(),
        Some("\"per-user\";q=1;w=60")
    );
    assert!(ok
        .header("ratelimit")
        .unwrap()
        .starts_with("\"per-user\";r=0;t="));
    assert!(ok.header("x-ratelimit-limit").is_none());
    let limited = send(envoy.port(), &Request::get("/i").header("x-user", "u"));
    assert_eq!(limited.status, 503);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (59..=60).contains(&retry_after),
        "one token per minute: {retry_after}"
    );
}

#[test]
fn token_bucket_refills_continuously() {
    let (_up, envoy) = start(one_limit("token_bucket", 2, "1s", serde_json::json!({})));
    let get = || send(envoy.port(), &Request::get("/t").header("x-user", "u")).status;
    assert_eq!((get(), get(), get()), (200, 200, 429));
    std::thread::sleep(Duration::from_millis(650)); // 1.3 tokens back
    assert_eq!((get(), get()), (200, 429));
}

#[test]
fn fixed_window_resets_at_the_epoch_aligned_boundary() {
    let (_up, envoy) = start(one_limit("fixed_window", 3, "2s", serde_json::json!({})));
    // Start just after a boundary so the whole exchange fits in one window.
    let now = unix_now();
    let next_boundary = (now / 2.0).floor() * 2.0 + 2.0;
    std::thread::sleep(Duration::from_secs_f64(next_boundary - now + 0.05));
    let get = || send(envoy.port(), &Request::get("/f").header("x-user", "u"));
    for _ in 0..3 {
        assert_eq!(get().status, 200);
    }
    let limited = get();
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("x-ratelimit-reset").unwrap(),
        format!("{}", next_boundary as u64 + 2)
    );
    std::thread::sleep(Duration::from_secs_f64(next_boundary + 2.05 - unix_now()));
    assert_eq!(get().status, 200, "a new window admits again");
}

#[test]
fn sliding_window_counter_weights_the_previous_window() {
    let (_up, envoy) = start(one_limit(
        "sliding_window_counter",
        10,
        "4s",
        serde_json::json!({}),
    ));
    let now = unix_now();
    let boundary = (now / 4.0).floor() * 4.0 + 4.0;
    std::thread::sleep(Duration::from_secs_f64(boundary - now + 0.1));
    let get = || send(envoy.port(), &Request::get("/s").header("x-user", "u")).status;
    let filled = (0..12).filter(|_| get() == 200).count();
    assert_eq!(filled, 10);
    // 75% into the next window the previous one weighs 0.25: 2.5 + c < 10 admits c = 0..=7.
    std::thread::sleep(Duration::from_secs_f64(boundary + 4.0 + 3.0 - unix_now()));
    let admitted = (0..12).filter(|_| get() == 200).count();
    assert_eq!(admitted, 8);
}

#[test]
fn shaper_releases_at_the_leak_rate_and_rejects_beyond_max_delay() {
    let mut cfg = one_limit(
        "leaky_bucket",
        5,
        "1s",
        serde_json::json!({ "burst": 1, "max_delay": "700ms" }),
    );
    cfg["rate_limit_headers"] = "both".into();
    let (up, envoy) = start(cfg);
    let started = Instant::now();
    let responses = burst(6, |_| {
        send(envoy.port(), &Request::get("/shape").header("x-user", "u"))
    });
    let (ok, limited) = statuses(&responses);
    assert_eq!(
        (ok, limited),
        (4, 2),
        "immediate + three delayed (200/400/600 ms); 800 ms > max_delay"
    );
    // Held requests are not "remaining": with burst 1 every answer says 0 of 1 (IETF r ≤ q).
    for r in &responses {
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("1"));
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(
            r.header("ratelimit-policy").as_deref(),
            Some("\"per-user\";q=1;w=1")
        );
        let field = r.header("ratelimit").unwrap_or_default();
        assert!(field.starts_with("\"per-user\";r=0;t="), "{field}");
    }
    let mut arrivals: Vec<Duration> = up
        .requests()
        .iter()
        .map(|r| r.at.duration_since(started))
        .collect();
    arrivals.sort();
    // The shaper never releases early: the i-th request (0 = the one let through at once)
    // leaves Envoy no sooner than i × T after the burst was sent (T = 200 ms). A late
    // release is only load, so the bound is one-sided; neighbours are also never bunched.
    for (i, at) in arrivals.iter().enumerate() {
        assert!(
            *at >= Duration::from_millis(200 * i as u64),
            "request {i} released early at {at:?}: {arrivals:?}"
        );
    }
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(100),
            "released requests spaced at T=200ms, got {gap:?}: {arrivals:?}"
        );
    }
    assert!(
        arrivals[3] < Duration::from_millis(1_500),
        "held no longer than needed: {arrivals:?}"
    );
    assert_eq!(envoy.stat("levee_ratelimit.per-user.delayed"), 3);
    assert_eq!(envoy.stat("levee_held_requests"), 0);
}

#[test]
fn shadow_mode_counts_but_never_rejects_or_adds_headers() {
    let (up, envoy) = start(one_limit(
        "fixed_window",
        2,
        "1h",
        serde_json::json!({ "mode": "shadow" }),
    ));
    for _ in 0..5 {
        let r = send(envoy.port(), &Request::get("/shadow").header("x-user", "u"));
        assert_eq!(r.status, 200);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
    assert_eq!(up.count(), 5);
    assert_eq!(envoy.stat("levee_ratelimit.per-user.shadow_rejected"), 3);
    assert_eq!(envoy.stat("levee_ratelimit.per-user.allowed"), 2);
}

#[test]
fn a_request_rejected_by_one_limit_consumes_nothing_from_another() {
    let cfg = serde_json::json!({ "rate_limits": [
        { "name": "global", "key": [], "algorithm": "fixed_window", "limit": 3, "window": "1h" },
        { "name": "per-user", "key": ["header:x-user"], "algorithm": "token_bucket", "limit": 1, "window": "1h" }
    ]});
    let (_up, envoy) = start(cfg);
    let get = |u: &str| send(envoy.port(), &Request::get("/m").header("x-user", u));
    assert_eq!(get("a").status, 200);
    for _ in 0..5 {
        let r = get("a");
        assert_eq!(r.status, 429);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body["limit"], "per-user",
            "the rejection names the limit that rejected"
        );
    }
    assert_eq!(
        get("b").status,
        200,
        "the global limit was not consumed by rejected requests"
    );
    assert_eq!(get("c").status, 200);
    let r = get("d");
    assert_eq!(r.status, 429);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["limit"], "global");
}

#[test]
fn headers_describe_the_matching_limit_with_the_lowest_remaining() {
    let cfg = serde_json::json!({ "rate_limits": [
        { "name": "wide", "key": [], "algorithm": "fixed_window", "limit": 100, "window": "1h" },
        { "name": "narrow", "key": ["header:x-user"], "algorithm": "fixed_window", "limit": 5, "window": "1h",
          "match": { "path_prefix": "/narrow" } }
    ]});
    let (_up, envoy) = start(cfg);
    let r = send(
        envoy.port(),
        &Request::get("/narrow/x").header("x-user", "u"),
    );
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("4"));
    let r = send(envoy.port(), &Request::get("/other").header("x-user", "u"));
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("100"));
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("98"));
}

#[test]
fn a_flood_of_distinct_keys_keeps_memory_bounded_and_tracked_keys_exact() {
    let cfg = serde_json::json!({
        "limits": { "max_tracked_keys": 4096 },
        "rate_limits": [{ "name": "per-user", "key": ["header:x-user"], "algorithm": "token_bucket", "limit": 3, "window": "1h" }]
    });
    let (_up, envoy) = start(cfg);
    let flood = |from: usize, to: usize| {
        std::thread::scope(|s| {
            for t in 0..4 {
                let port = envoy.port();
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    for i in (from + t..to).step_by(4) {
                        let r =
                            c.send(&Request::get("/flood").header("x-user", format!("user-{i}")));
                        assert_eq!(r.status, 200);
                    }
                });
            }
        });
    };
    flood(0, 30_000);
    let rss_after_30k = envoy.rss_bytes();
    flood(30_000, 150_000);
    let rss_after_150k = envoy.rss_bytes();
    let growth = rss_after_150k.saturating_sub(rss_after_30k);
    eprintln!(
        "RSS after 30k distinct keys: {} KiB; after 150k: {} KiB; growth {} KiB; bound {} bytes",
        rss_after_30k / 1024,
        rss_after_150k / 1024,
        growth / 1024,
        envoy.stat("levee_memory_bound_bytes")
    );
    // 120k more distinct keys would need 120k more shared-data entries (tens of MiB) if unbounded.
    assert!(
        growth < 8 << 20,
        "RSS grew by {growth} bytes after the table was full"
    );
    // A key that is tracked is still limited exactly.
    let statuses: Vec<u16> = (0..5)
        .map(|_| send(envoy.port(), &Request::get("/x").header("x-user", "vip")).status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    assert_eq!(envoy.stat("levee_internal_errors"), 0);
}

#[test]
fn a_keyed_post_held_by_the_shaper_keeps_its_body_and_completes() {
    let cfg = serde_json::json!({
        "rate_limits": [{ "name": "shape", "key": [], "algorithm": "leaky_bucket", "limit": 2, "window": "1s", "burst": 1, "max_delay": "2s" }],
        "idempotency": {}
    });
    let (up, envoy) = start(cfg);
    let responses = burst(3, |i| {
        send(
            envoy.port(),
            &Request::post("/pay", format!("body-{i}").into_bytes())
                .header("idempotency-key", format!("shaped-{i}")),
        )
    });
    assert!(
        responses.iter().all(|r| r.status == 200),
        "{:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let mut bodies: Vec<Vec<u8>> = up.requests().into_iter().map(|r| r.body).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        vec![b"body-0".to_vec(), b"body-1".to_vec(), b"body-2".to_vec()]
    );
    assert_eq!(envoy.stat("levee_ratelimit.shape.delayed"), 2);
    assert_eq!(envoy.stat("levee_held_requests"), 0);
}

#[test]
fn a_grpc_request_over_the_limit_gets_resource_exhausted_not_a_problem_body() {
    // `content-type` is read only when levee answers itself: the admitted request never reads
    // it, the rejected one must.
    let (up, envoy) = start(one_limit("fixed_window", 1, "1h", serde_json::json!({})));
    let grpc = || {
        Request::post("/svc.Api/Call", b"\0\0\0\0\0".to_vec())
            .header("x-user", "g")
            .header("content-type", "application/grpc")
    };
    let first = send(envoy.port(), &grpc());
    assert_eq!(first.status, 200);
    assert_eq!(first.header("grpc-status"), None, "the upstream answered");
    let limited = send(envoy.port(), &grpc());
    assert_eq!(limited.header("grpc-status").as_deref(), Some("8"));
    assert_eq!(
        limited.header("grpc-message").as_deref(),
        Some("rate limit \"per-user\" exceeded"),
        "the reason beside the status (printable ASCII needs no percent-encoding)"
    );
    assert_eq!(
        limited.header("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(limited.status, 200, "gRPC errors travel in grpc-status");
    assert!(limited.body.is_empty(), "no problem+json body for gRPC");
    assert_eq!(up.count(), 1);
    // A plain request of another client is still answered with problem+json.
    let plain = send(envoy.port(), &Request::get("/h").header("x-user", "p"));
    assert_eq!(plain.status, 200);
    let limited = send(envoy.port(), &Request::get("/h").header("x-user", "p"));
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("content-type").as_deref(),
        Some("application/problem+json")
    );
}
