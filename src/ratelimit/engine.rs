//! Runs every matching rate limit for one request over the shared slot tables.
//!
//! Several limits may match one request; all must admit it, and a rejected request must not
//! consume anything from the others. So the check is two-phase: first read every matching
//! limit's entry and evaluate it (no writes); if any enforcing limit rejects, stop — nothing
//! was written. Otherwise commit each admission with a CAS. A CAS conflict means another
//! worker moved that key meanwhile: re-read and re-evaluate that one limit; if it now
//! rejects, refund the admissions already committed (each refund is its own read-compute-CAS), so the
//! request leaves no trace. Exactness holds while the `levee_internal_errors` counter is 0:
//! when retries run out, the limit's `on_internal_error` decides and the event is counted.

use crate::config::{BackendConfig, ClientIpConfig, Mode, OnInternalError, RateLimitConfig};
use crate::metrics::{Event, GlobalEvent, Metrics, RateLimitEvent};
use crate::ratelimit::algorithm;
use crate::ratelimit::{Decision, Evaluation};
use crate::request::keys::extract_key;
use crate::request::matcher::matches;
use crate::request::RequestAttributes;
use crate::store::hash::KeyHasher;
use crate::store::slots::SlotStep;
use crate::store::SharedStore;
use crate::time::UnixNanos;

use super::commit::{commit, read_and_evaluate};
pub use super::limit::Limit;
pub(crate) use super::limit::{Pending, Phase1, EVICTION};

/// What the limits say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Shaped: let it through at `until`.
    Delay {
        until: UnixNanos,
    },
    /// Rejected by limit `limit` (index into the configured limits).
    Reject {
        limit: usize,
        retry_after_ns: u64,
    },
}

/// The numbers behind the rate-limit response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    pub limit: usize,
    pub evaluation: Evaluation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub verdict: Verdict,
    /// The enforcing limit with the lowest remaining (or the one that rejected).
    pub headline: Option<Headline>,
}

/// All configured limits.
#[derive(Debug, Default)]
pub struct RateLimiter {
    pub limits: Vec<Limit>,
}

/// One request as every limit sees it: where shared state lives, how client keys are hashed,
/// how the client's IP is found, the request itself, and the instant of the check.
#[derive(Clone, Copy)]
pub struct LimitRequest<'a> {
    pub store: &'a dyn SharedStore,
    pub hasher: &'a KeyHasher,
    pub client_ip: &'a ClientIpConfig,
    pub req: &'a dyn RequestAttributes,
    pub now: UnixNanos,
}

impl RateLimiter {
    /// Limits kept in this Envoy only.
    pub fn new(configs: &[RateLimitConfig], slots: u32) -> Self {
        Self::with_backends(configs, &[], slots)
    }

