//! One mesh-wide limit: the request sent to the rate limit service, the reservation pools of
//! `reserve` mode in a bounded slot table, and the decision taken on the service's answer.

use std::sync::atomic::{AtomicBool, Ordering};

use super::pool::{self, Granted, Pool, Settle, Spend, Tuning};
use super::view::{view_of, ServiceView};
use super::{BackendFailure, GlobalMode, OnBackendError};
use crate::backend::rls::{
    limit_descriptor, unit_for_window_secs, verdict, RateLimitRequest, RateLimitResponse, Unit,
};
use crate::config::{BackendConfig, BackendKind, RateLimitConfig};
use crate::metrics::{BackendEvent, Event, Metrics};
use crate::store::hash::KeyHash;
use crate::store::slots::{Eviction, SlotStep, SlotTable, TableError};
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};

/// A pool that must make room for a new key drops the one written longest ago: its unspent
/// units are lost (admitting less, never more).
const EVICTION: Eviction = Eviction::LeastRecentlyTouched;

/// An ask on its way to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub hits: u32,
    /// Holds the pool's ask lease (`reserve` only).
    pub lease: bool,
    /// A request waits for it (`false`: a refill sent ahead of need).
    pub waiting: bool,
    pub at: UnixNanos,
}

/// What to do with a request that passed the local tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Admitted on a reserved unit: commit the local tier. `refill`: also send this ask in the
    /// background (nobody waits for it; its answer goes to [`GlobalLimit::finish`]).
    Admit {
        view: Option<ServiceView>,
        refill: Option<Asked>,
    },
    /// Send this ask and wait for its answer.
    Ask(Asked),
    /// Refused without a call (the service already refused this window).
    Refuse { retry_at: UnixNanos },
    /// Shared data failed: the backend error policy decides.
    Fallback(Finish),
}

/// The decision once the service answered (or could not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Admit. `commit_local`: count it in the local tier.
    Admit {
        view: Option<ServiceView>,
        commit_local: bool,
    },
    /// Send this further ask (a batch was refused; one unit may still be granted).
    Ask(Asked),
    /// Refuse (`429`); `view` gives the headers when the service stated them, else
    /// `Retry-After: 1`.
    Refuse { view: Option<ServiceView> },
}

/// One configured limit's mesh-wide side.
#[derive(Debug)]
pub struct GlobalLimit {
    pub name: String,
    /// Index into the config's `backends` (for the backend's metrics).
    pub backend: usize,
    pub mode: GlobalMode,
    pub on_backend_error: OnBackendError,
    pub domain: String,
    pub unit: Unit,
    pub tuning: Tuning,
    pub pools: SlotTable,
    misconfig_logged: AtomicBool,
}

