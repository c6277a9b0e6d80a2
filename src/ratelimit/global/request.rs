//! One request's passage through limits of which some are mesh-wide: the local tier's phase 1
//! (read and evaluate every matching limit, nothing written), then the rate limit service for
//! the mesh-wide ones that passed it, then the local tier's phase 2 (commit, refunding on a
//! late conflict) only for what the service admitted.
//!
//! Nothing here waits: [`RateLimiter::prepare`] either decides the request or returns the asks
//! to send and a [`Deferred`] that [`RateLimiter::resume`] takes back with their answers.
//! Refills sent ahead of need ([`RemoteAsk`] in `background`) are answered to
//! [`RateLimiter::refilled`]; no request's decision waits for them.

use super::{Asked, BackendFailure, Begin, Finish, ServiceView};
use crate::backend::rls::{RateLimitRequest, RateLimitResponse};
use crate::config::Mode;
use crate::metrics::{Event, Metrics, RateLimitEvent};
use crate::ratelimit::engine::{Check, Headline, LimitRequest, Phase1, RateLimiter, Verdict};
use crate::store::hash::KeyHash;
use crate::store::SharedStore;
use crate::time::UnixNanos;

/// A call to send to the rate limit service for limit `limit`.
#[derive(Debug, Clone)]
pub struct RemoteAsk {
    pub limit: usize,
    pub hash: KeyHash,
    pub asked: Asked,
    pub request: RateLimitRequest,
}

/// A request waiting for the service's answers.
#[derive(Debug)]
pub struct Deferred {
    phase1: Phase1,
    views: Vec<(usize, ServiceView)>,
}

/// Where the request stands.
#[derive(Debug)]
pub enum Prepared {
    /// Decided. `background`: refills to send without waiting.
    Decided {
        check: Check,
        background: Vec<RemoteAsk>,
    },
    /// Send `asks` and give their answers, in order, to [`RateLimiter::resume`].
    Remote {
        deferred: Deferred,
        asks: Vec<RemoteAsk>,
        background: Vec<RemoteAsk>,
    },
}

/// What one limit's service decided.
enum Said {
    Admit(Option<ServiceView>, bool),
    Again(Asked),
    Refuse(Option<ServiceView>),
}

impl RateLimiter {
    /// True when some limit is also kept by a rate limit service.
    pub fn has_global(&self) -> bool {
        self.limits.iter().any(|l| l.global.is_some())
    }

    /// The local tier's phase 1, then what the mesh-wide limits need.
    pub fn prepare(&self, request: LimitRequest<'_>, metrics: &mut dyn Metrics) -> Prepared {
        let LimitRequest { store, now, .. } = request;
        let phase1 = match self.phase1(request, metrics) {
            Ok(p) => p,
            Err(check) => {
                return Prepared::Decided {
                    check,
                    background: Vec::new(),
                }
            }
        };
        let mut said = Vec::new();
        let mut background = Vec::new();
        for p in &phase1.pending {
            let Some(global) = self.limits[p.index].global.as_ref() else {
                continue;
            };
            let s = match global.begin(store, p.hash, now) {
                Begin::Admit { view, refill } => {
                    if let Some(asked) = refill {
                        background.push(self.ask(p.index, p.hash, p.key.as_deref(), asked));
                    }
                    Said::Admit(view, true)
                }
                Begin::Ask(asked) => Said::Again(asked),
                Begin::Refuse { retry_at } => Said::Refuse(Some(ServiceView {
                    limit: global.tuning.limit,
                    remaining: 0,
                    reset_at: retry_at,
                })),
                Begin::Fallback(finish) => said_of(finish),
            };
            said.push((p.index, s));
        }
        let deferred = Deferred {
            phase1,
            views: Vec::new(),
        };
        self.proceed(store, deferred, said, background, now, metrics)
    }

