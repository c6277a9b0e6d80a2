//! One request's progress through levee's layers.

use crate::breaker::{Admission, Ticket};
use crate::config::{FallbackKind, Mode};
use crate::metrics::Metrics;
use crate::problem::{problem, LocalReply, ProblemKind};
use crate::ratelimit::engine::Verdict;
use crate::ratelimit::headers::rate_limit_headers;
use crate::request::RequestAttributes;
use crate::retry::outcome::classify_router;
use crate::store::SharedStore;
use crate::time::{retry_after_seconds, UnixNanos};
use crate::timer_queue::TimerPurpose;

use super::{breaker_gate, Plugin};

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
}

/// What the upstream answered, as seen in `on_http_response_headers` (router mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamAnswer {
    pub status: u16,
    /// Envoy's `response.flags` bitmask.
    pub flags: u64,
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
    method: String,
    /// Headers to add to the upstream's response (rate-limit headers).
    response_headers: Vec<(String, String)>,
    /// The upstream this request is routed to, if a `routes` entry matched.
    upstream: Option<usize>,
    /// The breaker's admission ticket and when the request was forwarded.
    ticket: Option<(Ticket, UnixNanos)>,
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
        self.upstream = plugin.route(req);
        if self.upstream.is_some() {
            self.method = req.method().to_string();
        }
        if !plugin.limiter.is_empty() {
            let check = plugin.limiter.check(
                store,
                &plugin.hasher,
                &plugin.config.client_ip,
                req,
                now,
                metrics,
            );
            let style = plugin.config.rate_limit_headers;
            match check.verdict {
                Verdict::Reject { limit, .. } => {
                    let cfg = &plugin.limiter.limits[limit].config;
                    log::debug!("levee: rate limit \"{}\" rejected a request", cfg.name);
                    let mut reply = problem(
                        ProblemKind::RateLimited,
                        cfg.status,
                        &format!("rate limit \"{}\" exceeded", cfg.name),
                        &[("limit", &cfg.name)],
                    );
                    match &check.headline {
                        Some(h) => {
                            let window = plugin.limiter.limits[h.limit].params.window_ns;
                            reply.headers.extend(rate_limit_headers(
                                style,
                                &cfg.name,
                                window,
                                &h.evaluation,
                                true,
                                now,
                            ));
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
                            return Step::Hold {
                                wake_at: until,
                                purpose: TimerPurpose::Release,
                            };
                        }
                    }
                }
            }
        }
        self.forward(plugin, store, now, metrics)
    }

    /// A timer this request asked for fired.
    pub fn on_timer(
        &mut self,
        plugin: &Plugin,
        store: &dyn SharedStore,
        purpose: TimerPurpose,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Option<Step> {
        match (self.stage, purpose) {
            (Stage::Shaped, TimerPurpose::Release) => {
                Some(self.forward(plugin, store, now, metrics))
            }
            _ => None,
        }
    }

    /// While levee holds the request, body callbacks must hold it too (else Envoy lets it go).
    pub fn holds_request(&self) -> bool {
        matches!(self.stage, Stage::Shaped)
    }

    /// The upstream's response headers arrived (router mode): feed the breaker, and return
    /// the headers levee adds.
    pub fn on_response_headers(
        &mut self,
        plugin: &Plugin,
        store: &dyn SharedStore,
        answer: UpstreamAnswer,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Vec<(String, String)> {
        if let (Some(index), Some((ticket, sent_at))) = (self.upstream, self.ticket.take()) {
            if let Some(upstream) = plugin.config.upstreams.get(index) {
                let outcome =
                    classify_router(answer.status, answer.flags, now.saturating_sub(sent_at));
                breaker_gate::record(upstream, index, store, ticket, &outcome, now, metrics);
            }
        }
        std::mem::take(&mut self.response_headers)
    }

    /// Whether the response callback needs the upstream's status and flags.
    pub fn wants_upstream_answer(&self) -> bool {
        self.ticket.is_some()
    }

    /// Rate limits passed: ask the upstream's breaker, then let the router forward.
    fn forward(
        &mut self,
        plugin: &Plugin,
        store: &dyn SharedStore,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Step {
        let Some(index) = self.upstream else {
            self.stage = Stage::Forwarded;
            return Step::Continue;
        };
        let Some(upstream) = plugin.config.upstreams.get(index) else {
            self.stage = Stage::Forwarded;
            return Step::Continue;
        };
        match breaker_gate::admit(upstream, index, store, now, metrics) {
            Admission::Allow(ticket) | Admission::Probe { ticket, .. } => {
                if upstream.circuit_breaker.is_some() {
                    self.ticket = Some((ticket, now));
                }
                self.stage = Stage::Forwarded;
                Step::Continue
            }
            Admission::Reject { retry_after_ns } => {
                if let Some(reply) = self.static_fallback(plugin, index) {
                    log::warn!(
                        "levee: upstream \"{}\" circuit open; serving the static fallback",
                        upstream.name
                    );
                    return self.answer(reply);
                }
                let mut reply = problem(
                    ProblemKind::CircuitOpen,
                    503,
                    &format!("the circuit to upstream \"{}\" is open", upstream.name),
                    &[("upstream", &upstream.name)],
                );
                reply.headers.push((
                    "retry-after".into(),
                    retry_after_seconds(retry_after_ns).to_string(),
                ));
                reply
                    .headers
                    .push(("x-levee-circuit".into(), "open".into()));
                reply.headers.append(&mut self.response_headers);
                self.answer(reply)
            }
        }
    }

    fn static_fallback(&self, plugin: &Plugin, index: usize) -> Option<LocalReply> {
        let upstream = plugin.config.upstreams.get(index)?;
        upstream.fallback.iter().find_map(|entry| {
            if !entry.methods.is_empty() && !entry.methods.contains(&self.method) {
                return None;
            }
            match &entry.kind {
                FallbackKind::Static {
                    status,
                    headers,
                    body,
                } => {
                    let mut h = headers.clone();
                    h.push(("x-levee-fallback".into(), "static".into()));
                    Some(LocalReply {
                        status: *status,
                        headers: h,
                        body: body.clone(),
                        details: "levee_fallback_static",
                        grpc_status: None,
                    })
                }
                _ => None,
            }
        })
    }

    fn answer(&mut self, reply: LocalReply) -> Step {
        self.stage = Stage::Answered;
        Step::Reply(reply)
    }
}
