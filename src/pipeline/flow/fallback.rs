//! The fallback chain's part of the sequence: a [`FallbackRun`] decides, and this carries
//! its decisions out — an answer, the secondary cluster, the queue — keeping the idempotency
//! record in step with what the client finally gets.

use crate::config::Forward;
use crate::fallback::queue::{accepted_reply, QueueFull, QueueId};
use crate::fallback::run::{
    secondary_answer, to_reply, Chain, FallbackRun, FallbackStep, SecondaryAnswer,
};
use crate::idempotency::request::AnswerCopy;
use crate::metrics::{Event, FallbackEvent};
use crate::outcome::UpstreamResult;
use crate::pipeline::step::Enqueue;
use crate::pipeline::{Env, Plugin};
use crate::problem::LocalReply;
use crate::request::RequestAttributes;

use super::{key_env, routed, Await, RequestFlow, Stage, Step};

/// The request's method, for the fallback chain's `methods` filters; empty when the routed
/// upstream has no chain, since in Envoy reading it is a host call that returns data.
pub(super) fn fallback_method(
    plugin: &Plugin,
    upstream: Option<usize>,
    req: &dyn RequestAttributes,
) -> String {
    match routed(plugin, upstream) {
        Some((_, u)) if !u.fallback.is_empty() => req.method().to_string(),
        _ => String::new(),
    }
}

impl RequestFlow {
    /// Keeps how a forward ended for the key's record, until the fallback chain decides.
    pub(super) fn defer_result(&mut self, result: UpstreamResult, answer: Option<AnswerCopy>) {
        if let Some(k) = self.key.keyed_mut() {
            k.defer(result, answer);
        }
    }

    /// Starts the fallback chain; `default` answers when nothing in it can. `mode` is the one
    /// this request really took (gRPC, upgrades and CONNECT go through the router even when
    /// their upstream says `callout`).
    pub(super) fn run_fallbacks(
        &mut self,
        env: &mut Env<'_>,
        mode: Forward,
        breaker_open: bool,
        default: Option<LocalReply>,
    ) -> Step {
        let has_body = self.kept.as_ref().is_some_and(|k| k.has_body);
        let run = FallbackRun::start(mode, breaker_open, has_body, default);
        self.next_fallback(env, run)
    }

    /// Walks the chain on from where `run` stopped, and acts on what it decides.
    pub(super) fn next_fallback(&mut self, env: &mut Env<'_>, mut run: FallbackRun) -> Step {
        let plugin = env.plugin;
        let Some((index, upstream)) = routed(plugin, self.upstream) else {
            return Step::Continue;
        };
        let chain = Chain {
            index,
            upstream,
            cache: plugin.caches.get(index).and_then(Option::as_ref),
            hasher: &plugin.hasher,
        };
        let kept = self.kept.as_deref_mut();
        match run.next(&chain, &self.method, kept, env.store, env.now, env.metrics) {
            FallbackStep::Answer(reply) | FallbackStep::Exhausted(Some(reply)) => {
                self.fallback_answer(env, reply)
            }
            FallbackStep::Exhausted(None) => Step::Continue,
            FallbackStep::Secondary(req) => {
                self.mark_forwarded();
                self.stage = Stage::Secondary(Box::new(run));
                Step::Await(Await::Callout(req))
            }
            FallbackStep::Enqueue(request) => {
                let key = self.queued_key();
                self.stage = Stage::Enqueuing(Box::new(run));
                let upstream = index;
                Step::Await(Await::Enqueue(Enqueue {
                    upstream,
                    request,
                    key,
                }))
            }
        }
    }

    pub(super) fn fallback_answer(&mut self, env: &mut Env<'_>, reply: LocalReply) -> Step {
        if let (Some(k), Some(mut ke)) = (self.key.keyed_mut(), key_env(env)) {
            k.flush(&mut ke);
        }
        self.write_remote_ending(env);
        self.finish_reply(reply)
    }

    /// The secondary cluster answered (or did not): serve it, or go on down the chain.
    pub(super) fn secondary_answered(
        &mut self,
        env: &mut Env<'_>,
        run: FallbackRun,
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: Vec<u8>,
    ) -> Step {
        let plugin = env.plugin;
        let Some((index, upstream)) = routed(plugin, self.upstream) else {
            return Step::Continue;
        };
        let body_bytes = body.len() as u64;
        match secondary_answer(index, &upstream.name, headers, body, env.metrics) {
            SecondaryAnswer::Served(reply) => {
                // The secondary executed the request: its answer completes the key's record.
                if self.key.keyed().is_some() {
                    let (status, copy) =
                        (reply.status, (reply.headers.clone(), reply.body.clone()));
                    let result = UpstreamResult::Response { status, body_bytes };
                    self.defer_result(result, Some((status, copy.0, copy.1)));
                }
                self.fallback_answer(env, reply)
            }
            SecondaryAnswer::Failed(status) => {
                if let (Some(layer), Some(k)) = (&plugin.idempotency, self.key.keyed_mut()) {
                    k.secondary_failed(layer, status, body_bytes);
                }
                self.next_fallback(env, run)
            }
        }
    }

    /// The queue's answer: `202` with the request's id, or on to the next entry.
    pub(super) fn enqueued(
        &mut self,
        env: &mut Env<'_>,
        result: Result<QueueId, QueueFull>,
    ) -> Step {
        let run = match std::mem::take(&mut self.stage) {
            Stage::Enqueuing(run) => *run,
            other => {
                self.stage = other;
                return Step::Continue;
            }
        };
        match result {
            Ok(id) => {
                if let Some(index) = self.upstream {
                    let what = FallbackEvent::Queued;
                    env.metrics.count(Event::Fallback {
                        upstream: index,
                        what,
                    });
                    log::warn!("levee: upstream unavailable; request queued as {id}");
                }
                if let Some(k) = self.key.keyed_mut() {
                    k.queued();
                }
                self.hand_key_to_queue(env);
                self.fallback_answer(env, to_reply(accepted_reply(id), "levee_fallback_queued"))
            }
            Err(full) => {
                log::warn!("levee: cannot queue the request: {full}");
                self.next_fallback(env, run)
            }
        }
    }
}
