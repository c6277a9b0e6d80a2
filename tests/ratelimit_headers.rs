//! Rate-limit headers against a real Envoy with 2 workers: for every algorithm, the IETF `t`,
//! `X-RateLimit-Reset` and `Retry-After` name one instant — when more quota comes back — as
//! draft-ietf-httpapi-ratelimit-headers-10 asks (`t ≤ w`, Retry-After not earlier than `t`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{SystemTime, UNIX_EPOCH};

use harness::*;

/// levee with one limit of 2 per minute per `x-user`, both header styles.
fn start(algorithm: &str) -> (Upstream, Envoy) {
    let config = serde_json::json!({
        "rate_limit_headers": "both",
        "rate_limits": [{ "name": "per-user", "key": ["header:x-user"],
                          "algorithm": algorithm, "limit": 2, "window": "1m" }]
    });
    start_levee(&config, |o| o.concurrency = 2)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A number parameter (`t`, `r`, `w`) of an IETF field.
fn sf_param(r: &Response, name: &str, key: &str) -> u64 {
    let v = r.header(name).unwrap();
    v.split(';')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name}: {v}"))
        .parse()
        .unwrap()
}

/// `t ≤ w`, X-RateLimit-Reset naming the instant `t` names, and on the rejection
/// Retry-After = `t`.
fn assert_headers_agree(algorithm: &str, r: &Response) {
    let t = sf_param(r, "ratelimit", "t");
    assert!(
        t <= sf_param(r, "ratelimit-policy", "w"),
        "{algorithm}: t={t}"
    );
    let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let t_at = unix_now() + t as f64;
    assert!(
        (reset as f64 - t_at).abs() <= 2.0,
        "{algorithm}: reset {reset} vs now + t {t_at}"
    );
    if r.status == 429 {
        let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert_eq!(retry_after, t, "{algorithm}: Retry-After is t");
    }
}

#[test]
fn token_bucket_two_per_minute_headers_agree_on_when_the_next_request_is_admitted() {
    let (_up, envoy) = start("token_bucket");
    let get = || send(envoy.port(), &Request::get("/tb").header("x-user", "u"));
    let (first, second, third) = (get(), get(), get());
    assert_eq!((first.status, second.status, third.status), (200, 200, 429));
    for r in [&first, &second, &third] {
        assert_eq!(
            r.header("ratelimit-policy").as_deref(),
            Some("\"per-user\";q=2;w=60")
        );
        // One token every 30 s: that is when more quota comes back, admitted or not.
        let t = sf_param(r, "ratelimit", "t");
        assert!((29..=30).contains(&t), "t={t}");
        assert_headers_agree("token_bucket", r);
    }
    assert_eq!(sf_param(&first, "ratelimit", "r"), 1);
    assert_eq!(sf_param(&third, "ratelimit", "r"), 0);
    let retry_after = third.header("retry-after").unwrap();
    assert!(
        retry_after == "29" || retry_after == "30",
        "not 60: {retry_after}"
    );
}

#[test]
fn every_algorithm_two_per_minute_says_one_instant_in_t_reset_and_retry_after() {
    for algorithm in [
        "fixed_window",
        "sliding_window_log",
        "sliding_window_counter",
        "leaky_bucket",
    ] {
        let (_up, envoy) = start(algorithm);
        let mut rejected = false;
        for _ in 0..6 {
            let r = send(envoy.port(), &Request::get("/a").header("x-user", "u"));
            assert_headers_agree(algorithm, &r);
            if r.status == 429 {
                rejected = true;
                break;
            }
        }
        assert!(rejected, "{algorithm}: never rejected");
    }
}

/// An upstream that sends its own rate-limit fields keeps them: levee adds its fields beside
/// them (as Envoy's rate limit filters do), whether or not levee routes the request itself.
#[test]
fn levees_rate_limit_fields_are_added_beside_the_upstreams_own() {
    let limits = serde_json::json!({
        "rate_limit_headers": "both",
        "rate_limits": [{ "name": "per-user", "key": ["header:x-user"],
                          "algorithm": "token_bucket", "limit": 5, "window": "1m" }]
    });
    let routed = single_upstream(
        serde_json::json!({ "forward": "router", "circuit_breaker": {} }),
        &limits,
    );
    for (label, config) in [("plain", limits.clone()), ("routed", routed)] {
        let (up, envoy) = start_levee(&config, |o| o.concurrency = 2);
        up.script(
            "own",
            vec![Reply::status(200)
                .header("x-ratelimit-remaining", "77")
                .header("ratelimit", "\"upstream\";r=77;t=1")],
        );
        let r = send(
            envoy.port(),
            &Request::get("/x")
                .header("x-user", "u1")
                .header("x-script-key", "own"),
        );
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        assert_eq!(
            r.header_all("x-ratelimit-remaining"),
            ["77", "4"],
            "{label}"
        );
        assert_eq!(
            r.header_all("ratelimit"),
            ["\"upstream\";r=77;t=1", "\"per-user\";r=4;t=12"],
            "{label}"
        );
        assert_eq!(r.header_all("x-ratelimit-limit"), ["5"], "{label}");
        assert_eq!(up.count(), 1, "{label}");
    }
}
