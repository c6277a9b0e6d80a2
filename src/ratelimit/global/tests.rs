//! The mesh-wide machine against a simulated rate limit service: several Envoys (each its own
//! shared store, with CAS conflicts injected) never admit more than the limit together, `exact`
//! admits exactly the limit, `reserve` stays within its under-admission bound while calling
//! the service about once per batch, and failures follow `on_backend_error`.

use super::pool::{self, Pool, Tuning};
use super::sim_tests::{burst, envoy, global, key, request, Envoy, Service, SEC, T0};
use super::{Asked, BackendFailure, Begin, Finish, GlobalMode, OnBackendError};
use crate::backend::rls::{Code, DescriptorStatus, HeaderValue, Misconfigured, RateLimitResponse};
use crate::store::hash::KeyHasher;
use crate::store::memory::MemoryStore;
#[test]
fn exact_admits_exactly_the_limit_mesh_wide_with_one_call_per_request() {
    let mut svc = Service::new(60 * SEC);
    let mut envoys: Vec<Envoy> = (0..2).map(|i| envoy(GlobalMode::Exact, 50, i)).collect();
    assert_eq!(burst(&mut envoys, &mut svc, 120), 50);
    assert_eq!(svc.calls, 120);
}

#[test]
fn reserve_never_admits_more_than_the_limit_and_stays_within_its_bound() {
    for (limit, envoys_n, service_counts_refused) in [
        (100, 2, true),
        (1000, 3, true),
        (1000, 2, false),
        (17, 4, true),
        (5000, 2, true),
    ] {
        let mut svc = Service::new(60 * SEC);
        svc.count_refused = service_counts_refused;
        let mut envoys: Vec<Envoy> = (0..envoys_n)
            .map(|i| envoy(GlobalMode::Reserve, limit, i + 1))
            .collect();
        let requests = limit * 2;
        let admitted = burst(&mut envoys, &mut svc, requests);
        let q_max = envoys[0].limit.tuning.q_max();
        assert!(admitted <= limit, "{admitted} > {limit}");
        let unused = limit - admitted;
        assert!(
            unused <= q_max * envoys_n as u32,
            "limit {limit}: {unused} unused > {q_max} × {envoys_n}"
        );
        let per_envoy: u32 = envoys.iter().map(|e| e.admitted).sum();
        assert_eq!(per_envoy, admitted);
        // Calls: a batch per ~q requests while the quota lasts, then none at all.
        let max_calls = (limit / q_max.max(1)) * 2 + 40 * envoys_n as u32;
        assert!(
            svc.calls <= max_calls,
            "limit {limit}: {} calls for {requests} requests (q_max {q_max})",
            svc.calls
        );
    }
}

#[test]
fn reserve_on_a_hot_key_calls_about_once_per_batch() {
    let mut svc = Service::new(60 * SEC);
    let mut envoys: Vec<Envoy> = (0..2)
        .map(|i| envoy(GlobalMode::Reserve, 10_000, i))
        .collect();
    // Well under the limit: q stays at q_max = 625.
    let admitted = burst(&mut envoys, &mut svc, 5_000);
    assert_eq!(admitted, 5_000);
    let q = envoys[0].limit.tuning.q_max();
    assert_eq!(q, 625);
    // Each refill tops the pool up from a quarter of q: about one call per 3q/4 requests.
    assert!(svc.calls <= 5_000 * 4 / (3 * q) + 4, "{} calls", svc.calls);
}

#[test]
fn a_window_the_service_refused_costs_no_more_calls_and_the_next_window_starts_afresh() {
    let mut svc = Service::new(60 * SEC);
    let mut e = envoy(GlobalMode::Reserve, 20, 9);
    let admitted = (0..40)
        .filter(|i| request(&mut e, &mut svc, T0 + i * SEC / 10))
        .count();
    assert!((19..=20).contains(&admitted), "{admitted}");
    let calls = svc.calls;
    assert!(!request(&mut e, &mut svc, T0 + 30 * SEC));
    assert_eq!(svc.calls, calls, "refused locally until the window resets");
    assert!(request(&mut e, &mut svc, T0 + 60 * SEC));
}

