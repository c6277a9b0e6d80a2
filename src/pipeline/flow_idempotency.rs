//! The idempotency layer's part of [`RequestFlow`]: reading the body for the fingerprint,
//! claiming the key, replaying, waiting, renewing the lock, and recording how it ended.

use crate::config::{OnConcurrent, OnInternalError};
use crate::idempotency::machine::{renew_interval_ns, Begin, Outcome};
use crate::idempotency::outcome::{classify, OutcomeKind, UpstreamResult};
use crate::idempotency::replay::Replay;
use crate::idempotency::response::StoredResponse;
use crate::idempotency::Fingerprint;
use crate::metrics::{Event, GlobalEvent, IdempotencyEvent};
use crate::problem::{problem, LocalReply, ProblemKind};
use crate::retry::outcome::AttemptOutcome;
use crate::store::SharedStore;
use crate::time::{duration_nanos, retry_after_seconds, UnixNanos, NANOS_PER_MILLI};
use crate::timer_queue::TimerPurpose;

use super::flow::{RequestFlow, Stage, Step, UpstreamAnswer};
use super::idempotency_gate::{HeldKey, KeyCheck};
use super::Env;
use super::Plugin;

/// How often a request waiting for another one's key (`on_concurrent: wait`) looks again.
const WAIT_POLL_NS: u64 = 50 * NANOS_PER_MILLI;

impl RequestFlow {
    /// Whether the upstream may have seen the request (router forward, or a callout sent).
    pub(super) fn was_forwarded(&self) -> bool {
        self.forwarded || self.callout.as_ref().is_some_and(|c| c.attempts() > 0)
    }

    pub(super) fn owns_key(&self) -> bool {
        self.keyed
            .as_ref()
            .is_some_and(|k| k.slot.is_some() && !k.finished)
    }

    /// A missing (when required) or invalid key is refused with `400`.
    pub(super) fn refuse_bad_key(&mut self, env: &mut Env<'_>) -> Option<Step> {
        let Env { plugin, .. } = *env;
        let layer = plugin.idempotency.as_ref()?;
        let reply = match self.key_check.take()? {
            KeyCheck::Missing => {
                let detail = format!("this request needs the {} header", layer.config.header);
                problem(ProblemKind::IdempotencyKeyMissing, 400, &detail, &[])
            }
            KeyCheck::Invalid(e) => {
                problem(ProblemKind::IdempotencyKeyInvalid, 400, &e.to_string(), &[])
            }
            KeyCheck::NotKeyed | KeyCheck::Keyed { .. } => return None,
        };
        env.metrics
            .count(Event::Idempotency(IdempotencyEvent::InvalidKey));
        Some(self.answer(env, reply))
    }

    /// A chunk of the request body arrived while held for it.
    pub fn on_request_body(
        &mut self,
        env: &mut Env<'_>,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Step {
        let Env { plugin, .. } = *env;
        self.body_seen = self.body_seen.saturating_add(chunk.len() as u64);
        let idem_max = plugin
            .idempotency
            .as_ref()
            .filter(|_| self.keyed.is_some())
            .map(|l| l.config.max_body_bytes);
        let callout_max = self.callout_upstream(plugin).map(|u| u.max_body_bytes);
        let max = idem_max
            .into_iter()
            .chain(callout_max)
            .min()
            .unwrap_or(u64::MAX);
        if self.body_seen > max {
            let detail = format!("the request body exceeds {max} bytes (max_body_bytes)");
            let reply = problem(ProblemKind::PayloadTooLarge, 413, &detail, &[]);
            return self.answer(env, reply);
        }
        if let Some(fp) = self.keyed.as_mut().and_then(|k| k.fingerprint.as_mut()) {
            fp.update(chunk);
        }
        if self.callout_head.is_some() {
            self.body.extend_from_slice(chunk);
        }
        if end_of_stream {
            // The whole request is here (`after_rate_limits` sees it so once the shaper lets
            // a held request go).
            self.end_of_stream = true;
            if self.stage == Stage::Shaped {
                return Step::AwaitBody;
            }
            self.after_body(env)
        } else {
            Step::AwaitBody
        }
    }

