//! The rate limit service peer proves itself: Envoy's own `envoy.filters.http.ratelimit` gets
//! the decisions envoyproxy/ratelimit would give (fixed windows, hits counted over the limit),
//! levee's codec reads the same verdicts, and the protocol's details (the `limit` override,
//! per-descriptor `hits_addend`, unknown domains) and the injectable faults behave as the tests
//! of the rate limit backend will need them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::grpc_web;
use harness::raw_envoy::*;
use harness::redis::Redis;
use harness::rls::{rule, unique, RlsPeer};
use harness::{send, Request, Upstream};
use levee::backend::rls::*;
use levee::backend::rls::{METHOD as RLS_METHOD, SERVICE as RLS_SERVICE};
use levee::backend::Message;
use serde_json::json;
use std::time::{Duration, Instant};

/// Envoy with two listeners: `native` runs Envoy's rate limit filter against the peer in front
/// of `upstream` (descriptor `("levee_limit", "api"), ("key", <x-key>)`); `grpc` is a gRPC-Web
/// front to the peer for calls made with levee's codec.
fn rate_limit_envoy(peer: &RlsPeer, upstream: &Upstream) -> RawEnvoy {
    let ratelimit = json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": "levee",
            "failure_mode_deny": false,
            "timeout": "1s",
            "rate_limit_service": {
                "grpc_service": { "envoy_grpc": { "cluster_name": "ratelimit" } },
                "transport_api_version": "V3",
            },
        },
    });
    let limited = json!({
        "match": { "prefix": "/" },
        "route": {
            "cluster": "upstream",
            "rate_limits": [{ "actions": [
                { "generic_key": { "descriptor_key": "levee_limit", "descriptor_value": "api" } },
                { "request_headers": { "header_name": "x-key", "descriptor_key": "key" } },
            ]}],
        },
    });
    let bootstrap = json!({
        "static_resources": {
            "listeners": [
                http_listener("native", vec![ratelimit], vec![limited]),
                http_listener("grpc", vec![grpc_web_filter()], vec![route("/", "ratelimit", "5s")]),
            ],
            "clusters": [h2_cluster("ratelimit", &[peer.port()], false), h1_cluster("upstream", upstream.port())],
        },
    });
    RawEnvoy::start(bootstrap, &["native", "grpc"])
}

fn should_rate_limit(
    envoy: &RawEnvoy,
    req: &RateLimitRequest,
) -> Result<RateLimitResponse, grpc_web::GrpcError> {
    let bytes = grpc_web::call(
        envoy.port(1),
        RLS_SERVICE,
        RLS_METHOD,
        &req.encode(),
        Duration::from_secs(5),
    )?;
    Ok(RateLimitResponse::decode(&bytes).unwrap())
}

fn descriptor(key: &str, limit: Option<LimitOverride>, hits: Option<u64>) -> Descriptor {
    let entry = |k: &str, v: &str| Entry {
        key: k.to_string(),
        value: v.to_string(),
    };
    Descriptor {
        entries: vec![entry("levee_limit", "orders"), entry("key", key)],
        limit,
        hits_addend: hits,
    }
}

