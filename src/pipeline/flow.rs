//! One request's journey through levee's layers: a sequencer over [`Stage`]s that carry their
//! own data.
//!
//! Each layer's machine decides — the rate limits ([`admission`]), the idempotency key
//! ([`KeyedRequest`]), the breaker and the forward ([`RouterForward`], [`CalloutForward`]), the
//! fallback chain ([`FallbackRun`]) — and this file only moves the request from one to the
//! next, turning their decisions into [`Step`]s. The host calls one method per Envoy callback;
//! every answer to a paused request comes back through [`RequestFlow::resume`]. Timers the
//! flow wants without pausing (lock renewals) are collected with [`RequestFlow::take_timer`].

use crate::config::{Forward, UpstreamConfig};
use crate::fallback::kept::KeptRequest;
use crate::fallback::queue::{QueueFull, QueueId};
use crate::fallback::run::FallbackRun;
use crate::forward::intake::{callout_eligible, Intake};
use crate::forward::router::RouterForward;
use crate::forward::CalloutForward;
use crate::idempotency::request::{Claimed, KeyEnv};
use crate::idempotency::request_key::RequestKey;
use crate::outcome::UpstreamResult;
use crate::problem::LocalReply;
use crate::ratelimit::admission::{self, RateAdmission};
use crate::ratelimit::engine::LimitRequest;
use crate::request::saved::SavedRequest;
use crate::request::RequestAttributes;
use crate::time::UnixNanos;
use crate::timer_queue::TimerPurpose;

pub use super::step::{
    Answer, Await, BackgroundCall, Enqueue, OnBackgroundAnswer, RemoteAnswer, RemoteCall, Step,
};
use super::{Env, Plugin};

mod body;
mod callout;
mod fallback;
mod global_limit;
mod remote;
mod response;

/// Where the request is, with what that stage needs.
#[derive(Debug, Default)]
enum Stage {
    #[default]
    New,
    /// Held by the leaky-bucket shaper until its release time.
    Shaped,
    /// Held until the whole body is read (idempotency fingerprint, callout mode).
    AwaitBody,
    /// Held while another request holds the same idempotency key (`on_concurrent: wait`).
    WaitForKey,
    /// Held while its key is claimed in the record store (etcd).
    Claiming,
    /// Passed on to Envoy's router.
    Forwarded(RouterForward),
    /// Forwarded by levee's own callouts (attempts, backoff waits).
    Callout(Box<CalloutForward>),
    /// The fallback chain sent the request to the secondary cluster.
    Secondary(Box<FallbackRun>),
    /// The fallback chain handed the request to the queue.
    Enqueuing(Box<FallbackRun>),
    /// Waiting for the rate limit service (mesh-wide limits).
    RateLimitRemote(Box<global_limit::GlobalWait>),
    /// Answered by levee.
    Answered,
}

/// Per-request state, created by the host for each HTTP stream.
#[derive(Debug, Default)]
pub struct RequestFlow {
    stage: Stage,
    /// This request's random id (owner of an idempotency lock).
    owner: u64,
    method: String,
    /// The upstream this request is routed to, if a `routes` entry matched.
    upstream: Option<usize>,
    end_of_stream: bool,
    /// Request body bytes seen while held.
    body_seen: u64,
    /// Callout mode: the request being buffered until its body is complete.
    intake: Option<Box<Intake>>,
    key: RequestKey,
    /// The copy the fallbacks and the stale cache need.
    kept: Option<Box<KeptRequest>>,
    /// Headers to add to the answer (rate-limit headers, key echo).
    response_headers: Vec<(String, String)>,
    /// A timer for the host to schedule without pausing (lock renewal).
    timer: Option<(UnixNanos, TimerPurpose)>,
    /// The key's record in etcd, while the request claims or holds it there.
    remote: Option<remote::RemoteRecord>,
    /// Request headers to set before the request goes on (the fencing token).
    request_headers: Vec<(String, String)>,
}

/// Upstream number `index` and its settings.
fn routed(plugin: &Plugin, index: Option<usize>) -> Option<(usize, &UpstreamConfig)> {
    let i = index?;
    plugin.config.upstreams.get(i).map(|u| (i, u))
}

impl RequestFlow {
    /// `owner` is a random id, unique per request across workers.
    pub fn new(owner: u64) -> Self {
        Self {
            owner,
            ..Self::default()
        }
    }

