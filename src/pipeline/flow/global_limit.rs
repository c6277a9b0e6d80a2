//! The rate-limit stage when some limit is mesh-wide: the local tier's phase 1, then one
//! backend call at a time to the rate limit service (the asks the limits need, then the
//! refills a `reserve` pool wants), then the local tier's commit and the usual admission:
//! refuse, hold for the shaper, or pass with the headers.
//!
//! A refill is sent on the request that found its pool low, after that request is already
//! decided: it waits for the refill's answer before going on (one round trip for about one
//! request in a batch), since a call must belong to a request to be answered.

use super::{Await, Env, RemoteAnswer, RemoteCall, RequestFlow, Stage, Step};
use crate::backend::rls::{RateLimitResponse, METHOD, SERVICE};
use crate::backend::wire::Message;
use crate::ratelimit::admission;
use crate::ratelimit::engine::{Check, LimitRequest};
use crate::ratelimit::global::{BackendFailure, Deferred, Prepared, RemoteAsk};
use crate::request::RequestAttributes;
use crate::time::{duration_nanos, NANOS_PER_MILLI};

/// A request between its rate limits and the rate limit service.
#[derive(Debug, Default)]
pub(super) struct GlobalWait {
    /// Waiting for the answers to `asks` (in order).
    deferred: Option<Deferred>,
    asks: Vec<RemoteAsk>,
    answers: Vec<Result<RateLimitResponse, BackendFailure>>,
    /// Decided, with refills still to send.
    check: Option<Check>,
    background: Vec<RemoteAsk>,
}

impl GlobalWait {
    fn of(prepared: Prepared, mut background: Vec<RemoteAsk>) -> Self {
        match prepared {
            Prepared::Decided {
                check,
                background: more,
            } => {
                background.extend(more);
                Self {
                    check: Some(check),
                    background,
                    ..Self::default()
                }
            }
            Prepared::Remote {
                deferred,
                asks,
                background: more,
            } => {
                background.extend(more);
                Self {
                    deferred: Some(deferred),
                    asks,
                    background,
                    ..Self::default()
                }
            }
        }
    }
}

impl RequestFlow {
    /// The rate-limit stage with mesh-wide limits.
    pub(super) fn global_limits(&mut self, env: &mut Env<'_>, req: &dyn RequestAttributes) -> Step {
        let plugin = env.plugin;
        let request = LimitRequest {
            store: env.store,
            hasher: &plugin.hasher,
            client_ip: &plugin.config.client_ip,
            req,
            now: env.now,
        };
        let prepared = plugin.limiter.prepare(request, env.metrics);
        self.global_next(env, GlobalWait::of(prepared, Vec::new()))
    }

    /// A backend call of the rate-limit stage ended.
    pub(super) fn global_answered(&mut self, env: &mut Env<'_>, answer: RemoteAnswer) -> Step {
        let Stage::RateLimitRemote(wait) = std::mem::take(&mut self.stage) else {
            return Step::Continue;
        };
        let mut wait = *wait;
        let result = if answer.is_ok() {
            RateLimitResponse::decode(&answer.message).map_err(|_| BackendFailure::Unreachable)
        } else {
            Err(BackendFailure::Unreachable)
        };
        if wait.deferred.is_some() {
            wait.answers.push(result);
        } else if !wait.background.is_empty() {
            let ask = wait.background.remove(0);
            let limiter = &env.plugin.limiter;
            let answer = result.as_ref().map_err(|f| *f);
            limiter.refilled(env.store, &ask, answer, env.now, env.metrics);
        }
        self.global_next(env, wait)
    }

    fn global_next(&mut self, env: &mut Env<'_>, mut wait: GlobalWait) -> Step {
        if let Some(deferred) = wait.deferred.take() {
            if let Some(ask) = wait.asks.get(wait.answers.len()) {
                let call = remote_call(env, ask);
                wait.deferred = Some(deferred);
                return self.await_remote(wait, call);
            }
            let limiter = &env.plugin.limiter;
            let (asks, answers) = (&wait.asks, &wait.answers);
            let prepared = limiter.resume(env.store, deferred, asks, answers, env.now, env.metrics);
            return self.global_next(env, GlobalWait::of(prepared, wait.background));
        }
        if let Some(ask) = wait.background.first() {
            let call = remote_call(env, ask);
            return self.await_remote(wait, call);
        }
        let Some(check) = wait.check else {
            return self.after_rate_limits(env);
        };
        let plugin = env.plugin;
        let admission = admission::decide(&plugin.limiter, &plugin.config, &check, env.now);
        self.on_rate_admission(env, admission)
    }

    fn await_remote(&mut self, wait: GlobalWait, call: RemoteCall) -> Step {
        self.stage = Stage::RateLimitRemote(Box::new(wait));
        Step::Await(Await::Remote(call))
    }
}

/// The backend call for `ask`.
fn remote_call(env: &Env<'_>, ask: &RemoteAsk) -> RemoteCall {
    let config = &env.plugin.config;
    let backend = config
        .rate_limits
        .get(ask.limit)
        .and_then(|l| l.global)
        .map_or(0, |g| g.backend);
    let timeout = config
        .backends
        .get(backend)
        .map_or(0, |b| duration_nanos(b.timeout()));
    RemoteCall {
        backend,
        service: SERVICE,
        method: METHOD,
        message: ask.request.encode(),
        timeout_ms: timeout.div_ceil(NANOS_PER_MILLI).max(1),
    }
}
