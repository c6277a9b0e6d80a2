//! The shipped Istio WasmPlugin (`envoy/istio/wasmplugin.yaml`) in a real Envoy with 2 workers,
//! set up as a WasmPlugin leaves it: no `allow_on_headers_stop_iteration`. Its exact plugin
//! JSON must work there — a keyed POST executes once and replays — because a WasmPlugin has no
//! way to set the flag, and levee needs it only to read request bodies (body fingerprints,
//! callout mode), which that config does not use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::PathBuf;

use harness::*;

/// The JSON under `pluginConfig:` in the shipped WasmPlugin, exactly as written there.
fn wasmplugin_config() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/istio/wasmplugin.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = yaml.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "pluginConfig:")
        .expect("wasmplugin.yaml has a pluginConfig");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_indent = indent(lines[at]);
    let json: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
        .copied()
        .collect();
    serde_json::from_str(&json.join("\n")).unwrap()
}

#[test]
fn the_wasmplugin_config_executes_a_keyed_post_once_and_replays_it_without_the_flag() {
    let config = wasmplugin_config();
    assert_eq!(config["idempotency"]["fingerprint"], false);
    let (up, envoy) = start_levee(&config, |o| {
        o.concurrency = 2;
        o.allow_on_headers_stop_iteration = false;
    });
    let post = |body: &str| {
        Request::post("/payments", body.as_bytes().to_vec())
            .header("idempotency-key", "order-42")
            .header("x-upstream-status", "201")
    };
    let first = send(envoy.port(), &post("amount=10"));
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(first.header("idempotent-replayed").is_none());
    let again = send(envoy.port(), &post("amount=10"));
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.body, first.body, "the replay is the stored answer");
    // Without a fingerprint a different body under the same key replays too (no 422).
    let other = send(envoy.port(), &post("amount=99"));
    assert_eq!(other.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(
        up.count_for("idempotency-key", "order-42"),
        1,
        "executed once"
    );
    let received = up.requests();
    assert_eq!(
        received[0].body, b"amount=10",
        "the body reached the upstream"
    );
    // Unkeyed traffic and the rate-limit headers work as configured.
    let get = send(envoy.port(), &Request::get("/payments/1"));
    assert_eq!(get.status, 200);
    assert!(get.header("ratelimit").is_some());
    assert_eq!(envoy.stat("levee_body_not_delivered"), 0);
    assert_eq!(envoy.stat("levee_internal_errors"), 0);
}
