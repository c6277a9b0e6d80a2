//! The memory ceiling in a real Envoy: a config whose shared-data bound exceeds
//! `limits.max_memory_bytes` is refused with the path named (before a key is created), and the
//! largest config the default ceiling admits configures in bounded time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use ::levee::config::defaults;
use ::levee::footprint::{validate, Footprint};
use harness::*;

fn options(config: &str, up: &Upstream) -> EnvoyOptions {
    EnvoyOptions {
        concurrency: 2,
        ..EnvoyOptions::levee(config, up.port())
    }
}

/// Idempotency with the smallest answers: the config with the most shared-data keys per
/// byte of the bound (one record bucket per 4 slots plus one answer key per slot).
fn densest(max_tracked_keys: u32) -> String {
    format!(
        r#"{{"limits": {{"max_tracked_keys": {max_tracked_keys}}},
            "idempotency": {{"max_body_bytes": 1, "max_stored_bytes": 1}}}}"#
    )
}

#[test]
fn envoy_refuses_a_config_over_the_memory_ceiling_with_the_path_named() {
    let up = Upstream::start();
    let config = r#"{"limits": {"max_tracked_keys": 16777216}, "idempotency": {}}"#;
    let started = Instant::now();
    let line = Envoy::refused_config_line(options(config, &up));
    assert!(
        line.contains("levee config: limits.max_memory_bytes: this config's shared-data tables can take 5.1 GiB (5582618624 bytes), over the ceiling of 512 MiB (536870912 bytes)"),
        "{line}"
    );
    // Refused before creating 21 million keys, not after.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_largest_config_the_default_ceiling_admits_configures_in_bounded_time() {
    // The largest max_tracked_keys whose densest config is still admitted.
    let (mut lo, mut hi) = (1u32, 16_777_216u32);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if validate(densest(mid).as_bytes()).is_ok() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let (_, footprint): (_, Footprint) = validate(densest(lo).as_bytes()).unwrap();
    assert!(footprint.bytes() <= defaults::MAX_MEMORY_BYTES);
    assert!(validate(densest(lo + 64).as_bytes()).is_err());

    let up = Upstream::start();
    let started = Instant::now();
    let envoy = Envoy::start(options(&densest(lo), &up));
    let took = started.elapsed();
    eprintln!(
        "max_tracked_keys {lo}: bound {} bytes, {} keys, Envoy ready in {took:?}, RSS {} MiB",
        footprint.bytes(),
        footprint.keys(),
        envoy.rss_bytes() >> 20
    );
    let configured = envoy
        .log()
        .lines()
        .any(|l| l.contains(&format!("{} shared-data keys", footprint.keys())));
    assert!(configured, "{}", envoy.log());
    assert_eq!(
        envoy.stat("levee_memory_bound_bytes"),
        footprint.bytes(),
        "the gauge reports the bound levee check prints"
    );
    // Generous: a loaded CI machine. The measured time is printed above.
    assert!(took < Duration::from_secs(20), "configure took {took:?}");
    let r = send(
        envoy.port(),
        &Request::post("/p", b"x".to_vec()).header("idempotency-key", "k1"),
    );
    assert_eq!(r.status, 200);
}