    /// The body never came: `allow_on_headers_stop_iteration` is missing from the plugin config.
    pub(super) fn body_not_delivered(&mut self, env: &mut Env<'_>) -> Step {
        // The host logs one critical line per worker; this one is per request.
        log::debug!("levee: a request held for its body saw no body callback");
        env.metrics
            .count(Event::Global(GlobalEvent::BodyNotDelivered));
        let reply = problem(
            ProblemKind::BodyNotDelivered,
            500,
            "levee needs the request body, but Envoy did not pass it: set allow_on_headers_stop_iteration: true in the wasm plugin config",
            &[("setting", "allow_on_headers_stop_iteration")],
        );
        self.answer(env, reply)
    }

    /// Claims the key: execute, replay, conflict, mismatch.
    pub(super) fn claim_key(&mut self, env: &mut Env<'_>) -> Step {
        let Env {
            plugin, store, now, ..
        } = *env;
        let (Some(layer), Some(keyed)) = (&plugin.idempotency, self.keyed.as_mut()) else {
            return self.forward(env);
        };
        if let Some(builder) = keyed.fingerprint.take() {
            keyed.finished_fingerprint = Some(builder.finish());
        }
        let fingerprint = keyed.finished_fingerprint.unwrap_or(Fingerprint([0; 16]));
        let claim = match layer.claim(store, keyed.hash, fingerprint, keyed.owner, now) {
            Ok(c) => c,
            Err(e) => {
                env.metrics.count(Event::Global(GlobalEvent::InternalError));
                log::warn!("levee idempotency: cannot claim a key ({e:?})");
                if layer.config.on_internal_error == OnInternalError::Allow {
                    self.keyed = None;
                    return self.forward(env);
                }
                let reply = problem(
                    ProblemKind::Internal,
                    503,
                    "levee could not record the idempotency key",
                    &[],
                );
                return self.answer(env, reply);
            }
        };
        if claim.evicted {
            env.metrics
                .count(Event::Idempotency(IdempotencyEvent::Evicted));
        }
        let echo = keyed.key.header_value();
        match claim.begin {
            Begin::Execute { .. } => {
                keyed.slot = Some(claim.slot);
                self.timer = Some((
                    now.saturating_add(renew_interval_ns(&layer.config)),
                    TimerPurpose::Renew,
                ));
                self.forward(env)
            }
            Begin::Replay { record } => match layer.replay(store, &record, &echo) {
                Replay::Answer(stored) => {
                    env.metrics
                        .count(Event::Idempotency(IdempotencyEvent::Replayed));
                    self.stage = Stage::Answered;
                    Step::Reply(LocalReply {
                        status: stored.status,
                        headers: stored.headers,
                        body: stored.body,
                        details: "levee_idempotent_replay",
                        grpc_status: None,
                    })
                }
                Replay::Gone { status } => self.completed_conflict(env, status),
            },
            Begin::CompletedTooLarge { status } => self.completed_conflict(env, status),
            Begin::Mismatch => {
                env.metrics
                    .count(Event::Idempotency(IdempotencyEvent::Mismatch));
                let reply = problem(
                    ProblemKind::IdempotencyMismatch,
                    422,
                    "this idempotency key was used for a different request (method, path or body)",
                    &[],
                );
                self.answer(env, reply)
            }
            Begin::Conflict { retry_after_ns } => {
                if keyed.wait_until == 0 {
                    env.metrics
                        .count(Event::Idempotency(IdempotencyEvent::Conflict));
                }
                if layer.config.on_concurrent == OnConcurrent::Wait {
                    if keyed.wait_until == 0 {
                        keyed.wait_until =
                            now.saturating_add(duration_nanos(layer.config.lock_timeout));
                    }
                    if now < keyed.wait_until {
                        self.stage = Stage::WaitForKey;
                        return Step::Hold {
                            wake_at: now.saturating_add(WAIT_POLL_NS),
                            purpose: TimerPurpose::Poll,
                        };
                    }
                }
                let mut reply = problem(
                    ProblemKind::IdempotencyConflict,
                    409,
                    "a request with this idempotency key is still being processed",
                    &[],
                );
                reply.headers.push((
                    "retry-after".into(),
                    retry_after_seconds(retry_after_ns).to_string(),
                ));
                self.answer(env, reply)
            }
        }
    }

