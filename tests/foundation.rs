//! The foundation against a real Envoy: bad plugin configs are refused with the JSON path
//! named, `{}` is a pass-through, held requests are released on time by the worker's timer
//! queue and a client that disconnects mid-wait leaves nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;

fn options(config: &str, up: &Upstream) -> EnvoyOptions {
    EnvoyOptions {
        concurrency: 2,
        ..EnvoyOptions::levee(config, up.port())
    }
}

#[test]
fn bad_configs_are_refused_by_envoy_with_the_json_path_named() {
    let up = Upstream::start();
    let cases = [
        (
            r#"{"rate_limits":[{"name":"a","key":[],"algorithm":"token_bucket","limit":5,"window":"10 parsecs"}]}"#,
            "rate_limits[0].window",
        ),
        (
            r#"{"rate_limits":[{"name":"a","key":[],"algorithm":"token_bucket","limt":5,"window":"1s"}]}"#,
            "limt",
        ),
        (
            r#"{"limits":{"max_tracked_keys":"many"}}"#,
            "limits.max_tracked_keys",
        ),
        (
            r#"{"rate_limits":[{"name":"a","key":["cookie:x"],"algorithm":"fixed_window","limit":5,"window":"1s"}]}"#,
            "rate_limits[0].key[0]",
        ),
        (
            r#"{"routes":[{"match":{"path_prefix":"/"},"upstream":"nowhere"}]}"#,
            "routes[0].upstream",
        ),
        (r#"not json"#, "levee config"),
    ];
    for (config, named) in cases {
        let line = Envoy::refused_config_line(options(config, &up));
        assert!(
            line.contains(named),
            "error line does not name {named}: {line}"
        );
    }
}

#[test]
fn an_empty_config_passes_traffic_through_untouched() {
    let up = Upstream::start();
    let envoy = Envoy::start(options("{}", &up));
    let r = send(
        envoy.port(),
        &Request::post("/echo?q=1", b"hello".to_vec())
            .header("x-upstream-status", "201")
            .header("x-upstream-header", "x-from-upstream=yes"),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-from-upstream").as_deref(), Some("yes"));
    assert!(r
        .headers
        .iter()
        .all(|(k, _)| !k.starts_with("x-ratelimit") && !k.starts_with("x-levee")));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/echo?q=1");
    assert_eq!(seen[0].body, b"hello");
    let empty = send(envoy.port(), &Request::post("/e", Vec::new()));
    assert_eq!(empty.status, 200);
}

#[test]
fn a_held_request_is_released_on_time_by_the_timer_queue() {
    let up = Upstream::start();
    let config = r#"{"rate_limits":[{"name":"shape","key":[],"algorithm":"leaky_bucket","limit":2,"window":"1s","burst":1,"max_delay":"2s"}]}"#;
    let envoy = Envoy::start(options(config, &up));
    let first = send(envoy.port(), &Request::get("/a"));
    assert_eq!(first.status, 200);
    let started = Instant::now();
    let second = send(
        envoy.port(),
        &Request::post("/a", b"body while held".to_vec()),
    );
    let waited = started.elapsed();
    assert_eq!(second.status, 200);
    assert!(
        waited >= Duration::from_millis(400),
        "held for the emission interval, got {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1_500),
        "released on time, got {waited:?}"
    );
    assert_eq!(up.requests()[1].body, b"body while held");
    assert_eq!(envoy.stat("levee_held_requests"), 0);
}

#[test]
fn a_client_that_disconnects_while_held_leaves_nothing_behind() {
    let up = Upstream::start();
    let config = r#"{"rate_limits":[{"name":"shape","key":[],"algorithm":"leaky_bucket","limit":1,"window":"1s","burst":1,"max_delay":"5s"}]}"#;
    let envoy = Envoy::start(options(config, &up));
    assert_eq!(send(envoy.port(), &Request::get("/a")).status, 200);
    // The next request would be held ~1 s; its client goes away after 200 ms.
    send_and_disconnect_after(
        envoy.port(),
        &Request::get("/gone"),
        Duration::from_millis(200),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        envoy.stat("levee_held_requests"),
        0,
        "the held request was forgotten at once"
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        up.count(),
        1,
        "the abandoned request never reached the upstream"
    );
    let log = envoy.log();
    assert!(
        !log.contains("panicked") && !log.contains("wasm_fail_stream"),
        "{log}"
    );
}

#[test]
fn client_ip_honours_trusted_xff_hops_and_ignores_spoofed_entries() {
    let up = Upstream::start();
    let config = r#"{"client_ip":{"xff_trusted_hops":1},
        "rate_limits":[{"name":"per-client","key":["client_ip"],"algorithm":"fixed_window","limit":1,"window":"1h"}]}"#;
    let envoy = Envoy::start(options(config, &up));
    let from = |xff: &str| {
        send(
            envoy.port(),
            &Request::get("/ip").header("x-forwarded-for", xff),
        )
        .status
    };
    // One trusted proxy appended the last entry: the client is the second from the right.
    assert_eq!(from("6.6.6.6, 1.1.1.1, 10.0.0.1"), 200);
    assert_eq!(
        from("7.7.7.7, 1.1.1.1, 10.0.0.2"),
        429,
        "a spoofed prefix does not make a new client"
    );
    // Too few entries: levee falls back to Envoy's source address (which, with the default
    // `use_remote_address: false`, Envoy itself takes from the rightmost XFF entry).
    assert_eq!(from("9.9.9.9"), 200);
    assert_eq!(from("9.9.9.9"), 429);
    assert_eq!(from("1.1.1.1, 2.2.2.2, 10.0.0.1"), 200, "another client");
    // IPv6 clients are keyed by their /64.
    assert_eq!(from("2001:db8:1:2::1, 10.0.0.1"), 200);
    assert_eq!(
        from("[2001:db8:1:2::99]:4711, 10.0.0.1"),
        429,
        "same /64, bracketed with a port"
    );
    assert_eq!(from("2001:db8:1:3::1, 10.0.0.1"), 200, "another /64");
}