#[test]
fn envoys_native_rate_limit_filter_gets_the_peers_decisions() {
    let redis = Redis::start();
    let peer = RlsPeer::start(
        &redis,
        &[rule(
            "levee",
            &[("levee_limit", Some("api")), ("key", None)],
            3,
            "HOUR",
        )],
    );
    let up = Upstream::start();
    let envoy = rate_limit_envoy(&peer, &up);
    let (a, b) = (unique("a"), unique("b"));

    let statuses: Vec<u16> = (0..5)
        .map(|_| send(envoy.port(0), &Request::get("/x").header("x-key", &a)).status)
        .collect();
    let other = send(envoy.port(0), &Request::get("/x").header("x-key", &b));

    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(envoy.stat("cluster.upstream.ratelimit.over_limit"), 2);
    assert_eq!(
        envoy.stat("cluster.upstream.ratelimit.ok"),
        4,
        "three for a, one for b"
    );
    assert_eq!(other.status, 200);
    assert_eq!(up.count(), 4, "denied requests never reach the upstream");
    let counters = peer.counters();
    let count_of = |k: &str| {
        counters
            .iter()
            .find(|(name, _)| name.contains(k))
            .map(|(_, v)| v.as_u64().unwrap())
    };
    assert_eq!(
        count_of(&a),
        Some(5),
        "hits over the limit are counted too: {counters:?}"
    );
    assert_eq!(count_of(&b), Some(1));
    let sent = peer.requests();
    assert_eq!(sent[0]["domain"], "levee");
    assert_eq!(
        sent[0]["descriptors"][0]["entries"][1],
        json!({ "key": "key", "value": a })
    );

    // levee's codec reads the same verdicts for the same descriptors (hits 0: look, don't count).
    let look = |key: &str| {
        let entry = |k: &str, v: &str| Entry {
            key: k.to_string(),
            value: v.to_string(),
        };
        let d = Descriptor {
            entries: vec![entry("levee_limit", "api"), entry("key", key)],
            limit: None,
            hits_addend: Some(0),
        };
        let req = RateLimitRequest {
            domain: "levee".into(),
            descriptors: vec![d],
            hits_addend: 0,
        };
        verdict(&should_rate_limit(&envoy, &req).unwrap(), 0).unwrap()
    };
    let (va, vb) = (look(&a), look(&b));
    assert_eq!((va.allowed, va.limit, va.remaining), (false, 3, 0));
    assert_eq!((vb.allowed, vb.limit, vb.remaining), (true, 3, 2));
    assert!(va.reset_ms > 0 && va.reset_ms <= 3_600_000);

    // The peer unreachable: Envoy's failure_mode_deny=false lets the request through.
    peer.set_fault(json!({ "grpc_status": "UNAVAILABLE" }));
    assert_eq!(
        send(envoy.port(0), &Request::get("/x").header("x-key", &a)).status,
        200
    );
    assert_eq!(envoy.stat("cluster.upstream.ratelimit.error"), 1);

    // An UNKNOWN verdict: Envoy's own filter lets the request through and counts it as ok
    // (levee's verdict() calls it a misconfiguration instead, for on_backend_error to decide).
    peer.set_fault(json!({ "overall_unknown": true }));
    let r = send(envoy.port(0), &Request::get("/x").header("x-key", &a));
    assert_eq!(r.status, 200);
    assert_eq!(envoy.stat("cluster.upstream.ratelimit.ok"), 5);
    assert_eq!(envoy.stat("cluster.upstream.ratelimit.error"), 1);
}

