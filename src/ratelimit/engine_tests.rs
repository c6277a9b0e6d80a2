//! The engine over a shared store: several limits stay exact when workers race and the store
//! injects CAS conflicts, and retries that run out end in the limit's `on_internal_error`.

use std::cell::RefCell;
use std::sync::Barrier;
use std::thread;

use serde_json::json;

use super::algorithm;
use super::engine::{Check, LimitRequest, RateLimiter, Verdict};
use crate::config::{self, ClientIpConfig, LeveeConfig};
use crate::metrics::{Event, GlobalEvent, Recorder};
use crate::request::fake::FakeRequest;
use crate::request::keys::extract_key;
use crate::store::hash::KeyHasher;
use crate::store::memory::MemoryStore;
use crate::store::slots::Eviction;
use crate::store::{Cas, ReadError, SharedStore, Versioned, WriteError, MAX_CAS_ATTEMPTS};

const NOW: u64 = 1_000 * 1_000_000_000;

fn limiter(doc: serde_json::Value, store: &MemoryStore) -> (LeveeConfig, RateLimiter) {
    let cfg = config::parse(doc.to_string().as_bytes()).unwrap();
    let limiter = RateLimiter::new(&cfg.rate_limits, 64);
    for limit in &limiter.limits {
        limit.table.ensure_created(store).unwrap();
    }
    (cfg, limiter)
}

fn request() -> FakeRequest {
    FakeRequest::get("/").source("10.0.0.1:5000")
}

/// What limit `index` would report as remaining for one more request now.
fn remaining(
    limiter: &RateLimiter,
    store: &MemoryStore,
    hasher: &KeyHasher,
    client_ip: &ClientIpConfig,
    index: usize,
) -> u64 {
    let limit = &limiter.limits[index];
    let mut key = Vec::new();
    extract_key(&limit.config.key, client_ip, &request(), &mut key);
    let hash = hasher.hash(limit.config.name.as_bytes(), &key);
    let lookup = limit
        .table
        .lookup(store, hash, NOW, Eviction::NeverLive)
        .unwrap();
    let state = lookup.state().unwrap_or_default().to_vec();
    algorithm::evaluate(&limit.params, &state, NOW).remaining
}

