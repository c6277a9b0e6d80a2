//! One request's progress through levee's layers, as a state machine the host drives.
//!
//! The host calls one method per Envoy callback and maps the returned [`Step`] to host calls;
//! timers the flow wants (lock renewals) are collected with [`RequestFlow::take_timer`].
//! The idempotency parts live in `flow_idempotency.rs`.

use crate::breaker::{Admission, Ticket};
use crate::config::Forward;
use crate::forward::{BufferedRequest, CalloutForward, CalloutRequest};
use crate::idempotency::response::StoredResponse;
use crate::idempotency::{FingerprintBuilder, IdempotencyKey};
use crate::outcome::classify_router;
use crate::problem::LocalReply;
use crate::ratelimit::admission::{self, RateAdmission};
use crate::request::RequestAttributes;
use crate::store::hash::KeyHash;
use crate::time::UnixNanos;
use crate::timer_queue::TimerPurpose;

use super::saved_request::SavedRequest;
use super::Enqueue;
use super::Env;
use crate::breaker::gate as breaker_gate;
use crate::idempotency::layer::KeyCheck;

/// How a failed callout ended, and its answer (status, headers, body) if it had one.
pub(super) type PendingResult = (
    crate::idempotency::outcome::UpstreamResult,
    Option<(u16, Vec<(String, String)>, Vec<u8>)>,
);

/// What the host should do next with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the request go on to the next filter (the router).
    Continue,
    /// Answer it now with this reply; the upstream never sees it.
    Reply(LocalReply),
    /// Keep it paused; call [`RequestFlow::on_timer`] with `purpose` at `wake_at`.
    Hold {
        wake_at: UnixNanos,
        purpose: TimerPurpose,
    },
    /// Keep it paused until its body arrives (no timer).
    AwaitBody,
    /// Keep it paused and send this callout; pass its answer to
    /// [`RequestFlow::on_callout_response`].
    Dispatch(CalloutRequest),
    /// Put the request on its upstream's queue, then call [`RequestFlow::on_enqueued`].
    Enqueue(Enqueue),
}

/// What the upstream answered, as seen in `on_http_response_headers` (router mode).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamAnswer {
    pub status: u16,
    /// Envoy's `response.flags` bitmask.
    pub flags: u64,
    /// All response headers, when [`RequestFlow::wants_response_headers`] asked for them.
    pub headers: Vec<(String, String)>,
    pub end_of_stream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Stage {
    #[default]
    New,
    /// Held by the leaky-bucket shaper until its release time.
    Shaped,
    /// Held until the whole body is read (idempotency fingerprint).
    AwaitBody,
    /// Held while another request holds the same idempotency key (`on_concurrent: wait`).
    WaitForKey,
    /// Passed on to the router.
    Forwarded,
    /// Forwarded by levee's own callouts (attempts, backoff waits).
    Callout,
    /// Answered by levee.
    Answered,
}

/// The idempotency part of a request's state.
#[derive(Debug)]
pub(super) struct Keyed {
    pub(super) key: IdempotencyKey,
    pub(super) hash: KeyHash,
    pub(super) fingerprint: Option<FingerprintBuilder>,
    /// The fingerprint once the body is complete (kept for re-claims while waiting).
    pub(super) finished_fingerprint: Option<crate::idempotency::Fingerprint>,
    pub(super) owner: u64,
    /// The record slot, once claimed.
    pub(super) slot: Option<u32>,
    pub(super) finished: bool,
    pub(super) wait_until: UnixNanos,
    /// The upstream answer being captured for storage.
    pub(super) capture: Option<StoredResponse>,
    pub(super) capture_overflow: bool,
}