impl GlobalLimit {
    /// `None` when the window is not one the protocol can express (`1s`, `1m`, `1h`, `1d`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        limit: u32,
        window_secs: u64,
        mode: GlobalMode,
        on_backend_error: OnBackendError,
        domain: &str,
        ask_timeout_ns: u64,
        slots: u32,
    ) -> Option<Self> {
        let unit = unit_for_window_secs(window_secs)?;
        Some(Self {
            name: name.to_string(),
            backend: 0,
            mode,
            on_backend_error,
            domain: domain.to_string(),
            unit,
            tuning: Tuning {
                limit,
                window_ns: window_secs.saturating_mul(NANOS_PER_SEC),
                ask_timeout_ns,
            },
            pools: SlotTable::new("rg", name, slots).with_max_state_bytes(pool::POOL_BYTES),
            misconfig_logged: AtomicBool::new(false),
        })
    }

    /// The mesh-wide side of `config`, if it has one whose backend is a rate limit service.
    pub fn from_config(
        config: &RateLimitConfig,
        backends: &[BackendConfig],
        slots: u32,
    ) -> Option<Self> {
        let global = config.global?;
        let BackendKind::Rls(rls) = &backends.get(global.backend)?.kind else {
            return None;
        };
        // An ask's lease outlives its call's timeout, so a lost call frees the pool.
        let lease = duration_nanos(rls.timeout).saturating_mul(2);
        Self::new(
            &config.name,
            u32::try_from(config.limit).unwrap_or(u32::MAX),
            config.window.as_secs(),
            global.mode,
            global.on_backend_error,
            &rls.domain,
            lease,
            slots,
        )
        .map(|g| Self {
            backend: global.backend,
            ..g
        })
    }

    /// The call for an ask of `hits` units on key `value`.
    pub fn request(&self, value: &[u8], hits: u32) -> RateLimitRequest {
        RateLimitRequest {
            domain: self.domain.clone(),
            descriptors: vec![limit_descriptor(
                &self.name,
                value,
                self.tuning.limit,
                self.unit,
                u64::from(hits),
            )],
            hits_addend: hits,
        }
    }

    /// A request passed the local tier at `now`: spend a reserved unit or ask.
    pub fn begin(&self, store: &dyn SharedStore, key: KeyHash, now: UnixNanos) -> Begin {
        let ask = |hits, lease| Asked {
            hits,
            lease,
            waiting: true,
            at: now,
        };
        if self.mode == GlobalMode::Exact {
            return Begin::Ask(ask(1, false));
        }
        let spent = self.update(store, key, now, |p| {
            let (spend, next) = pool::spend(p, &self.tuning, now);
            ((spend, view_of(&next)), Some(next))
        });
        match spent {
            Ok((Spend::Spent { refill }, view)) => Begin::Admit {
                view,
                refill: refill.map(|hits| Asked {
                    hits,
                    lease: true,
                    waiting: false,
                    at: now,
                }),
            },
            Ok((Spend::Ask { hits, lease }, _)) => Begin::Ask(ask(hits, lease)),
            Ok((Spend::Closed { until }, _)) => Begin::Refuse { retry_at: until },
            Err(_) => Begin::Fallback(self.fallback()),
        }
    }

    /// Folds the answer to `asked` (or the failure to get one) into the decision at `now`.
    pub fn finish(
        &self,
        store: &dyn SharedStore,
        key: KeyHash,
        now: UnixNanos,
        asked: Asked,
        answer: Result<&RateLimitResponse, BackendFailure>,
    ) -> (Finish, Option<BackendFailure>) {
        let granted = answer.and_then(|a| {
            verdict(a, 0)
                .map(|v| Granted {
                    allowed: v.allowed,
                    limit: v.limit,
                    remaining: v.remaining,
                    window_end: pool::window_end(asked.at, v.reset_ms, self.tuning.window_ns),
                })
                .map_err(BackendFailure::Misconfigured)
        });
        let granted = match granted {
            Ok(g) => g,
            Err(failure) => {
                if let BackendFailure::Misconfigured(why) = failure {
                    if !self.misconfig_logged.swap(true, Ordering::Relaxed) {
                        log::error!(
                            "levee: rate limit \"{}\": the rate limit service's answer cannot be used ({why:?}); check that its domain \"{}\" is configured",
                            self.name,
                            self.domain
                        );
                    }
                }
                if self.mode == GlobalMode::Reserve && asked.lease {
                    // Best effort: a lease left behind expires with the ask's timeout.
                    let _ = self.update(store, key, now, |p| {
                        ((), Some(pool::release(p, &self.tuning, now)))
                    });
                }
                return (self.fallback(), Some(failure));
            }
        };
        if self.mode == GlobalMode::Exact {
            let view = Some(ServiceView {
                limit: granted.limit,
                remaining: granted.remaining,
                reset_at: granted.window_end,
            });
            let finish = if granted.allowed {
                Finish::Admit {
                    view,
                    commit_local: true,
                }
            } else {
                Finish::Refuse { view }
            };
            return (finish, None);
        }
        let settled = self.update(store, key, now, |p| {
            let (settle, next) = pool::settle(
                p,
                &self.tuning,
                now,
                asked.hits,
                asked.lease,
                asked.waiting,
                &granted,
            );
            ((settle, view_of(&next)), Some(next))
        });
        let finish = match settled {
            Ok((Settle::Admit, view)) => Finish::Admit {
                view,
                commit_local: true,
            },
            Ok((Settle::AskOne, _)) => Finish::Ask(Asked {
                hits: 1,
                lease: false,
                waiting: true,
                at: now,
            }),
            Ok((Settle::Refuse { until }, _)) => Finish::Refuse {
                view: Some(ServiceView {
                    limit: granted.limit,
                    remaining: 0,
                    reset_at: until.max(granted.window_end),
                }),
            },
            // The units were granted but could not be stored: admit this request on one of
            // them (the rest are lost, admitting less, never more).
            Err(_) if granted.allowed => Finish::Admit {
                view: None,
                commit_local: true,
            },
            Err(_) => Finish::Refuse { view: None },
        };
        (finish, None)
    }

    /// Counts what `finish` did: the backend error policy's decision, or a reservation filled.
    pub fn count(
        &self,
        finish: &Finish,
        failure: Option<BackendFailure>,
        metrics: &mut dyn Metrics,
    ) {
        let what = match (failure, finish) {
            (Some(_), _) => match self.on_backend_error {
                OnBackendError::Local => BackendEvent::DecisionLocal,
                OnBackendError::Allow => BackendEvent::DecisionAllow,
                OnBackendError::Deny => BackendEvent::DecisionDeny,
            },
            (None, Finish::Admit { .. }) if self.mode == GlobalMode::Reserve => {
                BackendEvent::ReserveRefill
            }
            _ => return,
        };
        metrics.count(Event::Backend {
            backend: self.backend,
            what,
        });
    }

    /// The decision the backend error policy takes.
    pub fn fallback(&self) -> Finish {
        match self.on_backend_error {
            OnBackendError::Local => Finish::Admit {
                view: None,
                commit_local: true,
            },
            OnBackendError::Allow => Finish::Admit {
                view: None,
                commit_local: false,
            },
            OnBackendError::Deny => Finish::Refuse { view: None },
        }
    }

    /// The pool of `key` as stored at `now` (for headers and tests).
    pub fn pool(&self, store: &dyn SharedStore, key: KeyHash, now: UnixNanos) -> Option<Pool> {
        self.update(store, key, now, |p| {
            (p.map(|p| pool::live(Some(p), &self.tuning, now)), None)
        })
        .ok()
        .flatten()
    }

    /// Read-compute-CAS on `key`'s pool; `f` returns its result and the pool to write (or
    /// `None` to change nothing).
    fn update<T>(
        &self,
        store: &dyn SharedStore,
        key: KeyHash,
        now: UnixNanos,
        mut f: impl FnMut(Option<Pool>) -> (T, Option<Pool>),
    ) -> Result<T, TableError> {
        self.pools.update(store, key, now, EVICTION, |state| {
            match f(state.map(Pool::decode)) {
                (result, Some(next)) => SlotStep::Write {
                    state: next.encode(),
                    at_rest_at: next.at_rest_at(),
                    result,
                },
                (result, None) => SlotStep::Keep(result),
            }
        })
    }
}

/// The value of the descriptor's `key` entry for a request key as the engine encodes it
/// (`0x01`, a 4-byte big-endian length, the value, per part; `0x00` for an absent part): a
/// key of one present part is sent as that part's value (bounded when sent); any other key as
/// its whole encoding, which is never short printable text and so is always sent hashed.
pub fn service_key(encoded: &[u8]) -> &[u8] {
    if let [1, a, b, c, d, value @ ..] = encoded {
        if u32::from_be_bytes([*a, *b, *c, *d]) as usize == value.len() {
            return value;
        }
    }
    encoded
}
