//! Proves the test harness against a real Envoy, using the empty `bench/noop-filter` wasm so
//! that neither side depends on levee's code: if these pass, the generated Envoy/wasm
//! configuration, the upstream and the client are right, and a failing levee test is about levee.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use std::path::PathBuf;
use std::time::Duration;

/// `$NOOP_WASM`, else the noop filter as `make test` builds it.
fn noop_wasm() -> PathBuf {
    let path = std::env::var_os("NOOP_WASM").map_or_else(
        || crate_root().join("target/wasm32-wasip1/release/noop_filter.wasm"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: build it with `make test` (or `make noop`)",
        path.display()
    );
    path
}

fn noop_envoy(upstream: &Upstream, tweak: impl FnOnce(&mut EnvoyOptions)) -> Envoy {
    let mut opts = EnvoyOptions {
        wasm_path: noop_wasm(),
        concurrency: 2,
        ..EnvoyOptions::levee("{}", upstream.port())
    };
    tweak(&mut opts);
    Envoy::start(opts)
}

#[test]
fn request_passes_through_to_the_upstream_and_is_counted() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});

    let r = send(
        envoy.port(),
        &Request::get("/hello?a=1").header("idempotency-key", "k1"),
    );

    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["path"], "/hello?a=1");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["seq"], 1);
    assert_eq!(up.count(), 1);
    assert_eq!(up.count_for("idempotency-key", "k1"), 1);
    assert_eq!(up.count_for("idempotency-key", "k2"), 0);
    assert!(envoy.stat("cluster.upstream.upstream_rq_total") >= 1);
    assert!(envoy.rss_bytes() > 1 << 20);
}

#[test]
fn request_bodies_reach_the_upstream_intact_whether_sized_or_chunked() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

    let sized = send(envoy.port(), &Request::post("/sized", body.clone()));
    let chunked = send(
        envoy.port(),
        &Request::post("/chunked", body.clone()).chunked(),
    );

    assert_eq!((sized.status, chunked.status), (200, 200));
    let log = up.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| r.body == body));
    assert_eq!(
        log[1].header("transfer-encoding").as_deref(),
        Some("chunked")
    );
}

#[test]
fn scripts_are_consumed_in_order_then_fall_back_to_the_default() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});
    up.script(
        "s1",
        vec![
            Reply::status(503),
            Reply::status(503).header("retry-after", "1"),
            Reply::status(201).body("made"),
        ],
    );
    let req = Request::get("/s").header("x-script-key", "s1");

    let got: Vec<_> = (0..4).map(|_| send(envoy.port(), &req)).collect();

    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 201, 200]);
    assert_eq!(got[1].header("retry-after").as_deref(), Some("1"));
    assert_eq!(got[2].text(), "made");
    assert_eq!(up.script_remaining("s1"), 0);
    assert_eq!(up.count_for("x-script-key", "s1"), 4);
}

#[test]
fn request_headers_control_status_body_and_response_headers() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});

    let r = send(
        envoy.port(),
        &Request::get("/")
            .header("x-upstream-status", "418")
            .header("x-upstream-body", "teapot")
            .header("x-upstream-header", "a=1, b=2")
            .header("x-upstream-header", "c=3"),
    );

    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "teapot");
    let got: Vec<_> = ["a", "b", "c"].iter().map(|h| r.header(h)).collect();
    assert_eq!(
        got,
        vec![Some("1".into()), Some("2".into()), Some("3".into())]
    );
}

#[test]
fn stalled_upstream_with_short_route_timeout_gives_504() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |o| o.route_timeout = Duration::from_millis(200));

    let r = send(
        envoy.port(),
        &Request::get("/slow").header("x-upstream-delay-ms", "3000"),
    );

    assert_eq!(r.status, 504);
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
    assert_eq!(up.count(), 1);
}

#[test]
fn upstream_reset_gives_503_and_extra_routes_pick_their_cluster() {
    let up = Upstream::start();
    let other = Upstream::start();
    let envoy = noop_envoy(&up, |o| {
        o.clusters.push(("other".into(), other.port()));
        o.routes.push(Route {
            name: "other".into(),
            path_prefix: "/other".into(),
            cluster: "other".into(),
            timeout: None,
        });
    });

    let reset = send(
        envoy.port(),
        &Request::get("/").header("x-upstream-reset", "1"),
    );
    let routed = send(envoy.port(), &Request::get("/other/x"));

    assert_eq!(reset.status, 503);
    assert_eq!(routed.status, 200);
    assert_eq!(routed.json()["upstream_port"], other.port());
    assert_eq!((up.count(), other.count()), (1, 1));
}

#[test]
fn burst_releases_requests_together_and_returns_them_in_order() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});

    let got = burst(24, |i| {
        send(envoy.port(), &Request::get(&format!("/b/{i}")))
    });

    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], format!("/b/{i}"));
    }
    assert!(up.wait_for_count(24, Duration::from_secs(5)));
    let log = up.requests();
    let spread = log.iter().map(|r| r.at).max().unwrap() - log.iter().map(|r| r.at).min().unwrap();
    assert!(
        spread < Duration::from_secs(1),
        "arrivals spread over {spread:?}"
    );
}

#[test]
fn non_utf8_header_values_pass_through_byte_for_byte() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});
    let value = [b'a', 0xff, 0xfe, b'z'];

    let r = send(envoy.port(), &Request::get("/bin").header("x-bin", value));

    assert_eq!(r.status, 200);
    let got = up.requests();
    let seen = got[0]
        .headers
        .iter()
        .find(|(n, _)| n == "x-bin")
        .map(|(_, v)| v.clone());
    assert_eq!(seen, Some(value.to_vec()));
}

#[test]
fn client_that_disconnects_early_gets_nothing_and_envoy_sees_it() {
    let up = Upstream::start();
    let envoy = noop_envoy(&up, |_| {});
    let req = Request::get("/stall").header("x-upstream-delay-ms", "2000");

    let got = send_and_disconnect_after(envoy.port(), &req, Duration::from_millis(200));

    assert!(got.is_none());
    let resets = envoy.wait_for_stat(
        "http.ingress.downstream_cx_destroy_remote_active_rq",
        1,
        Duration::from_secs(5),
    );
    assert_eq!(resets, 1);
}

#[test]
fn reload_swaps_the_plugin_config_and_keeps_the_port() {
    let up = Upstream::start();
    let mut envoy = noop_envoy(&up, |_| {});
    let port = envoy.port();
    let configured = |e: &Envoy| e.log().matches("noop-filter configured").count();
    let before = configured(&envoy);

    envoy.reload(r#"{"changed": true}"#).unwrap();

    assert_eq!(envoy.port(), port);
    assert!(
        configured(&envoy) > before,
        "no new on_configure after reload"
    );
    assert_eq!(send(port, &Request::get("/after")).status, 200);
    assert_eq!(envoy.stat("listener_manager.listener_in_place_updated"), 1);
}

#[test]
fn try_start_with_a_missing_wasm_returns_envoys_log() {
    let opts = EnvoyOptions {
        wasm_path: PathBuf::from("/nonexistent/levee-missing.wasm"),
        concurrency: 1,
        ..EnvoyOptions::default()
    };

    let err = Envoy::try_start(opts)
        .err()
        .expect("Envoy must refuse a missing wasm file");

    assert!(err.contains("levee-missing.wasm"), "{err}");
    assert!(err.contains("envoy log"), "{err}");
}
