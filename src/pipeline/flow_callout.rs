//! Callout mode's part of [`RequestFlow`]: buffer the whole request, hand it to a
//! [`CalloutForward`], carry out its steps (dispatch, back off, answer), and on failure run
//! the upstream's fallback chain.

use crate::config::{Forward, UpstreamConfig};
use crate::forward::{
    BufferedRequest, CalloutAnswer, CalloutForward, FailureInfo, FinalAnswer, ForwardStep,
};
use crate::idempotency::machine::Outcome;
use crate::idempotency::outcome::{classify, OutcomeKind, UpstreamResult};
use crate::idempotency::response::StoredResponse;
use crate::problem::{is_grpc, problem, LocalReply, ProblemKind};
use crate::request::RequestAttributes;
use crate::timer_queue::TimerPurpose;

use super::flow::{RequestFlow, Stage, Step};
use super::Env;
use super::Plugin;

/// Whether a request may be forwarded by callout: gRPC, upgrades (WebSocket) and CONNECT
/// stream and cannot be buffered, so they always go through Envoy's router.
pub(super) fn callout_eligible(req: &dyn RequestAttributes) -> bool {
    !is_grpc(req.header("content-type"))
        && req.header("upgrade").is_none()
        && req.method() != "CONNECT"
}

/// An answer's status, headers and body, borrowed.
type AnswerParts<'a> = (u16, &'a [(String, String)], &'a [u8]);

