//! Mesh-wide rate limits through the worker: the request's flow asks the rate limit service
//! with a real `ShouldRateLimit` message, and resumes on its answer (pass with the service's
//! headers, 429, or `on_backend_error` when the service fails or cannot be reached).

use serde_json::json;

use crate::backend::rls::{
    Code, CurrentLimit, DescriptorStatus, ProtoDuration, RateLimitRequest, RateLimitResponse, Unit,
};
use crate::backend::wire::Message;
use crate::metrics::{BackendEvent, Event};
use crate::request::fake::FakeRequest;
use crate::store::MemoryStore;

use super::super::fake_host::{Call, FakeHost};
use super::super::Action;
use super::{open, replies, worker, T0};

fn config(mode: &str, on_error: &str) -> serde_json::Value {
    json!({
        "backends": { "limits": { "rls": { "cluster": "ratelimit", "domain": "levee", "timeout": "20ms" } } },
        "rate_limits": [{ "name": "api", "key": ["header:x-api-key"], "algorithm": "fixed_window",
            "limit": 5, "window": "1m",
            "global": { "backend": "limits", "mode": mode, "on_backend_error": on_error } }]
    })
}

fn answer(code: Code, remaining: u32) -> Vec<u8> {
    RateLimitResponse {
        overall_code: code,
        statuses: vec![DescriptorStatus {
            code,
            current_limit: Some(CurrentLimit {
                requests_per_unit: 5,
                unit: Unit::Minute,
                name: String::new(),
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(ProtoDuration {
                seconds: 20,
                nanos: 0,
            }),
            quota: None,
        }],
        ..RateLimitResponse::default()
    }
    .encode()
}

/// The gRPC calls sent since the last look: (token, the request message).
fn sent(host: &mut FakeHost<'_>) -> Vec<(u32, RateLimitRequest)> {
    host.take_calls()
        .into_iter()
        .filter_map(|(_, c)| match c {
            Call::Grpc {
                token,
                cluster,
                service,
                method,
                message,
                ..
            } => {
                assert_eq!(
                    (cluster.as_str(), service.as_str(), method.as_str()),
                    ("ratelimit", crate::backend::rls::SERVICE, "ShouldRateLimit")
                );
                Some((token, RateLimitRequest::decode(&message).unwrap()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn exact_asks_the_service_and_passes_or_refuses_on_its_answer() {
    let store = MemoryStore::new();
    let w = worker(config("exact", "deny"), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("ratelimit".into());
    let req = FakeRequest::get("/").header("x-api-key", "k1");

    let (_s, action) = open(&w, &mut host, 2, &req, true);
    assert_eq!(action, Action::Pause);
    let calls = sent(&mut host);
    let [(token, call)] = calls.as_slice() else {
        panic!("{calls:?}")
    };
    assert_eq!(call.domain, "levee");
    let d = &call.descriptors[0];
    assert_eq!(
        (d.entries[0].value.as_str(), d.entries[1].value.as_str()),
        ("api", "k1")
    );
    assert_eq!(d.hits_addend, Some(1));
    host.grpc_answer = answer(Code::Ok, 3);
    let size = host.grpc_answer.len();
    w.on_grpc_response(&mut host, *token, 0, size);
    let calls = host.take_calls();
    assert!(
        calls
            .iter()
            .any(|(id, c)| *id == 2 && matches!(c, Call::Resume)),
        "{calls:?}"
    );

    let (_s, _) = open(&w, &mut host, 3, &req, true);
    let [(token, _)] = sent(&mut host)[..] else {
        panic!("one call")
    };
    host.grpc_answer = answer(Code::OverLimit, 0);
    let size = host.grpc_answer.len();
    w.on_grpc_response(&mut host, token, 0, size);
    assert_eq!(
        replies(&mut host),
        vec![(3, 429, "levee_rate_limited", false)]
    );
}

#[test]
fn an_unreachable_service_is_decided_by_on_backend_error() {
    for (policy, status, decision) in [
        ("deny", Some(429), BackendEvent::DecisionDeny),
        ("local", None, BackendEvent::DecisionLocal),
        ("allow", None, BackendEvent::DecisionAllow),
    ] {
        let store = MemoryStore::new();
        let w = worker(config("reserve", policy), &store);
        let mut host = FakeHost::new(&store, T0);
        // No such cluster: Envoy refuses the dispatch, answered at once as UNAVAILABLE.
        let req = FakeRequest::get("/").header("x-api-key", "k1");
        let (_s, action) = open(&w, &mut host, 2, &req, true);
        let what = Event::Backend {
            backend: 0,
            what: decision,
        };
        assert_eq!(host.metrics.count_of(what), 1, "{policy}");
        let got = replies(&mut host);
        match status {
            Some(s) => assert_eq!(got.first().map(|r| r.1), Some(s), "{policy}"),
            None => {
                assert!(got.is_empty(), "{policy}: {got:?}");
                assert_eq!(action, Action::Continue, "{policy}");
            }
        }
    }
}

#[test]
fn a_reservation_granted_by_the_service_is_counted_as_a_refill() {
    let store = MemoryStore::new();
    let w = worker(config("reserve", "deny"), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("ratelimit".into());
    let req = FakeRequest::get("/").header("x-api-key", "k1");
    let (_s, _) = open(&w, &mut host, 2, &req, true);
    let [(token, ref call)] = sent(&mut host)[..] else {
        panic!("one call")
    };
    assert_eq!(
        call.descriptors[0].hits_addend,
        Some(1),
        "q_max for a limit of 5"
    );
    host.grpc_answer = answer(Code::Ok, 4);
    let size = host.grpc_answer.len();
    w.on_grpc_response(&mut host, token, 0, size);
    let refill = Event::Backend {
        backend: 0,
        what: BackendEvent::ReserveRefill,
    };
    assert_eq!(host.metrics.count_of(refill), 1);
}