    /// Limits whose `global` names one of `backends` are also kept by that service.
    pub fn with_backends(
        configs: &[RateLimitConfig],
        backends: &[BackendConfig],
        slots: u32,
    ) -> Self {
        Self {
            limits: configs
                .iter()
                .map(|c| Limit::new(c, backends, slots))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Checks (and, if admitted, consumes from) every limit that matches the request.
    pub fn check(&self, request: LimitRequest<'_>, metrics: &mut dyn Metrics) -> Check {
        match self.phase1(request, metrics) {
            Ok(phase1) => self.phase2(request.store, phase1, request.now, metrics),
            Err(check) => check,
        }
    }

    /// Phase 1: reads and evaluates every matching limit, writing nothing. `Err`: the request
    /// is decided already (rejected).
    pub(crate) fn phase1(
        &self,
        request: LimitRequest<'_>,
        metrics: &mut dyn Metrics,
    ) -> Result<Phase1, Check> {
        let LimitRequest {
            store,
            hasher,
            client_ip,
            req,
            now,
        } = request;
        let mut key = Vec::with_capacity(64);
        let mut pending: Vec<Pending> = Vec::with_capacity(self.limits.len());
        let mut shadow_rejected: Vec<usize> = Vec::new();
        let mut failed_open: Vec<usize> = Vec::new();
        let mut rejection: Option<(usize, Evaluation)> = None;

        // Phase 1: read and evaluate, no writes.
        for (index, limit) in self.limits.iter().enumerate() {
            if !matches(&limit.config.matcher, req) {
                continue;
            }
            key.clear();
            // A part the request lacks keys as "absent", so such requests share one entry.
            extract_key(&limit.config.key, client_ip, req, &mut key);
            let hash = hasher.hash(limit.config.name.as_bytes(), &key);
            let Some(mut read) = read_and_evaluate(limit, store, index, hash, now) else {
                metrics.count(Event::Global(GlobalEvent::InternalError));
                match limit.config.on_internal_error {
                    OnInternalError::Allow => failed_open.push(index),
                    OnInternalError::Deny => {
                        return Err(self.reject_internal(index, metrics));
                    }
                }
                continue;
            };
            if read.evaluation.decision == Decision::Reject {
                match limit.config.mode {
                    Mode::Shadow => shadow_rejected.push(index),
                    Mode::Enforce => {
                        if rejection.is_none() {
                            rejection = Some((index, read.evaluation));
                        }
                    }
                }
                continue;
            }
            if limit.global.is_some() {
                read.key = Some(crate::ratelimit::global::limit::service_key(&key).to_vec());
            }
            pending.push(read);
        }

        for index in &shadow_rejected {
            metrics.count(Event::RateLimit {
                limit: *index,
                what: RateLimitEvent::ShadowRejected,
            });
        }
        if let Some((index, evaluation)) = rejection {
            return Err(self.rejected(index, evaluation, metrics));
        }
        Ok(Phase1 {
            pending,
            failed_open,
        })
    }

    /// Phase 2: commits each admission; on conflict re-evaluates that limit, and if it now
    /// rejects, refunds what was committed.
    pub(crate) fn phase2(
        &self,
        store: &dyn SharedStore,
        phase1: Phase1,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Check {
        let Phase1 {
            mut pending,
            mut failed_open,
        } = phase1;
        // Borrowed in place: moving each out of the list would copy its whole lookup. A
        // committed admission is marked where it lies, so no second list is built.
        for at in 0..pending.len() {
            let Some(p) = pending.get_mut(at) else { break };
            let limit = &self.limits[p.index];
            match commit(limit, store, p, now) {
                Ok(()) if p.evaluation.decision == Decision::Reject => {
                    if limit.config.mode == Mode::Enforce {
                        // A rejection carries no state: this clone copies only numbers.
                        let (index, evaluation) = (p.index, p.evaluation.clone());
                        self.refund_all(store, &pending[..at], now, metrics);
                        return self.rejected(index, evaluation, metrics);
                    }
                    metrics.count(Event::RateLimit {
                        limit: p.index,
                        what: RateLimitEvent::ShadowRejected,
                    });
                }
                Ok(()) => p.committed = p.evaluation.new_state.is_some(),
                Err(index) => {
                    metrics.count(Event::Global(GlobalEvent::InternalError));
                    if limit.config.on_internal_error == OnInternalError::Deny {
                        self.refund_all(store, &pending[..at], now, metrics);
                        return self.reject_internal(index, metrics);
                    }
                    failed_open.push(index);
                }
            }
        }

        // Report.
        let mut verdict = Verdict::Admit;
        let mut headline: Option<Headline> = None;
        for p in pending.iter().filter(|p| p.committed) {
            let limit = &self.limits[p.index];
            let what = match p.evaluation.decision {
                Decision::Delay { until } => {
                    if limit.config.mode == Mode::Enforce {
                        verdict = match verdict {
                            Verdict::Delay { until: u } => Verdict::Delay {
                                until: u.max(until),
                            },
                            _ => Verdict::Delay { until },
                        };
                    }
                    RateLimitEvent::Delayed
                }
                _ => RateLimitEvent::Allowed,
            };
            metrics.count(Event::RateLimit {
                limit: p.index,
                what,
            });
            if limit.config.mode == Mode::Enforce
                && headline
                    .as_ref()
                    .is_none_or(|h| p.evaluation.remaining < h.evaluation.remaining)
            {
                headline = Some(Headline {
                    limit: p.index,
                    evaluation: p.evaluation.without_state(),
                });
            }
        }
        for index in failed_open {
            metrics.count(Event::RateLimit {
                limit: index,
                what: RateLimitEvent::Allowed,
            });
        }
        Check { verdict, headline }
    }

    pub(crate) fn rejected(
        &self,
        index: usize,
        evaluation: Evaluation,
        metrics: &mut dyn Metrics,
    ) -> Check {
        metrics.count(Event::RateLimit {
            limit: index,
            what: RateLimitEvent::Rejected,
        });
        Check {
            verdict: Verdict::Reject {
                limit: index,
                retry_after_ns: evaluation.retry_after_ns,
            },
            headline: Some(Headline {
                limit: index,
                evaluation,
            }),
        }
    }

    pub(crate) fn reject_internal(&self, index: usize, metrics: &mut dyn Metrics) -> Check {
        metrics.count(Event::RateLimit {
            limit: index,
            what: RateLimitEvent::Rejected,
        });
        Check {
            verdict: Verdict::Reject {
                limit: index,
                retry_after_ns: 1_000_000_000,
            },
            headline: None,
        }
    }

    /// Gives back what the admissions of `pending` marked committed consumed (another limit
    /// rejected the request).
    fn refund_all(
        &self,
        store: &dyn SharedStore,
        pending: &[Pending],
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) {
        for c in pending.iter().filter(|p| p.committed) {
            let limit = &self.limits[c.index];
            let at_rest_at = c.evaluation.at_rest_at;
            // No entry (evicted) or nothing safe to undo: nothing to write.
            let refunded = limit.table.update(store, c.hash, now, EVICTION, |state| {
                match state.and_then(|s| algorithm::refund(&limit.params, s, &c.evaluation, now)) {
                    Some(state) => SlotStep::Write {
                        state,
                        at_rest_at,
                        result: (),
                    },
                    None => SlotStep::Keep(()),
                }
            });
            if refunded.is_err() {
                metrics.count(Event::Global(GlobalEvent::InternalError));
            }
        }
    }
}