    fn completed_conflict(&mut self, env: &mut Env<'_>, status: u16) -> Step {
        env.metrics
            .count(Event::Idempotency(IdempotencyEvent::Conflict));
        let detail = format!("a request with this idempotency key already completed with status {status}; its answer was not kept");
        let reply = problem(
            ProblemKind::IdempotencyCompleted,
            409,
            &detail,
            &[("completed_status", &status.to_string())],
        );
        self.answer(env, reply)
    }

    /// The lock renewal timer fired.
    pub(super) fn renew_lock(&mut self, plugin: &Plugin, store: &dyn SharedStore, now: UnixNanos) {
        let (Some(layer), Some(keyed)) = (&plugin.idempotency, &self.keyed) else {
            return;
        };
        if keyed.slot.is_none() || keyed.finished {
            return;
        }
        if layer.renew(store, keyed.hash, keyed.owner, now) {
            self.timer = Some((
                now.saturating_add(renew_interval_ns(&layer.config)),
                TimerPurpose::Renew,
            ));
        }
    }

    /// The claimed key is given back: the request never reached the upstream.
    pub(super) fn release_unforwarded(&mut self, env: &mut Env<'_>) {
        if !self.was_forwarded() && self.owns_key() {
            self.finish_key(env, Outcome::Released);
        }
    }

    pub(super) fn finish_key(&mut self, env: &mut Env<'_>, outcome: Outcome) {
        let Env {
            plugin, store, now, ..
        } = *env;
        let (Some(layer), Some(keyed)) = (&plugin.idempotency, self.keyed.as_mut()) else {
            return;
        };
        let Some(slot) = keyed.slot else { return };
        keyed.finished = true;
        let event = match outcome {
            Outcome::Released => IdempotencyEvent::Released,
            Outcome::Unknown => IdempotencyEvent::Unknown,
            Outcome::Stored { .. } => IdempotencyEvent::Stored,
            Outcome::TooLarge { .. } => IdempotencyEvent::TooLarge,
        };
        env.metrics.count(Event::Idempotency(event));
        if event == IdempotencyEvent::TooLarge {
            log::warn!("levee idempotency: an answer over max_body_bytes was passed through; only its status is kept");
        }
        let capture = keyed.capture.take();
        if layer
            .complete(
                store,
                HeldKey {
                    hash: keyed.hash,
                    slot,
                    owner: keyed.owner,
                },
                outcome,
                capture.as_ref(),
                now,
            )
            .is_err()
        {
            env.metrics.count(Event::Global(GlobalEvent::InternalError));
        }
    }

    /// Response headers of a forwarded keyed request: classify and start capturing.
    pub(super) fn idempotency_response_headers(
        &mut self,
        env: &mut Env<'_>,
        outcome: &AttemptOutcome,
        answer: UpstreamAnswer,
    ) {
        let Env { plugin, .. } = *env;
        let Some(keyed) = &self.keyed else { return };
        self.response_headers
            .push(("x-idempotency-key".into(), keyed.key.header_value()));
        let Some(layer) = &plugin.idempotency else {
            return;
        };
        if !self.owns_key() {
            return;
        }
        let result = match *outcome {
            AttemptOutcome::Timeout => UpstreamResult::Timeout,
            AttemptOutcome::Reset => UpstreamResult::Reset,
            AttemptOutcome::Response {
                connect_failure: true,
                ..
            } => UpstreamResult::ConnectFailure,
            AttemptOutcome::Response { status, .. } => UpstreamResult::Response {
                status,
                body_bytes: 0,
            },
        };
        match classify(&layer.config, result) {
            OutcomeKind::Released => self.finish_key(env, Outcome::Released),
            OutcomeKind::Unknown => self.finish_key(env, Outcome::Unknown),
            OutcomeKind::Stored | OutcomeKind::TooLarge => {
                if let Some(k) = self.keyed.as_mut() {
                    k.capture = Some(StoredResponse {
                        status: answer.status,
                        headers: answer.headers,
                        body: Vec::new(),
                    });
                }
                if answer.end_of_stream {
                    self.finish_capture(env);
                }
            }
        }
    }

