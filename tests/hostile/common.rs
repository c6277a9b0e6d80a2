//! What every hostile test shares: starting levee, and the after-checks.

use std::time::{Duration, Instant};

use super::harness::*;

/// levee with `config` in front of one upstream, 2 workers.
pub fn start(config: serde_json::Value) -> (Upstream, Envoy) {
    start_with(config, |_| {})
}

/// Like [`start`], with more Envoy options.
pub fn start_with(
    config: serde_json::Value,
    opts: impl FnOnce(&mut EnvoyOptions),
) -> (Upstream, Envoy) {
    start_levee(&config, |o| {
        o.concurrency = 2;
        opts(o);
    })
}

/// The after-check: no wasm panic or trap in the log, and no request left held.
pub fn assert_clean(envoy: &Envoy) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = envoy.stat("levee_held_requests");
    while held != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        held = envoy.stat("levee_held_requests");
    }
    assert_eq!(held, 0, "levee still holds requests");
    let log = envoy.log();
    for bad in [
        "panicked",
        "wasm_fail_stream",
        "Function: proxy_on_",
        "Uncaught",
        "wasm trap",
    ] {
        let line = log.lines().find(|l| l.contains(bad));
        assert!(
            line.is_none(),
            "Envoy log has {bad:?}: {}",
            line.unwrap_or("")
        );
    }
}

/// A levee problem+json answer with this status.
pub fn assert_problem(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["status"], status);
}