/// Per-request state, created by the host for each HTTP stream.
#[derive(Debug, Default)]
pub struct RequestFlow {
    pub(super) stage: Stage,
    pub(super) method: String,
    pub(super) end_of_stream: bool,
    /// Request body bytes seen while held.
    pub(super) body_seen: u64,
    /// Headers to add to the upstream's response (rate-limit headers, key echo).
    pub(super) response_headers: Vec<(String, String)>,
    /// The upstream this request is routed to, if a `routes` entry matched.
    pub(super) upstream: Option<usize>,
    /// The breaker's admission ticket and when the request was forwarded.
    pub(super) ticket: Option<(Ticket, UnixNanos)>,
    /// The idempotency key check, made when headers arrived, acted on after rate limits.
    pub(super) key_check: Option<KeyCheck>,
    pub(super) keyed: Option<Keyed>,
    /// A timer for the host to schedule without pausing (lock renewal).
    pub(super) timer: Option<(UnixNanos, TimerPurpose)>,
    /// This request's random id (owner of an idempotency lock).
    pub(super) owner: u64,
    /// Callout mode: the request head, kept until the body is complete.
    pub(super) callout_head: Option<BufferedRequest>,
    pub(super) callout: Option<CalloutForward>,
    /// The request body, buffered for callout mode.
    pub(super) body: Vec<u8>,
    /// The request carries an `Idempotency-Key` (retries of non-idempotent methods need it).
    pub(super) has_key_header: bool,
    /// The request head, kept when the upstream has fallbacks or a cache.
    pub(super) saved: Option<SavedRequest>,
    /// The stale-cache key of this request, when its upstream has a cache.
    pub(super) cache_key: Option<Vec<u8>>,
    /// The fallback chain being walked.
    pub(super) fallback: Option<super::flow_fallback::FallbackRun>,
    /// The request body for the secondary cluster and the queue (callout mode).
    pub(super) fallback_body: Vec<u8>,
    /// A failed callout's ending, recorded for idempotency once the fallback chain decides
    /// (a queued request is completed by its delivery instead).
    pub(super) pending_result: Option<PendingResult>,
    /// The breaker was quiet when this request was admitted (see `breaker_gate`).
    pub(super) breaker_quiet: bool,
    /// The router forwarded the request (the upstream may have acted), whatever came after.
    pub(super) forwarded: bool,
    /// Router mode: an upstream answer being captured for the stale cache.
    pub(super) cache_capture: Option<StoredResponse>,
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
        let Env {
            plugin, store, now, ..
        } = *env;
        self.end_of_stream = end_of_stream;
        self.upstream = plugin.route(req);
        self.method = req.method().to_string();
        let callout = self
            .upstream
            .and_then(|i| plugin.config.upstreams.get(i))
            .is_some_and(|u| u.forward == Forward::Callout);
        if callout && super::flow_callout::callout_eligible(req) {
            self.keep_callout_head(plugin, req);
        }
        self.keep_for_fallbacks(plugin, req, end_of_stream);
        if let Some(layer) = &plugin.idempotency {
            match layer.check_key(&plugin.hasher, &plugin.config.client_ip, req) {
                KeyCheck::Keyed { key, hash } => {
                    let fingerprint = layer
                        .config
                        .fingerprint
                        .then(|| FingerprintBuilder::new(req.method(), req.path_and_query()));
                    self.keyed = Some(Keyed {
                        key,
                        hash,
                        fingerprint,
                        finished_fingerprint: None,
                        owner: self.owner,
                        slot: None,
                        finished: false,
                        wait_until: 0,
                        capture: None,
                        capture_overflow: false,
                    });
                }
                other => self.key_check = Some(other),
            }
        }
        if !plugin.limiter.is_empty() {
            match admission::admit(
                &plugin.limiter,
                &plugin.config,
                store,
                &plugin.hasher,
                req,
                now,
                env.metrics,
            ) {
                RateAdmission::Refuse(reply) => return self.answer(env, reply),
                RateAdmission::Pass {
                    headers,
                    hold_until,
                } => {
                    self.response_headers = headers;
                    if let Some(until) = hold_until {
                        self.stage = Stage::Shaped;
                        return Step::Hold {
                            wake_at: until,
                            purpose: TimerPurpose::Release,
                        };
                    }
                }
            }
        }
        self.after_rate_limits(env)
    }

    /// A timer this request asked for fired; `None` when there is nothing to do.
    pub fn on_timer(&mut self, env: &mut Env<'_>, purpose: TimerPurpose) -> Option<Step> {
        let Env {
            plugin, store, now, ..
        } = *env;
        match (self.stage, purpose) {
            (Stage::Shaped, TimerPurpose::Release) => Some(self.after_rate_limits(env)),
            (Stage::Callout, TimerPurpose::Backoff) => self.callout_timer(env),
            (Stage::AwaitBody, TimerPurpose::BodyGuard) if self.body_seen == 0 => {
                Some(self.body_not_delivered(env))
            }
            (Stage::WaitForKey, TimerPurpose::Poll) => Some(self.claim_key(env)),
            (_, TimerPurpose::Renew) => {
                self.renew_lock(plugin, store, now);
                None
            }
            _ => None,
        }
    }

    /// While levee holds the request, body callbacks must hold it too (else Envoy lets it go).
    pub fn holds_request(&self) -> bool {
        matches!(
            self.stage,
            Stage::Shaped | Stage::AwaitBody | Stage::WaitForKey | Stage::Callout
        )
    }

    /// Whether request body chunks should be passed to [`RequestFlow::on_request_body`].
    pub fn wants_body(&self) -> bool {
        // While the shaper holds the request, Envoy may deliver (and then never repeat) the
        // body: read it then too, if a later layer will need it.
        self.stage == Stage::AwaitBody || (self.stage == Stage::Shaped && self.needs_body())
    }

    /// A later layer needs the whole body: the idempotency fingerprint or callout mode.
    fn needs_body(&self) -> bool {
        let fingerprint = self.keyed.as_ref().is_some_and(|k| k.fingerprint.is_some());
        fingerprint || self.callout_head.is_some()
    }

    /// Request body bytes already passed in (the host reads only what is new).
    pub fn body_seen(&self) -> u64 {
        self.body_seen
    }

    /// A timer to schedule without pausing the request, if any.
    pub fn take_timer(&mut self) -> Option<(UnixNanos, TimerPurpose)> {
        self.timer.take()
    }

    /// The upstream's response headers arrived: feed the breaker and the idempotency record,
    /// and return the headers levee adds.
    pub fn on_response_headers(
        &mut self,
        env: &mut Env<'_>,
        answer: UpstreamAnswer,
    ) -> (Vec<(String, String)>, Option<Step>) {
        let Env {
            plugin, store, now, ..
        } = *env;
        if self.stage != Stage::Forwarded {
            return (std::mem::take(&mut self.response_headers), None);
        }
        let sent_at = self.ticket.map(|(_, at)| at).unwrap_or(now);
        let outcome = classify_router(answer.status, answer.flags, now.saturating_sub(sent_at));
        if let (Some(index), Some((ticket, _))) = (self.upstream, self.ticket.take()) {
            if let Some(upstream) = plugin.config.upstreams.get(index) {
                let quiet = self.breaker_quiet;
                breaker_gate::record_unless_quiet(
                    upstream,
                    index,
                    store,
                    ticket,
                    quiet,
                    &outcome,
                    now,
                    env.metrics,
                );
            }
        }
        let has_fallbacks = self
            .upstream
            .and_then(|i| plugin.config.upstreams.get(i))
            .is_some_and(|u| !u.fallback.is_empty());
        let status = answer.status;
        let end_of_stream = answer.end_of_stream;
        if self.cache_wants(plugin, status, &answer.headers) && !end_of_stream {
            self.cache_capture = Some(StoredResponse {
                status,
                headers: answer.headers.clone(),
                body: Vec::new(),
            });
        }
        // The upstream saw the request: its answer decides the idempotency record, whatever a
        // fallback then shows the client.
        self.idempotency_response_headers(env, &outcome, answer);
        if has_fallbacks && crate::outcome::is_failure(&outcome) {
            let step = self.run_fallbacks(env, false, None);
            if step != Step::Continue {
                // The upstream's body will not pass: keep "completed with its status" only.
                self.cache_capture = None;
                self.finish_without_body(env, status);
                return (Vec::new(), Some(step));
            }
        }
        (std::mem::take(&mut self.response_headers), None)
    }

    /// Whether the response callback needs the upstream's status, flags and headers.
    pub fn wants_response_headers(&self) -> bool {
        self.stage == Stage::Forwarded
            && (self.ticket.is_some() || self.owns_key() || self.saved.is_some())
    }

    /// Whether the response callback needs every response header (to store or cache the
    /// answer), not just the status.
    pub fn wants_response_header_list(&self) -> bool {
        self.owns_key() || self.saved.is_some()
    }

    /// Rate limits passed: bad keys are refused; a request whose body levee needs (the
    /// idempotency fingerprint, callout mode) is held until the body is complete.
    fn after_rate_limits(&mut self, env: &mut Env<'_>) -> Step {
        if let Some(step) = self.refuse_bad_key(env) {
            return step;
        }
        if self.needs_body() && !self.end_of_stream {
            self.stage = Stage::AwaitBody;
            return Step::AwaitBody;
        }
        self.after_body(env)
    }

    /// The request is complete: claim its idempotency key (which forwards), or forward.
    pub(super) fn after_body(&mut self, env: &mut Env<'_>) -> Step {
        if self.keyed.is_some() {
            return self.claim_key(env);
        }
        self.forward(env)
    }

    /// Callout mode starts levee's own attempts; router mode asks the upstream's breaker,
    /// then lets the router forward.
    pub(super) fn forward(&mut self, env: &mut Env<'_>) -> Step {
        let Env {
            plugin, store, now, ..
        } = *env;
        if self.callout_upstream(plugin).is_some() {
            return self.start_callout(env);
        }
        let Some((index, upstream)) = self
            .upstream
            .and_then(|i| plugin.config.upstreams.get(i).map(|u| (i, u)))
        else {
            self.stage = Stage::Forwarded;
            self.forwarded = true;
            return Step::Continue;
        };
        let (admission, quiet) =
            breaker_gate::admit_noting_quiet(upstream, index, store, now, env.metrics);
        self.breaker_quiet = quiet;
        match admission {
            Admission::Allow(ticket) | Admission::Probe { ticket, .. } => {
                if upstream.circuit_breaker.is_some() {
                    self.ticket = Some((ticket, now));
                }
                self.stage = Stage::Forwarded;
                self.forwarded = true;
                self.forwarded = true;
                Step::Continue
            }
            Admission::Reject { retry_after_ns } => {
                let reply = crate::breaker::open_reply(&upstream.name, retry_after_ns);
                // Not forwarded: the key is released when the chain answers — unless a
                // secondary cluster or the queue takes the request on.
                self.pending_result = Some((
                    crate::idempotency::outcome::UpstreamResult::RejectedBeforeForwarding,
                    None,
                ));
                self.run_fallbacks(env, true, Some(reply))
            }
        }
    }

    /// levee answers the request itself; a claimed idempotency key is released (the request
    /// was never forwarded).
    pub(super) fn answer(&mut self, env: &mut Env<'_>, reply: LocalReply) -> Step {
        self.release_unforwarded(env);
        self.finish_reply(reply)
    }

    /// Every levee-made answer: the headers levee adds (rate-limit headers, the key echo).
    pub(super) fn finish_reply(&mut self, mut reply: LocalReply) -> Step {
        reply.headers.append(&mut self.response_headers);
        if let Some(k) = &self.keyed {
            reply
                .headers
                .push(("x-idempotency-key".into(), k.key.header_value()));
        }
        self.stage = Stage::Answered;
        Step::Reply(reply)
    }
}
