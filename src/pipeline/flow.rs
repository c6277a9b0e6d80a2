//! One request's progress through levee's layers.

use crate::config::Mode;
use crate::metrics::Metrics;
use crate::problem::{problem, LocalReply, ProblemKind};
use crate::ratelimit::engine::Verdict;
use crate::ratelimit::headers::rate_limit_headers;
use crate::request::RequestAttributes;
use crate::store::SharedStore;
use crate::time::UnixNanos;
use crate::timer_queue::TimerPurpose;

use super::Plugin;

/// What the host should do next with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the request go on to the next filter (the router).
    Continue,
    /// Answer it now with this reply; the upstream never sees it.
    Reply(LocalReply),
    /// Keep it paused; call [`RequestFlow::on_timer`] with `purpose` at `wake_at`.
    Hold { wake_at: UnixNanos, purpose: TimerPurpose },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    #[default]
    New,
    /// Held by the leaky-bucket shaper until its release time.
    Shaped,
    /// Passed on to the router.
    Forwarded,
    /// Answered by levee.
    Answered,
}

/// Per-request state, created by the host for each HTTP stream.
#[derive(Debug, Default)]
pub struct RequestFlow {
    stage: Stage,
    /// Headers to add to the upstream's response (rate-limit headers).
    response_headers: Vec<(String, String)>,
}

impl RequestFlow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Request headers arrived.
    pub fn on_request_headers(
        &mut self,
        plugin: &Plugin,
        store: &dyn SharedStore,
        req: &dyn RequestAttributes,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Step {
        if !plugin.limiter.is_empty() {
            let check = plugin.limiter.check(store, &plugin.hasher, &plugin.config.client_ip, req, now, metrics);
            let style = plugin.config.rate_limit_headers;
            match check.verdict {
                Verdict::Reject { limit, .. } => {
                    let cfg = &plugin.limiter.limits[limit].config;
                    let mut reply = problem(
                        ProblemKind::RateLimited,
                        cfg.status,
                        &format!("rate limit \"{}\" exceeded", cfg.name),
                        &[("limit", &cfg.name)],
                    );
                    match &check.headline {
                        Some(h) => {
                            let window = plugin.limiter.limits[h.limit].params.window_ns;
                            reply.headers.extend(rate_limit_headers(style, &cfg.name, window, &h.evaluation, true, now));
                        }
                        None => reply.headers.push(("retry-after".into(), "1".into())),
                    }
                    return self.answer(reply);
                }
                Verdict::Admit | Verdict::Delay { .. } => {
                    if let Some(h) = &check.headline {
                        let limit = &plugin.limiter.limits[h.limit];
                        if limit.config.mode == Mode::Enforce {
                            self.response_headers = rate_limit_headers(
                                style,
                                &limit.config.name,
                                limit.params.window_ns,
                                &h.evaluation,
                                false,
                                now,
                            );
                        }
                    }
                    if let Verdict::Delay { until } = check.verdict {
                        if until > now {
                            self.stage = Stage::Shaped;
                            return Step::Hold { wake_at: until, purpose: TimerPurpose::Release };
                        }
                    }
                }
            }
        }
        self.after_rate_limits()
    }

    /// A timer this request asked for fired.
    pub fn on_timer(&mut self, purpose: TimerPurpose, _now: UnixNanos) -> Option<Step> {
        match (self.stage, purpose) {
            (Stage::Shaped, TimerPurpose::Release) => Some(self.after_rate_limits()),
            _ => None,
        }
    }

    /// A request body chunk arrived: while levee holds the request, it must stay held.
    pub fn holds_request(&self) -> bool {
        matches!(self.stage, Stage::New | Stage::Shaped)
    }

    /// Headers to add to the upstream response.
    pub fn take_response_headers(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.response_headers)
    }

    fn after_rate_limits(&mut self) -> Step {
        self.stage = Stage::Forwarded;
        Step::Continue
    }

    fn answer(&mut self, reply: LocalReply) -> Step {
        self.stage = Stage::Answered;
        Step::Reply(reply)
    }
}
