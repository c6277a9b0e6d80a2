//! The local tier and the service together, per request: the local tier refuses a flood
//! without a call and commits only what the service admitted; two Envoys in `exact` admit
//! exactly the limit; `reserve` answers most requests without a call; a service that cannot
//! be asked leaves the decision to `on_backend_error`.

use serde_json::json;

use super::sim_tests::{Service, SEC, T0};
use super::{BackendFailure, Prepared};
use crate::config::{self, LeveeConfig};
use crate::metrics::Recorder;
use crate::ratelimit::engine::{LimitRequest, RateLimiter, Verdict};
use crate::request::fake::FakeRequest;
use crate::store::hash::KeyHasher;
use crate::store::memory::MemoryStore;

struct Envoy {
    cfg: LeveeConfig,
    limiter: RateLimiter,
    store: MemoryStore,
}

fn envoy(mode: &str, on_error: &str, limit: u32, seed: u64) -> Envoy {
    let doc = json!({
        "backends": { "limits": { "rls": { "cluster": "ratelimit", "domain": "levee", "timeout": "20ms" } } },
        "rate_limits": [{ "name": "api", "key": ["header:x-api-key"], "algorithm": "fixed_window",
            "limit": limit, "window": "1m",
            "global": { "backend": "limits", "mode": mode, "on_backend_error": on_error } }]
    });
    let cfg = config::parse(doc.to_string().as_bytes()).unwrap();
    let limiter = RateLimiter::with_backends(&cfg.rate_limits, &cfg.backends, 64);
    let store = MemoryStore::new();
    for l in &limiter.limits {
        l.table.ensure_created(&store).unwrap();
        l.global
            .as_ref()
            .unwrap()
            .pools
            .ensure_created(&store)
            .unwrap();
    }
    store.conflict_probability(seed, 100_000);
    Envoy {
        cfg,
        limiter,
        store,
    }
}

/// One request; `service: None` = the service cannot be reached. True when admitted.
fn request(e: &Envoy, service: Option<&mut Service>, now: u64) -> bool {
    let hasher = KeyHasher::new([5; 16]);
    let req = FakeRequest::get("/").header("x-api-key", "hot");
    let mut metrics = Recorder::default();
    let mut service = service;
    let ip = &e.cfg.client_ip;
    let mut step = e.limiter.prepare(
        LimitRequest {
            store: &e.store,
            hasher: &hasher,
            client_ip: ip,
            req: &req,
            now,
        },
        &mut metrics,
    );
    loop {
        let (deferred, asks, background) = match step {
            Prepared::Decided { check, background } => {
                for ask in &background {
                    let answer = match service.as_deref_mut() {
                        Some(s) => Ok(s.serve(&ask.request, now)),
                        None => Err(BackendFailure::Unreachable),
                    };
                    e.limiter.refilled(
                        &e.store,
                        ask,
                        answer.as_ref().map_err(|f| *f),
                        now,
                        &mut metrics,
                    );
                }
                return !matches!(check.verdict, Verdict::Reject { .. });
            }
            Prepared::Remote {
                deferred,
                asks,
                background,
            } => (deferred, asks, background),
        };
        assert!(background.is_empty());
        let answers: Vec<_> = asks
            .iter()
            .map(|a| match service.as_deref_mut() {
                Some(s) => Ok(s.serve(&a.request, now)),
                None => Err(BackendFailure::Unreachable),
            })
            .collect();
        step = e
            .limiter
            .resume(&e.store, deferred, &asks, &answers, now, &mut metrics);
    }
}

#[test]
fn the_local_tier_refuses_a_flood_without_calls_and_counts_only_admitted_requests() {
    let mut svc = Service::new(60 * SEC);
    let e = envoy("exact", "local", 30, 1);
    let admitted = (0..100)
        .filter(|i| request(&e, Some(&mut svc), T0 + i * 1_000_000))
        .count();
    assert_eq!(admitted, 30);
    assert_eq!(svc.calls, 30, "refused by the local tier without a call");
}

#[test]
fn two_envoys_in_exact_mode_admit_exactly_the_limit_and_a_refusal_commits_nothing_locally() {
    let mut svc = Service::new(60 * SEC);
    let (a, b) = (
        envoy("exact", "local", 40, 2),
        envoy("exact", "local", 40, 3),
    );
    let admitted = (0..120)
        .filter(|i| {
            let e = if i % 2 == 0 { &a } else { &b };
            request(e, Some(&mut svc), T0 + i * 1_000_000)
        })
        .count();
    assert_eq!(admitted, 40);
    // Each Envoy's local tier counted only its 20 admissions: once the service is gone, the
    // local tier alone admits the rest of its own limit.
    let local = (0..40).filter(|i| request(&a, None, T0 + SEC + i)).count();
    assert_eq!(local, 20);
}

#[test]
fn reserve_mode_answers_most_requests_without_a_call_and_never_over_admits() {
    let mut svc = Service::new(60 * SEC);
    let (a, b) = (
        envoy("reserve", "local", 1000, 4),
        envoy("reserve", "local", 1000, 5),
    );
    let admitted = (0..1600)
        .filter(|i| {
            let e = if i % 2 == 0 { &a } else { &b };
            request(e, Some(&mut svc), T0 + i * 1_000_000)
        })
        .count();
    assert!((1000 - 2 * 62..=1000).contains(&admitted), "{admitted}");
    eprintln!(
        "reserve: {admitted} admitted, {} calls for 1600 requests",
        svc.calls
    );
    assert!(svc.calls < 1600 / 10, "{} calls", svc.calls);
}

#[test]
fn an_unreachable_service_leaves_the_decision_to_on_backend_error() {
    for (policy, admitted) in [("local", 5), ("allow", 12), ("deny", 0)] {
        for mode in ["exact", "reserve"] {
            let e = envoy(mode, policy, 5, 6);
            let n = (0..12).filter(|i| request(&e, None, T0 + i)).count();
            assert_eq!(n, admitted, "{mode} {policy}");
        }
    }
}