    /// Request headers arrived.
    pub fn on_request_headers(
        &mut self,
        env: &mut Env<'_>,
        req: &dyn RequestAttributes,
        end_of_stream: bool,
    ) -> Step {
        let plugin = env.plugin;
        self.end_of_stream = end_of_stream;
        self.upstream = plugin.route(req);
        self.method = fallback::fallback_method(plugin, self.upstream, req);
        let key_header = plugin
            .idempotency
            .as_ref()
            .map(|l| l.config.header.as_str());
        if let Some((index, upstream)) = routed(plugin, self.upstream) {
            let cache = plugin.caches.get(index).and_then(Option::as_ref);
            let client_ip = &plugin.config.client_ip;
            self.kept =
                KeptRequest::of(upstream, cache, client_ip, req, end_of_stream).map(Box::new);
            if upstream.forward == Forward::Callout && callout_eligible(req) {
                // One copy of the head, shared with the fallbacks' when they keep one.
                let head = self
                    .kept
                    .as_ref()
                    .map_or_else(|| SavedRequest::of(req), |k| k.saved.clone());
                self.intake = Some(Box::new(Intake::of(req, head, key_header)));
            }
        }
        if let Some(layer) = &plugin.idempotency {
            let ip = &plugin.config.client_ip;
            self.key = RequestKey::of(layer, &plugin.hasher, ip, req, self.owner);
        }
        if plugin.limiter.has_global() {
            return self.global_limits(env, req);
        }
        if !plugin.limiter.is_empty() {
            let request = LimitRequest {
                store: env.store,
                hasher: &plugin.hasher,
                client_ip: &plugin.config.client_ip,
                req,
                now: env.now,
            };
            let admission = admission::admit(&plugin.limiter, &plugin.config, request, env.metrics);
            return self.on_rate_admission(env, admission);
        }
        self.after_rate_limits(env)
    }

    /// While levee holds the request, body callbacks must hold it too (else Envoy lets it go).
    pub fn holds_request(&self) -> bool {
        matches!(
            self.stage,
            Stage::Shaped
                | Stage::RateLimitRemote(_)
                | Stage::AwaitBody
                | Stage::WaitForKey
                | Stage::Claiming
                | Stage::Callout(_)
                | Stage::Secondary(_)
                | Stage::Enqueuing(_)
        )
    }

    /// A timer to schedule without pausing the request, if any.
    pub fn take_timer(&mut self) -> Option<(UnixNanos, TimerPurpose)> {
        self.timer.take()
    }

    /// Something the paused request awaited came back.
    pub fn resume(&mut self, env: &mut Env<'_>, answer: Answer) -> Option<Step> {
        match answer {
            Answer::Timer(purpose) => self.timer_fired(env, purpose),
            Answer::Callout { headers, body } => self.callout_answered(env, headers, body),
            Answer::Enqueued(result) => Some(self.enqueued(env, result)),
            Answer::Remote(answer) => self.remote_answered(env, answer),
        }
    }

    /// A backend call this request made has ended: the stage that awaits it reads the answer
    /// (a global rate limit's, or the claim of a key whose record lives in etcd).
    fn remote_answered(&mut self, env: &mut Env<'_>, answer: RemoteAnswer) -> Option<Step> {
        match self.stage {
            Stage::RateLimitRemote(_) => Some(self.global_answered(env, answer)),
            Stage::Claiming => self.remote_claim_answered(env, answer),
            _ => None,
        }
    }

    /// A timer this request asked for fired; `None` when there is nothing to do.
    pub fn on_timer(&mut self, env: &mut Env<'_>, purpose: TimerPurpose) -> Option<Step> {
        self.resume(env, Answer::Timer(purpose))
    }

    /// A callout answer arrived for this request.
    pub fn on_callout_response(
        &mut self,
        env: &mut Env<'_>,
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: Vec<u8>,
    ) -> Option<Step> {
        self.resume(env, Answer::Callout { headers, body })
    }

    /// The dispatch itself failed (e.g. the cluster does not exist): a reset.
    pub fn on_dispatch_failed(&mut self, env: &mut Env<'_>) -> Option<Step> {
        log::warn!("levee: dispatch_http_call refused by Envoy (is the cluster defined?)");
        let (headers, body) = (None, Vec::new());
        self.resume(env, Answer::Callout { headers, body })
    }

    /// The host tried to queue the request: `202` with its id, or on to the next entry.
    pub fn on_enqueued(&mut self, env: &mut Env<'_>, result: Result<QueueId, QueueFull>) -> Step {
        self.enqueued(env, result)
    }

    fn timer_fired(&mut self, env: &mut Env<'_>, purpose: TimerPurpose) -> Option<Step> {
        match (&mut self.stage, purpose) {
            (Stage::Shaped, TimerPurpose::Release) => Some(self.after_rate_limits(env)),
            (Stage::Callout(forward), TimerPurpose::Backoff) => {
                let step = forward.next(env.store, env.now, env.rng, env.metrics);
                self.carry_out(env, step)
            }
            (Stage::AwaitBody, TimerPurpose::BodyGuard) if self.body_seen == 0 => {
                Some(self.body_not_delivered(env))
            }
            (Stage::WaitForKey, TimerPurpose::Poll) => Some(self.claim_key(env)),
            (_, TimerPurpose::Renew) => {
                self.timer = self.renew_lock(env).map(|at| (at, TimerPurpose::Renew));
                None
            }
            _ => None,
        }
    }

    /// Rate limits passed: bad keys are refused; a request whose body levee needs (the
    /// idempotency fingerprint, callout mode) is held until the body is complete.
    /// Local and mesh-wide limits end here: refuse now, hold for the shaper, or go on.
    fn on_rate_admission(&mut self, env: &mut Env<'_>, admission: RateAdmission) -> Step {
        match admission {
            RateAdmission::Refuse(reply) => self.answer(env, reply),
            RateAdmission::Pass {
                headers,
                hold_until,
            } => {
                self.response_headers = headers;
                if let Some(wake_at) = hold_until {
                    self.stage = Stage::Shaped;
                    let purpose = TimerPurpose::Release;
                    return Step::Await(Await::Timer { wake_at, purpose });
                }
                self.after_rate_limits(env)
            }
        }
    }