#[test]
fn a_refused_batch_asks_again_for_one_unit() {
    // Limitador does not count refused hits: the single unit is still granted.
    let mut svc = Service::new(60 * SEC);
    svc.count_refused = false;
    let e = envoy(GlobalMode::Reserve, 64, 3);
    e.store.conflict_probability(1, 0);
    let k = key();
    // Another Envoy took all but one unit.
    svc.counts.insert(("hot".into(), T0 / (60 * SEC)), 63);
    let Begin::Ask(asked) = e.limit.begin(&e.store, k, T0) else {
        panic!("asks")
    };
    assert_eq!(asked.hits, 4, "q_max for 64");
    let a = svc.answer(&e.limit, b"hot", asked.hits, T0);
    let (Finish::Ask(one), None) = e.limit.finish(&e.store, k, T0, asked, Ok(&a)) else {
        panic!("asks again")
    };
    assert_eq!(one.hits, 1);
    let a = svc.answer(&e.limit, b"hot", 1, T0);
    assert!(matches!(
        e.limit.finish(&e.store, k, T0, one, Ok(&a)).0,
        Finish::Admit {
            commit_local: true,
            ..
        }
    ));
}

#[test]
fn backend_failures_follow_on_backend_error() {
    let k = key();
    for (policy, want) in [
        (
            OnBackendError::Local,
            Finish::Admit {
                view: None,
                commit_local: true,
            },
        ),
        (
            OnBackendError::Allow,
            Finish::Admit {
                view: None,
                commit_local: false,
            },
        ),
        (OnBackendError::Deny, Finish::Refuse { view: None }),
    ] {
        for mode in [GlobalMode::Exact, GlobalMode::Reserve] {
            let store = MemoryStore::new();
            let g = global(mode, 100, policy);
            g.pools.ensure_created(&store).unwrap();
            let Begin::Ask(asked) = g.begin(&store, k, T0) else {
                panic!("asks")
            };
            let (got, failure) = g.finish(&store, k, T0, asked, Err(BackendFailure::Unreachable));
            assert_eq!((got, failure), (want, Some(BackendFailure::Unreachable)));
            if mode == GlobalMode::Reserve {
                // The lease was released: the next request may ask at once.
                let Begin::Ask(again) = g.begin(&store, k, T0) else {
                    panic!("asks")
                };
                assert!(again.lease && again.hits > 1);
            }
        }
    }
}

#[test]
fn unknown_codes_missing_limits_and_unknown_domains_are_backend_errors() {
    let store = MemoryStore::new();
    let k = key();
    let g = global(GlobalMode::Exact, 10, OnBackendError::Deny);
    let asked = Asked {
        hits: 1,
        lease: false,
        waiting: true,
        at: T0,
    };
    let unknown = RateLimitResponse {
        overall_code: Code::Unknown,
        ..RateLimitResponse::default()
    };
    let no_limit = RateLimitResponse {
        overall_code: Code::Ok,
        statuses: vec![DescriptorStatus {
            code: Code::Ok,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: None,
            quota: None,
        }],
        ..RateLimitResponse::default()
    };
    for (answer, why) in [
        (unknown, Misconfigured::UnknownCode),
        (no_limit, Misconfigured::NoCurrentLimit),
        (
            RateLimitResponse {
                overall_code: Code::Ok,
                ..RateLimitResponse::default()
            },
            Misconfigured::NoStatus,
        ),
    ] {
        assert_eq!(
            g.finish(&store, k, T0, asked, Ok(&answer)),
            (
                Finish::Refuse { view: None },
                Some(BackendFailure::Misconfigured(why))
            )
        );
    }
}

#[test]
fn a_service_without_statuses_is_read_from_its_draft_03_headers() {
    let store = MemoryStore::new();
    let g = global(GlobalMode::Exact, 10, OnBackendError::Deny);
    let asked = Asked {
        hits: 1,
        lease: false,
        waiting: true,
        at: T0 + 20 * SEC,
    };
    let header = |k: &str, v: &str| HeaderValue {
        key: k.into(),
        value: v.into(),
        raw_value: Vec::new(),
    };
    let answer = RateLimitResponse {
        overall_code: Code::OverLimit,
        response_headers_to_add: vec![
            header("X-RateLimit-Limit", "10"),
            header("X-RateLimit-Remaining", "0"),
            header("X-RateLimit-Reset", "40"),
        ],
        ..RateLimitResponse::default()
    };
    let (finish, _) = g.finish(&store, key(), T0 + 20 * SEC, asked, Ok(&answer));
    let Finish::Refuse { view: Some(view) } = finish else {
        panic!("{finish:?}")
    };
    assert_eq!((view.limit, view.reset_at), (10, T0 + 60 * SEC));
    let e = view.evaluation(T0 + 20 * SEC, true);
    assert_eq!((e.remaining, e.retry_after_ns), (0, 40 * SEC));
}