#[test]
fn racing_workers_under_injected_conflicts_admit_exactly_the_tightest_limit_and_refund_the_rest() {
    for algorithm in [
        "fixed_window",
        "sliding_window_counter",
        "sliding_window_log",
    ] {
        let store = MemoryStore::new();
        let doc = json!({ "rate_limits": [
            { "name": "wide", "algorithm": algorithm, "limit": 40, "window": "1h", "key": ["path"] },
            { "name": "tight", "algorithm": algorithm, "limit": 25, "window": "1h", "key": ["path"] },
        ]});
        let (cfg, limiter) = limiter(doc, &store);
        let hasher = KeyHasher::new([1; 16]);
        store.conflict_probability(3, 200_000);
        let barrier = Barrier::new(4);
        let results: Vec<(usize, Recorder)> = thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let (store, limiter, hasher, cfg, barrier) =
                        (&store, &limiter, &hasher, &cfg, &barrier);
                    s.spawn(move || {
                        let mut metrics = Recorder::default();
                        barrier.wait();
                        let admitted = (0..20)
                            .filter(|_| {
                                let check = limiter.check(
                                    LimitRequest {
                                        store,
                                        hasher,
                                        client_ip: &cfg.client_ip,
                                        req: &request(),
                                        now: NOW,
                                    },
                                    &mut metrics,
                                );
                                check.verdict == Verdict::Admit
                            })
                            .count();
                        (admitted, metrics)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let internal = Event::Global(GlobalEvent::InternalError);
        assert!(
            results.iter().all(|(_, m)| m.count_of(internal) == 0),
            "{algorithm}"
        );
        let admitted: usize = results.iter().map(|(n, _)| n).sum();
        assert_eq!(
            admitted, 25,
            "{algorithm}: the tight limit admits exactly its limit"
        );
        store.conflict_probability(0, 0);
        // The wide limit counted the 25 admitted requests and nothing of the 55 rejected.
        assert_eq!(
            remaining(&limiter, &store, &hasher, &cfg.client_ip, 0),
            40 - 25 - 1,
            "{algorithm}"
        );
        assert_eq!(
            remaining(&limiter, &store, &hasher, &cfg.client_ip, 1),
            0,
            "{algorithm}"
        );
        assert!(store.stats().injected_conflicts > 0);
    }
}

/// `request()` checked against `limiter` at `NOW`.
fn check_at_now(
    limiter: &RateLimiter,
    store: &MemoryStore,
    cfg: &LeveeConfig,
    metrics: &mut Recorder,
) -> Check {
    let hasher = KeyHasher::new([1; 16]);
    let request = LimitRequest {
        store,
        hasher: &hasher,
        client_ip: &cfg.client_ip,
        req: &request(),
        now: NOW,
    };
    limiter.check(request, metrics)
}

fn one_limit(on_internal_error: &str, store: &MemoryStore) -> (LeveeConfig, RateLimiter) {
    let doc = json!({ "rate_limits": [{
        "name": "api", "algorithm": "fixed_window", "limit": 5, "window": "1m",
        "on_internal_error": on_internal_error,
    }]});
    limiter(doc, store)
}

#[test]
fn conflicts_below_the_bound_still_admit_and_count_once() {
    let store = MemoryStore::new();
    let (cfg, limiter) = one_limit("deny", &store);
    let mut metrics = Recorder::default();
    store.fail_next_cas(MAX_CAS_ATTEMPTS - 1);
    let check = check_at_now(&limiter, &store, &cfg, &mut metrics);
    assert_eq!(check.verdict, Verdict::Admit);
    assert_eq!(check.headline.map(|h| h.evaluation.remaining), Some(4));
    assert_eq!(
        metrics.count_of(Event::Global(GlobalEvent::InternalError)),
        0
    );
}

#[test]
fn exhausted_retries_reject_when_the_limit_says_deny() {
    let store = MemoryStore::new();
    let (cfg, limiter) = one_limit("deny", &store);
    let mut metrics = Recorder::default();
    store.fail_next_cas(MAX_CAS_ATTEMPTS);
    let check = check_at_now(&limiter, &store, &cfg, &mut metrics);
    assert_eq!(
        check.verdict,
        Verdict::Reject {
            limit: 0,
            retry_after_ns: 1_000_000_000
        }
    );
    assert_eq!(
        metrics.count_of(Event::Global(GlobalEvent::InternalError)),
        1
    );
}

#[test]
fn exhausted_retries_admit_without_counting_when_the_limit_says_allow() {
    let store = MemoryStore::new();
    let (cfg, limiter) = one_limit("allow", &store);
    let mut metrics = Recorder::default();
    store.fail_next_cas(MAX_CAS_ATTEMPTS);
    let check = check_at_now(&limiter, &store, &cfg, &mut metrics);
    assert_eq!(check.verdict, Verdict::Admit);
    assert_eq!(check.headline, None);
    assert_eq!(
        metrics.count_of(Event::Global(GlobalEvent::InternalError)),
        1
    );
    // Nothing was written: the next request sees the full limit.
    let check = check_at_now(&limiter, &store, &cfg, &mut metrics);
    assert_eq!(check.headline.map(|h| h.evaluation.remaining), Some(4));
}

/// A store that lets another worker's whole request run just before the first write to a key
/// with `prefix`: the race between one request's evaluation and its commit, made certain.
struct RaceBeforeWrite<'a> {
    inner: &'a MemoryStore,
    prefix: &'static str,
    other: RefCell<Option<Box<dyn FnOnce() + 'a>>>,
}

impl SharedStore for RaceBeforeWrite<'_> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError> {
        if key.starts_with(self.prefix) {
            if let Some(other) = self.other.borrow_mut().take() {
                other();
            }
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_limit_that_turns_to_reject_at_commit_refunds_the_limits_already_committed() {
    let store = MemoryStore::new();
    let doc = json!({ "rate_limits": [
        { "name": "wide", "algorithm": "fixed_window", "limit": 10, "window": "1h", "key": ["path"] },
        { "name": "tight", "algorithm": "fixed_window", "limit": 1, "window": "1h", "key": ["path"] },
    ]});
    let (cfg, limiter) = limiter(doc, &store);
    let hasher = KeyHasher::new([1; 16]);
    let racing = RaceBeforeWrite {
        inner: &store,
        prefix: "levee:v1:rl:tight:",
        other: RefCell::new(Some(Box::new(|| {
            let mut metrics = Recorder::default();
            let check = check_at_now(&limiter, &store, &cfg, &mut metrics);
            assert_eq!(
                check.verdict,
                Verdict::Admit,
                "the other worker takes the last one"
            );
        }))),
    };
    let mut metrics = Recorder::default();
    let check = limiter.check(
        LimitRequest {
            store: &racing,
            hasher: &hasher,
            client_ip: &cfg.client_ip,
            req: &request(),
            now: NOW,
        },
        &mut metrics,
    );
    assert!(matches!(check.verdict, Verdict::Reject { limit: 1, .. }));
    assert_eq!(
        metrics.count_of(Event::Global(GlobalEvent::InternalError)),
        0
    );
    // Only the other worker's request is left on the wide limit.
    assert_eq!(
        remaining(&limiter, &store, &hasher, &cfg.client_ip, 0),
        10 - 1 - 1
    );
}