#[test]
fn the_rate_limit_peer_honours_overrides_hits_windows_and_domains() {
    let mut redis = Redis::start();
    let peer = RlsPeer::start(&redis, &[rule("levee", &[("unused", None)], 1, "SECOND")]);
    let up = Upstream::start();
    let envoy = rate_limit_envoy(&peer, &up);
    let key = unique("k");
    let per_hour = Some(LimitOverride {
        requests_per_unit: 2,
        unit: Unit::Hour,
    });
    let ask = |descriptors: Vec<Descriptor>, hits: u32, domain: &str| {
        should_rate_limit(
            &envoy,
            &RateLimitRequest {
                domain: domain.to_string(),
                descriptors,
                hits_addend: hits,
            },
        )
        .unwrap()
    };

    let first = ask(vec![descriptor(&key, per_hour, None)], 0, "levee");
    assert_eq!(first.overall_code, Code::Ok);
    let s = &first.statuses[0];
    assert_eq!(
        (s.code, s.limit_remaining),
        (Code::Ok, 1),
        "hits_addend 0 counts as 1"
    );
    assert_eq!(
        s.current_limit,
        Some(CurrentLimit {
            requests_per_unit: 2,
            unit: Unit::Hour,
            name: String::new()
        })
    );
    let reset = s.duration_until_reset.unwrap().seconds;
    assert!(
        (1..=3600).contains(&reset),
        "the window is aligned to the hour: {reset}"
    );

    // The descriptor's own hits_addend wins over the request's; over the limit still counts.
    let second = ask(
        vec![
            descriptor(&key, per_hour, Some(2)),
            descriptor(&unique("fresh"), per_hour, None),
        ],
        5,
        "levee",
    );
    assert_eq!(second.overall_code, Code::OverLimit);
    assert_eq!(
        (second.statuses[0].code, second.statuses[0].limit_remaining),
        (Code::OverLimit, 0)
    );
    assert_eq!(
        second.statuses[1].code,
        Code::OverLimit,
        "the request's hits_addend (5) applies"
    );
    let counted: Vec<u64> = peer
        .counters()
        .iter()
        .filter(|(k, _)| k.contains(&key))
        .map(|(_, v)| v.as_u64().unwrap())
        .collect();
    assert_eq!(counted, [3]);

    // levee's own descriptor: a binary key value travels hashed, and is counted like any other.
    let binary = [0u8, 255, 10];
    let d = limit_descriptor("orders", &binary, 2, Unit::Hour, 1);
    let v = verdict(&ask(vec![d.clone()], 1, "levee"), 0).unwrap();
    assert_eq!((v.allowed, v.limit, v.remaining), (true, 2, 1));
    let v = verdict(&ask(vec![d], 1, "levee"), 0).unwrap();
    assert_eq!((v.allowed, v.remaining), (true, 0));
    let sent = peer.requests().last().cloned().unwrap();
    assert_eq!(
        sent["descriptors"][0]["entries"][1]["value"],
        bounded_value(&binary).as_str()
    );

    // A domain the service does not know limits nothing and names no limit.
    let unknown = ask(vec![descriptor(&key, per_hour, None)], 1, "nobody");
    assert_eq!(unknown.overall_code, Code::Ok);
    assert_eq!(unknown.statuses.len(), 1);
    assert_eq!(unknown.statuses[0].current_limit, None);

    // Faults.
    peer.set_fault(json!({ "no_statuses": true }));
    let bare = ask(vec![descriptor(&unique("h"), per_hour, None)], 1, "levee");
    assert!(bare.statuses.is_empty());
    let header = |name: &str| {
        bare.response_headers_to_add
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.value.clone())
    };
    assert_eq!(header("X-RateLimit-Limit").as_deref(), Some("2, 2;w=3600"));
    assert_eq!(header("X-RateLimit-Remaining").as_deref(), Some("1"));
    assert!(header("X-RateLimit-Reset").is_some());

    peer.set_fault(json!({ "overall_unknown": true }));
    assert_eq!(
        ask(vec![descriptor(&key, per_hour, None)], 1, "levee").overall_code,
        Code::Unknown
    );

    peer.set_fault(json!({ "grpc_status": "UNAVAILABLE" }));
    let req = RateLimitRequest {
        domain: "levee".into(),
        descriptors: vec![descriptor(&key, per_hour, None)],
        hits_addend: 1,
    };
    assert_eq!(should_rate_limit(&envoy, &req).unwrap_err().code, 14);

    peer.set_fault(json!({ "delay_ms": 300 }));
    let started = Instant::now();
    assert!(should_rate_limit(&envoy, &req).is_ok());
    assert!(started.elapsed() >= Duration::from_millis(300));

    peer.set_fault(json!({}));
    assert_eq!(
        should_rate_limit(&envoy, &req).unwrap().overall_code,
        Code::OverLimit
    );

    // Redis down: the service fails the call (as envoyproxy/ratelimit does); back: it answers.
    redis.kill();
    let down = should_rate_limit(&envoy, &req).unwrap_err();
    assert!(down.code > 0, "{down:?}");
    redis.restart();
    let fresh = should_rate_limit(&envoy, &req).unwrap();
    assert_eq!(
        (fresh.overall_code, fresh.statuses[0].limit_remaining),
        (Code::Ok, 1),
        "an empty Redis counts from zero"
    );
}