    /// Takes the answers (in the order of the asks) back into the request.
    pub fn resume(
        &self,
        store: &dyn SharedStore,
        deferred: Deferred,
        asks: &[RemoteAsk],
        answers: &[Result<RateLimitResponse, BackendFailure>],
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Prepared {
        let mut said = Vec::new();
        for (i, ask) in asks.iter().enumerate() {
            let Some(global) = self.limits.get(ask.limit).and_then(|l| l.global.as_ref()) else {
                continue;
            };
            let answer = answers
                .get(i)
                .map_or(Err(BackendFailure::Unreachable), |a| {
                    a.as_ref().map_err(|e| *e)
                });
            let (finish, failure) = global.finish(store, ask.hash, now, ask.asked, answer);
            global.count(&finish, failure, metrics);
            said.push((ask.limit, said_of(finish)));
        }
        self.proceed(store, deferred, said, Vec::new(), now, metrics)
    }

    /// Folds the answer to a refill nobody waited for into its pool.
    pub fn refilled(
        &self,
        store: &dyn SharedStore,
        ask: &RemoteAsk,
        answer: Result<&RateLimitResponse, BackendFailure>,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) {
        if let Some(global) = self.limits.get(ask.limit).and_then(|l| l.global.as_ref()) {
            let (finish, failure) = global.finish(store, ask.hash, now, ask.asked, answer);
            if failure.is_none() {
                global.count(&finish, None, metrics);
            }
        }
    }

    fn ask(&self, limit: usize, hash: KeyHash, key: Option<&[u8]>, asked: Asked) -> RemoteAsk {
        let request = self
            .limits
            .get(limit)
            .and_then(|l| l.global.as_ref())
            .map(|g| g.request(key.unwrap_or_default(), asked.hits))
            .unwrap_or_default();
        RemoteAsk {
            limit,
            hash,
            asked,
            request,
        }
    }

    fn proceed(
        &self,
        store: &dyn SharedStore,
        mut deferred: Deferred,
        said: Vec<(usize, Said)>,
        background: Vec<RemoteAsk>,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Prepared {
        let mut asks = Vec::new();
        for (index, s) in said {
            let enforced = self.limits[index].config.mode == Mode::Enforce;
            match s {
                Said::Admit(view, commit_local) => {
                    if let Some(v) = view {
                        deferred.views.push((index, v));
                    }
                    if !commit_local {
                        deferred.phase1.pending.retain(|p| p.index != index);
                        deferred.phase1.failed_open.push(index);
                    }
                }
                Said::Again(asked) => {
                    // Every ask is for a limit phase 1 left pending.
                    if let Some(p) = deferred.phase1.pending.iter().find(|p| p.index == index) {
                        asks.push(self.ask(index, p.hash, p.key.as_deref(), asked));
                    }
                }
                Said::Refuse(view) if enforced => {
                    let evaluation = match view {
                        Some(v) => v.evaluation(now, true),
                        None => {
                            return Prepared::Decided {
                                check: self.reject_internal(index, metrics),
                                background,
                            }
                        }
                    };
                    let check = self.rejected(index, evaluation, metrics);
                    return Prepared::Decided { check, background };
                }
                Said::Refuse(_) => metrics.count(Event::RateLimit {
                    limit: index,
                    what: RateLimitEvent::ShadowRejected,
                }),
            }
        }
        if !asks.is_empty() {
            return Prepared::Remote {
                deferred,
                asks,
                background,
            };
        }
        let mut check = self.phase2(store, deferred.phase1, now, metrics);
        headline_from_service(&mut check, &deferred.views, self, now);
        Prepared::Decided { check, background }
    }
}

fn said_of(finish: Finish) -> Said {
    match finish {
        Finish::Admit { view, commit_local } => Said::Admit(view, commit_local),
        Finish::Ask(asked) => Said::Again(asked),
        Finish::Refuse { view } => Said::Refuse(view),
    }
}

/// On an admitted request, the service's numbers replace the local tier's for the headers when
/// they are the tighter ones (the mesh-wide count is the one that matters).
fn headline_from_service(
    check: &mut Check,
    views: &[(usize, ServiceView)],
    limiter: &RateLimiter,
    now: UnixNanos,
) {
    if matches!(check.verdict, Verdict::Reject { .. }) {
        return;
    }
    for (index, view) in views {
        if limiter.limits[*index].config.mode != Mode::Enforce {
            continue;
        }
        let evaluation = view.evaluation(now, false);
        if check
            .headline
            .as_ref()
            .is_none_or(|h| h.limit == *index || evaluation.remaining < h.evaluation.remaining)
        {
            check.headline = Some(Headline {
                limit: *index,
                evaluation,
            });
        }
    }
}