#[test]
fn a_flood_of_keys_does_not_grow_shared_data() {
    let store = MemoryStore::new();
    let g = global(GlobalMode::Reserve, 100, OnBackendError::Local);
    g.pools.ensure_created(&store).unwrap();
    let keys = store.key_count();
    let hasher = KeyHasher::new([3; 16]);
    let mut svc = Service::new(60 * SEC);
    for i in 0..2_000u32 {
        let k = hasher.hash(b"api", &i.to_le_bytes());
        if let Begin::Ask(asked) = g.begin(&store, k, T0) {
            let a = svc.answer(&g, &i.to_le_bytes(), asked.hits, T0);
            g.finish(&store, k, T0, asked, Ok(&a));
        }
    }
    assert_eq!(store.key_count(), keys);
    assert!(store.total_bytes() as u64 <= g.pools.memory_bound(pool::POOL_BYTES));
}

#[test]
fn pools_round_trip_and_q_shrinks_with_the_remaining_quota() {
    let p = Pool {
        window_end: 5,
        units: 6,
        q: 7,
        asking_until: 8,
        refused_until: 9,
        service_limit: 10,
        service_remaining: 11,
    };
    assert_eq!(Pool::decode(&p.encode()), p);
    assert_eq!(Pool::decode(b"junk"), Pool::default());
    let t = Tuning {
        limit: 1000,
        window_ns: 60 * SEC,
        ask_timeout_ns: SEC,
    };
    assert_eq!(t.q_max(), 62);
    assert_eq!(t.q_after(1000), 62);
    assert_eq!(t.q_after(40), 10);
    assert_eq!(t.q_after(3), 1);
    // Units expire with their window.
    let (spend, _) = pool::spend(
        Some(Pool {
            window_end: T0,
            units: 5,
            q: 8,
            ..Pool::default()
        }),
        &t,
        T0,
    );
    assert!(matches!(
        spend,
        pool::Spend::Ask {
            hits: 62,
            lease: true
        }
    ));
}

#[test]
fn units_never_outlive_the_service_window() {
    // Aligned services end at the minute; a service counting from its first hit may end sooner.
    assert_eq!(
        pool::window_end(T0 + 59 * SEC + SEC / 2, 1_000, 60 * SEC),
        T0 + 60 * SEC
    );
    assert_eq!(
        pool::window_end(T0 + 10 * SEC, 5_000, 60 * SEC),
        T0 + 15 * SEC
    );
    assert_eq!(pool::window_end(T0 + 10 * SEC, 0, 60 * SEC), T0 + 60 * SEC);
}

#[test]
fn a_configured_global_limit_takes_its_backend_domain_window_and_policy() {
    let doc = serde_json::json!({
        "backends": { "limits": { "rls": { "cluster": "ratelimit", "domain": "edge", "timeout": "20ms" } } },
        "rate_limits": [
            { "name": "per-key", "key": ["header:x-api-key"], "algorithm": "fixed_window",
              "limit": 300, "window": "1m",
              "global": { "backend": "limits", "mode": "exact", "on_backend_error": "deny" } },
            { "name": "local-only", "algorithm": "fixed_window", "limit": 3, "window": "1m" }
        ]
    });
    let cfg = crate::config::parse(doc.to_string().as_bytes()).unwrap();
    let g = super::GlobalLimit::from_config(&cfg.rate_limits[0], &cfg.backends, 64).unwrap();
    assert_eq!((g.domain.as_str(), g.tuning.limit), ("edge", 300));
    assert_eq!(
        (g.mode, g.on_backend_error),
        (GlobalMode::Exact, OnBackendError::Deny)
    );
    assert_eq!(g.tuning.ask_timeout_ns, 40_000_000);
    let req = g.request(b"k1", 1);
    assert_eq!(req.descriptors[0].entries[0].value, "per-key");
    assert!(super::GlobalLimit::from_config(&cfg.rate_limits[1], &cfg.backends, 64).is_none());
}

#[test]
fn a_key_of_one_part_is_sent_as_its_value_and_any_other_key_whole() {
    use super::limit::service_key;
    assert_eq!(service_key(b"\x01\x00\x00\x00\x02k1"), b"k1");
    let two = b"\x01\x00\x00\x00\x01a\x01\x00\x00\x00\x01b";
    assert_eq!(service_key(two), two);
    assert_eq!(service_key(b"\x00"), b"\x00");
    assert_eq!(service_key(b""), b"");
}
