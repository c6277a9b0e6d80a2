//! A simulated rate limit service with envoyproxy/ratelimit's semantics, and Envoys that
//! drive the mesh-wide machine against it the way the request path will: spend or ask, wait
//! for the answer, send refills ahead of need and fold their answers in later.

use std::collections::{HashMap, VecDeque};

use super::{Asked, Begin, Finish, GlobalLimit, GlobalMode, OnBackendError};
use crate::backend::rls::{
    Code, CurrentLimit, DescriptorStatus, ProtoDuration, RateLimitRequest, RateLimitResponse, Unit,
};
use crate::store::hash::{KeyHash, KeyHasher};
use crate::store::memory::MemoryStore;

pub const SEC: u64 = 1_000_000_000;
/// 10:00:00 on some day: a minute starts here.
pub const T0: u64 = 1_800_000_000 * SEC;

/// envoyproxy/ratelimit's semantics: fixed windows aligned to the unit, `hits_addend` counted
/// even when over the limit (unless `count_refused` is off, as in Limitador).
pub struct Service {
    window_ns: u64,
    pub count_refused: bool,
    pub counts: HashMap<(String, u64), u64>,
    pub calls: u32,
}

impl Service {
    pub fn new(window_ns: u64) -> Self {
        Self {
            window_ns,
            count_refused: true,
            counts: HashMap::new(),
            calls: 0,
        }
    }

    pub fn answer(
        &mut self,
        limit: &GlobalLimit,
        key: &[u8],
        hits: u32,
        now: u64,
    ) -> RateLimitResponse {
        self.serve(&limit.request(key, hits), now)
    }

    /// The answer to `req` at `now`.
    pub fn serve(&mut self, req: &RateLimitRequest, now: u64) -> RateLimitResponse {
        self.calls += 1;
        let d = &req.descriptors[0];
        let cap = u64::from(d.limit.as_ref().map_or(0, |l| l.requests_per_unit));
        let window = now / self.window_ns;
        let count = self
            .counts
            .entry((d.entries[1].value.clone(), window))
            .or_default();
        let hits = d.hits_addend.unwrap_or(1);
        let ok = *count + hits <= cap;
        if ok || self.count_refused {
            *count += hits;
        }
        let reset_ns = (window + 1) * self.window_ns - now;
        let code = if ok { Code::Ok } else { Code::OverLimit };
        RateLimitResponse {
            overall_code: code,
            statuses: vec![DescriptorStatus {
                code,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: u32::try_from(cap).unwrap(),
                    unit: Unit::Minute,
                    name: String::new(),
                }),
                limit_remaining: u32::try_from(cap.saturating_sub(*count)).unwrap(),
                duration_until_reset: Some(ProtoDuration {
                    seconds: i64::try_from(reset_ns.div_ceil(SEC)).unwrap(),
                    nanos: 0,
                }),
                quota: None,
            }],
            ..RateLimitResponse::default()
        }
    }
}

pub fn global(mode: GlobalMode, limit: u32, on_error: OnBackendError) -> GlobalLimit {
    GlobalLimit::new("api", limit, 60, mode, on_error, "levee", SEC / 50, 64).unwrap()
}

pub struct Envoy {
    pub store: MemoryStore,
    pub limit: GlobalLimit,
    /// Refills sent ahead of need, answered after a number of further requests.
    pub background: VecDeque<(u32, Asked)>,
    pub admitted: u32,
}

pub fn envoy(mode: GlobalMode, limit: u32, seed: u64) -> Envoy {
    let store = MemoryStore::new();
    let limit = global(mode, limit, OnBackendError::Local);
    limit.pools.ensure_created(&store).unwrap();
    store.conflict_probability(seed, 150_000);
    Envoy {
        store,
        limit,
        background: VecDeque::new(),
        admitted: 0,
    }
}

pub fn key() -> KeyHash {
    KeyHasher::new([7; 16]).hash(b"api", b"hot")
}

/// One request through `e` at `now`: true when admitted.
pub fn request(e: &mut Envoy, svc: &mut Service, now: u64) -> bool {
    let k = key();
    // Answer the background refills that are due.
    for entry in e.background.iter_mut() {
        entry.0 = entry.0.saturating_sub(1);
    }
    while e.background.front().is_some_and(|(due, _)| *due == 0) {
        let Some((_, asked)) = e.background.pop_front() else {
            break;
        };
        let a = svc.answer(&e.limit, b"hot", asked.hits, now);
        e.limit.finish(&e.store, k, now, asked, Ok(&a));
    }
    let mut step = match e.limit.begin(&e.store, k, now) {
        Begin::Admit { refill, .. } => {
            if let Some(asked) = refill {
                e.background.push_back((3, asked));
            }
            e.admitted += 1;
            return true;
        }
        Begin::Refuse { .. } => return false,
        Begin::Fallback(_) => panic!("the store does not fail here"),
        Begin::Ask(asked) => asked,
    };
    loop {
        let a = svc.answer(&e.limit, b"hot", step.hits, now);
        match e.limit.finish(&e.store, k, now, step, Ok(&a)).0 {
            Finish::Admit { .. } => {
                e.admitted += 1;
                return true;
            }
            Finish::Refuse { .. } => return false,
            Finish::Ask(next) => step = next,
        }
    }
}

/// `requests` spread round-robin over `envoys`, all inside one window; returns admissions.
pub fn burst(envoys: &mut [Envoy], svc: &mut Service, requests: u32) -> u32 {
    let n = envoys.len() as u32;
    (0..requests)
        .filter(|i| {
            request(
                &mut envoys[(*i % n) as usize],
                svc,
                T0 + u64::from(*i) * 1_000_000,
            )
        })
        .count() as u32
}