fn lossy(headers: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

impl RequestFlow {
    /// The routed upstream, when it is forwarded by callout for this request.
    pub(super) fn callout_upstream<'p>(&self, plugin: &'p Plugin) -> Option<&'p UpstreamConfig> {
        let upstream = plugin.config.upstreams.get(self.upstream?)?;
        (upstream.forward == Forward::Callout && self.callout_head.is_some()).then_some(upstream)
    }

    /// Starts the callout loop once the whole request is here.
    pub(super) fn start_callout(&mut self, env: &mut Env<'_>) -> Step {
        let Env {
            plugin, store, now, ..
        } = *env;
        let (Some(index), Some(head)) = (self.upstream, self.callout_head.take()) else {
            return Step::Continue;
        };
        let Some(upstream) = plugin.config.upstreams.get(index) else {
            return Step::Continue;
        };
        if !upstream.fallback.is_empty() {
            self.fallback_body = self.body.clone();
        }
        let request = BufferedRequest {
            body: std::mem::take(&mut self.body),
            ..head
        };
        let has_key = self.keyed.is_some() || self.has_key_header;
        let mut forward = CalloutForward::new(index, upstream, request, has_key, now);
        let step = forward.next(store, now, env.rng, env.metrics);
        self.callout = Some(forward);
        self.stage = Stage::Callout;
        self.carry_out(env, step).unwrap_or(Step::AwaitBody)
    }

    /// A callout answer arrived for this request.
    pub fn on_callout_response(
        &mut self,
        env: &mut Env<'_>,
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: Vec<u8>,
    ) -> Option<Step> {
        let Env { store, now, .. } = *env;
        if self.secondary_pending() {
            return Some(self.on_secondary_response(env, headers, body));
        }
        let answer = CalloutAnswer::from_parts(headers, body);
        let step = self
            .callout
            .as_mut()?
            .on_response(store, answer, now, env.rng, env.metrics);
        self.carry_out(env, step)
    }

    /// The backoff wait is over.
    pub(super) fn callout_timer(&mut self, env: &mut Env<'_>) -> Option<Step> {
        let Env { store, now, .. } = *env;
        let step = self
            .callout
            .as_mut()?
            .next(store, now, env.rng, env.metrics);
        self.carry_out(env, step)
    }

    /// The dispatch itself failed (e.g. the cluster does not exist): a reset.
    pub fn on_dispatch_failed(&mut self, env: &mut Env<'_>) -> Option<Step> {
        log::warn!("levee: dispatch_http_call refused by Envoy (is the cluster defined?)");
        self.on_callout_response(env, None, Vec::new())
    }

    fn carry_out(&mut self, env: &mut Env<'_>, step: ForwardStep) -> Option<Step> {
        match step {
            ForwardStep::Dispatch(req) => Some(Step::Dispatch(req)),
            ForwardStep::Wait { until } => Some(Step::Hold {
                wake_at: until,
                purpose: TimerPurpose::Backoff,
            }),
            ForwardStep::Respond(answer) => Some(self.deliver(env, answer)),
            ForwardStep::Failed(info) => Some(self.callout_failed(env, info)),
            ForwardStep::Ignored => None,
        }
    }

    /// Answers the client with an upstream answer, recording it for idempotency first.
    fn deliver(&mut self, env: &mut Env<'_>, answer: FinalAnswer) -> Step {
        let Env {
            plugin, store, now, ..
        } = *env;
        let result = UpstreamResult::Response {
            status: answer.status,
            body_bytes: answer.body.len() as u64,
        };
        let headers = lossy(answer.headers);
        self.record_callout_outcome(env, result, Some((answer.status, &headers, &answer.body)));
        self.keep_in_cache(plugin, store, answer.status, &headers, &answer.body, now);
        self.finish_reply(LocalReply {
            status: answer.status,
            headers,
            body: answer.body,
            details: "levee_callout",
            grpc_status: None,
        })
    }

    /// Every attempt failed (or the breaker is open): fallbacks, else the failure's answer.
    fn callout_failed(&mut self, env: &mut Env<'_>, info: FailureInfo) -> Step {
        let Env { plugin, .. } = *env;
        let result = match (info.attempts, info.last_outcome) {
            (0, _) | (_, None) => UpstreamResult::RejectedBeforeForwarding,
            (_, Some(outcome)) => UpstreamResult::of_attempt(
                outcome,
                info.last_answer.as_ref().map_or(0, |a| a.body.len() as u64),
            ),
        };
        let upstream_name = self
            .upstream
            .and_then(|i| plugin.config.upstreams.get(i))
            .map(|u| u.name.clone())
            .unwrap_or_default();
        let default = if info.breaker_open {
            self.pending_result = Some((result, None));
            let mut reply =
                crate::breaker::open_reply(&upstream_name, info.retry_after_ns.unwrap_or(1));
            reply
                .headers
                .push(("x-levee-attempts".into(), info.attempts.to_string()));
            reply
        } else if let Some(answer) = info.last_answer {
            let headers = lossy(answer.headers);
            let parts = Some((answer.status, headers.as_slice(), answer.body.as_slice()));
            self.pending_result =
                Some((result, parts.map(|(st, h, b)| (st, h.to_vec(), b.to_vec()))));
            LocalReply {
                status: answer.status,
                headers,
                body: answer.body,
                details: "levee_callout",
                grpc_status: None,
            }
        } else {
            self.pending_result = Some((result, None));
            let mut reply = problem(
                ProblemKind::UpstreamFailure,
                info.status(),
                &format!(
                    "upstream \"{upstream_name}\" did not answer ({} attempt(s))",
                    info.attempts
                ),
                &[("upstream", &upstream_name)],
            );
            reply.details = info.details();
            reply
                .headers
                .push(("x-levee-attempts".into(), info.attempts.to_string()));
            reply
        };
        self.run_fallbacks(env, info.breaker_open, Some(default))
    }

    /// Records the ending a failed callout left pending (see `pending_result`), unless the
    /// request was queued (then the delivered answer completes the record).
    pub(super) fn flush_pending_result(&mut self, env: &mut Env<'_>) {
        if let Some((result, answer)) = self.pending_result.take() {
            let parts = answer
                .as_ref()
                .map(|(st, h, b)| (*st, h.as_slice(), b.as_slice()));
            self.record_callout_outcome(env, result, parts);
        }
    }

    /// Records a callout-mode request's ending in its idempotency record, if it owns one.
    fn record_callout_outcome(
        &mut self,
        env: &mut Env<'_>,
        result: UpstreamResult,
        answer: Option<AnswerParts<'_>>,
    ) {
        let Env { plugin, .. } = *env;
        let Some(layer) = &plugin.idempotency else {
            return;
        };
        if !self.owns_key() {
            return;
        }
        let outcome = match classify(&layer.config, result) {
            OutcomeKind::Released => Outcome::Released,
            OutcomeKind::Unknown => Outcome::Unknown,
            OutcomeKind::TooLarge => Outcome::TooLarge {
                status: answer.map_or(0, |a| a.0),
            },
            OutcomeKind::Stored => match answer {
                Some((status, headers, body)) => {
                    if let Some(k) = self.keyed.as_mut() {
                        k.capture = Some(StoredResponse {
                            status,
                            headers: headers.to_vec(),
                            body: body.to_vec(),
                        });
                    }
                    Outcome::Stored { status, body: None }
                }
                None => Outcome::Unknown,
            },
        };
        self.finish_key(env, outcome);
    }

    /// The request's head, kept for callout mode (method, path, authority, headers).
    pub(super) fn keep_callout_head(&mut self, plugin: &Plugin, req: &dyn RequestAttributes) {
        let header = plugin
            .idempotency
            .as_ref()
            .map_or("idempotency-key", |l| l.config.header.as_str());
        self.has_key_header = req.header(header).is_some_and(|v| !v.is_empty());
        self.callout_head = Some(BufferedRequest {
            method: req.method().to_string(),
            path: req.path_and_query().to_string(),
            authority: req
                .header(":authority")
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default(),
            headers: req.all_headers(),
            body: Vec::new(),
        });
    }

    /// The client went away: stop the callout loop.
    pub(super) fn cancel_callout(&mut self) {
        if let Some(c) = self.callout.as_mut() {
            c.cancel();
        }
    }
}
