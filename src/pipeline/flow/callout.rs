//! Callout mode's part of the sequence: the buffered request goes to a [`CalloutForward`],
//! whose steps (dispatch, back off, answer, fail) become the request's steps; a failure runs
//! the upstream's fallback chain.

use crate::config::Forward;
use crate::forward::reply::{answer_reply, failure};
use crate::forward::{CalloutAnswer, CalloutForward, FailureInfo, FinalAnswer, ForwardStep};
use crate::outcome::UpstreamResult;
use crate::pipeline::Env;
use crate::timer_queue::TimerPurpose;

use super::{key_env, routed, Await, RequestFlow, Stage, Step};

impl RequestFlow {
    /// Starts the callout loop once the whole request is here.
    pub(super) fn start_callout(&mut self, env: &mut Env<'_>) -> Step {
        let plugin = env.plugin;
        let (Some((index, upstream)), Some(intake)) =
            (routed(plugin, self.upstream), self.intake.take())
        else {
            return Step::Continue;
        };
        let has_key = self.key.keyed().is_some() || intake.has_key_header;
        let request = intake.finish();
        if let Some(kept) = self.kept.as_mut().filter(|_| !upstream.fallback.is_empty()) {
            kept.saved.body = std::rc::Rc::clone(&request.body);
        }
        let mut forward = CalloutForward::new(index, upstream, request, has_key, env.now);
        let step = forward.next(env.store, env.now, env.rng, env.metrics);
        self.stage = Stage::Callout(Box::new(forward));
        self.carry_out(env, step)
            .unwrap_or(Step::Await(Await::Body))
    }

    /// A callout answer: the secondary cluster's, or an attempt's.
    pub(super) fn callout_answered(
        &mut self,
        env: &mut Env<'_>,
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: Vec<u8>,
    ) -> Option<Step> {
        match std::mem::take(&mut self.stage) {
            Stage::Secondary(run) => Some(self.secondary_answered(env, *run, headers, body)),
            Stage::Callout(mut forward) => {
                let answer = CalloutAnswer::from_parts(headers, body);
                let step = forward.on_response(env.store, answer, env.now, env.rng, env.metrics);
                self.stage = Stage::Callout(forward);
                self.carry_out(env, step)
            }
            other => {
                self.stage = other;
                None
            }
        }
    }

    /// Acts on the callout forward's decision.
    pub(super) fn carry_out(&mut self, env: &mut Env<'_>, step: ForwardStep) -> Option<Step> {
        if matches!(&self.stage, Stage::Callout(f) if f.attempts() > 0) {
            self.mark_forwarded();
        }
        match step {
            ForwardStep::Dispatch(req) => Some(Step::Await(Await::Callout(req))),
            ForwardStep::Wait { until } => Some(Step::Await(Await::Timer {
                wake_at: until,
                purpose: TimerPurpose::Backoff,
            })),
            ForwardStep::Respond(answer) => Some(self.deliver(env, answer)),
            ForwardStep::Failed(info) => Some(self.callout_failed(env, info)),
            ForwardStep::Ignored => None,
        }
    }

    /// Answers the client with an upstream answer, recording it for idempotency first.
    pub(super) fn deliver(&mut self, env: &mut Env<'_>, answer: FinalAnswer) -> Step {
        let reply = answer_reply(answer);
        let parts = (
            reply.status,
            reply.headers.as_slice(),
            reply.body.as_slice(),
        );
        let result = UpstreamResult::Response {
            status: reply.status,
            body_bytes: reply.body.len() as u64,
        };
        if let (Some(k), Some(mut ke)) = (self.key.keyed_mut(), key_env(env)) {
            k.record(&mut ke, result, Some(parts));
        }
        self.keep_in_cache(env, parts);
        self.write_remote_ending(env);
        self.finish_reply(reply)
    }

    /// Every attempt failed (or the breaker is open): fallbacks, else the failure's answer.
    pub(super) fn callout_failed(&mut self, env: &mut Env<'_>, info: FailureInfo) -> Step {
        let plugin = env.plugin;
        let name = routed(plugin, self.upstream).map_or("", |(_, u)| u.name.as_str());
        let breaker_open = info.breaker_open;
        let failed = failure(info, name);
        self.defer_result(failed.result, failed.answer);
        self.run_fallbacks(env, Forward::Callout, breaker_open, Some(failed.reply))
    }
}