    fn after_rate_limits(&mut self, env: &mut Env<'_>) -> Step {
        if let Some(reply) = self.key.take_refusal(env.metrics) {
            return self.answer(env, reply);
        }
        if self.needs_body() && !self.end_of_stream {
            self.stage = Stage::AwaitBody;
            return Step::Await(Await::Body);
        }
        self.after_body(env)
    }

    /// The request is complete: claim its idempotency key (which forwards), or forward.
    fn after_body(&mut self, env: &mut Env<'_>) -> Step {
        if self.key.keyed().is_some() {
            return self.claim_key(env);
        }
        self.forward(env)
    }

    /// Claims the key: execute, replay, wait, or refuse.
    fn claim_key(&mut self, env: &mut Env<'_>) -> Step {
        if self.claims_remotely(env) {
            return self.claim_remote(env);
        }
        let claimed = match (self.key.keyed_mut(), key_env(env)) {
            (Some(k), Some(mut ke)) => k.claim(&mut ke),
            _ => return self.forward(env),
        };
        self.claimed(env, claimed)
    }

    /// Acts on what claiming the key decided.
    fn claimed(&mut self, env: &mut Env<'_>, claimed: Claimed) -> Step {
        match claimed {
            Claimed::Execute { renew_at } => {
                self.timer = Some((renew_at, TimerPurpose::Renew));
                self.forward(env)
            }
            Claimed::Replay(reply) => {
                self.stage = Stage::Answered;
                Step::Reply(reply)
            }
            Claimed::Refuse(reply) => self.answer(env, reply),
            Claimed::Wait { wake_at } => {
                self.stage = Stage::WaitForKey;
                let purpose = TimerPurpose::Poll;
                Step::Await(Await::Timer { wake_at, purpose })
            }
            Claimed::Unkeyed => {
                self.key = RequestKey::NotKeyed;
                self.forward(env)
            }
        }
    }

    /// The routed upstream, when this request is forwarded by callout.
    fn callout_upstream<'p>(&self, plugin: &'p Plugin) -> Option<&'p UpstreamConfig> {
        let (_, upstream) = routed(plugin, self.upstream)?;
        (upstream.forward == Forward::Callout && self.intake.is_some()).then_some(upstream)
    }

    /// Callout mode starts levee's own attempts; router mode asks the upstream's breaker,
    /// then lets the router forward.
    fn forward(&mut self, env: &mut Env<'_>) -> Step {
        let plugin = env.plugin;
        if self.callout_upstream(plugin).is_some() {
            return self.start_callout(env);
        }
        let Some((index, upstream)) = routed(plugin, self.upstream) else {
            return self.forwarded(RouterForward::default());
        };
        match RouterForward::admit(upstream, index, env.store, env.now, env.metrics) {
            Ok(router) => self.forwarded(router),
            Err(retry_after_ns) => {
                let reply = crate::breaker::open_reply(&upstream.name, retry_after_ns);
                // Not forwarded: the key is released when the chain answers — unless a
                // secondary cluster or the queue takes the request on.
                self.defer_result(UpstreamResult::RejectedBeforeForwarding, None);
                self.run_fallbacks(env, Forward::Router, true, Some(reply))
            }
        }
    }

    fn forwarded(&mut self, router: RouterForward) -> Step {
        self.mark_forwarded();
        self.stage = Stage::Forwarded(router);
        Step::Continue
    }

    /// The upstream may act on the request from now on (its key is then not released).
    fn mark_forwarded(&mut self) {
        if let Some(k) = self.key.keyed_mut() {
            k.mark_forwarded();
        }
    }

    /// levee answers the request itself; a claimed idempotency key is released (the request
    /// was never forwarded).
    fn answer(&mut self, env: &mut Env<'_>, reply: LocalReply) -> Step {
        if let (Some(k), Some(mut ke)) = (self.key.keyed_mut(), key_env(env)) {
            k.release_unforwarded(&mut ke);
        }
        self.write_remote_ending(env);
        self.finish_reply(reply)
    }

    /// Every levee-made answer: the headers levee adds (rate-limit headers, the key echo).
    fn finish_reply(&mut self, mut reply: LocalReply) -> Step {
        reply.headers.append(&mut self.response_headers);
        if let Some(k) = self.key.keyed() {
            reply.headers.push(k.echo());
        }
        self.stage = Stage::Answered;
        Step::Reply(reply)
    }
}

/// The idempotency layer's view of `env`, when the layer is configured.
fn key_env<'e>(env: &'e mut Env<'_>) -> Option<KeyEnv<'e>> {
    Some(KeyEnv {
        layer: env.plugin.idempotency.as_ref()?,
        store: env.store,
        now: env.now,
        metrics: &mut *env.metrics,
    })
}