    /// A fallback replaced the upstream's answer before its body passed: a record that was
    /// capturing it keeps "completed with `status`" (a later same-key request gets `409`,
    /// never a second execution).
    pub(super) fn finish_without_body(&mut self, env: &mut Env<'_>, status: u16) {
        let capturing = self
            .keyed
            .as_mut()
            .is_some_and(|k| k.capture.take().is_some());
        if capturing {
            self.finish_key(env, Outcome::Stored { status, body: None });
        }
    }

    /// Whether response body chunks should be passed to [`RequestFlow::on_response_body`].
    pub fn wants_response_body(&self) -> bool {
        self.keyed.as_ref().is_some_and(|k| k.capture.is_some()) || self.cache_capture.is_some()
    }

    /// A chunk of the upstream's response body (router mode), observed without holding it.
    pub fn on_response_body(&mut self, env: &mut Env<'_>, chunk: &[u8], end_of_stream: bool) {
        let Env {
            plugin, store, now, ..
        } = *env;
        let max = plugin
            .idempotency
            .as_ref()
            .map_or(0, |l| l.config.max_body_bytes);
        if let Some(k) = self.keyed.as_mut() {
            if let Some(c) = k.capture.as_mut() {
                if !k.capture_overflow && (c.body.len() + chunk.len()) as u64 <= max {
                    c.body.extend_from_slice(chunk);
                } else {
                    k.capture_overflow = true;
                    c.body = Vec::new();
                }
            }
        }
        let cache_max = self
            .upstream
            .and_then(|i| plugin.config.upstreams.get(i))
            .and_then(|u| u.cache.as_ref())
            .map_or(0, |c| c.max_body_bytes);
        if let Some(c) = self.cache_capture.as_mut() {
            if (c.body.len() + chunk.len()) as u64 <= cache_max {
                c.body.extend_from_slice(chunk);
            } else {
                self.cache_capture = None;
            }
        }
        if end_of_stream {
            self.finish_capture(env);
            if let Some(c) = self.cache_capture.take() {
                self.keep_in_cache(plugin, store, c.status, &c.headers, &c.body, now);
            }
        }
    }

    fn finish_capture(&mut self, env: &mut Env<'_>) {
        let Some(k) = self.keyed.as_ref() else { return };
        let Some(c) = k.capture.as_ref() else { return };
        let outcome = if k.capture_overflow {
            Outcome::TooLarge { status: c.status }
        } else {
            Outcome::Stored {
                status: c.status,
                body: None,
            }
        };
        self.finish_key(env, outcome);
    }

    /// Whether [`RequestFlow::on_done`] has anything to do: an idempotency key still held,
    /// or a callout loop to stop.
    pub fn has_loose_ends(&self) -> bool {
        self.owns_key() || self.callout.as_ref().is_some_and(|c| c.is_active())
    }

    /// The stream ended (completed, reset, or the client went away).
    pub fn on_done(&mut self, env: &mut Env<'_>) {
        self.cancel_callout();
        if !self.owns_key() {
            return;
        }
        let outcome = if self.was_forwarded() {
            Outcome::Unknown
        } else {
            Outcome::Released
        };
        self.finish_key(env, outcome);
    }
}
