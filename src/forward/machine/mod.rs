//! [`CalloutForward`]: one request's attempts, waits and final answer, as a state machine.
//!
//! ```text
//!        new ──▶ Ready ──next──▶ (breaker admit) ──▶ InFlight ──on_response──▶ (breaker record)
//!                  ▲                  │ open                                     │
//!                  │                  ▼                                          ▼
//!                  └──next── Waiting ◀── budget ok ◀── should_retry = Retry ◀─ failed?
//!                             (until)                                            │ no retry
//!                                                                                ▼
//!                                                                    Done: Respond | Failed
//! ```
//!
//! The host drives it: [`CalloutForward::next`] at the start and whenever a backoff wait is
//! over, [`CalloutForward::on_response`] when a callout finishes. Both return a
//! [`ForwardStep`]. A retry whose delay is zero dispatches at once from `on_response`.

use std::rc::Rc;

use crate::breaker::gate as breaker_gate;
use crate::breaker::{Admission, Ticket};
use crate::config::{OutcomeClass, RetryConfig, UpstreamConfig};
use crate::header_names::{RETRY_AFTER, X_RATELIMIT_RESET};
use crate::metrics::{Event, Metrics, UpstreamEvent};
use crate::outcome::{classify_callout, AttemptOutcome};
use crate::random::RandomSource;
use crate::request::saved::SavedRequest;
use crate::retry::policy::{
    attempt_timeout, should_retry, DelaySource, GiveUp, RetryDecision, RetryInput,
};
use crate::retry::Backoff;
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_MILLI};

use super::budget_gate;

mod ending;
use super::headers::{callout_headers, header_str, HeaderList};
use super::step::{CalloutAnswer, CalloutRequest, FailureInfo, ForwardStep};

/// How much of a response body the outcome classifier looks at.
const BODY_HINT_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet: `next` dispatches.
    Ready,
    /// Backing off until `until`: `next` dispatches from then on.
    Waiting { until: UnixNanos },
    /// An attempt is out: only `on_response` moves on.
    InFlight {
        ticket: Ticket,
        /// The breaker was quiet at admission: a success needs no shared-data write.
        breaker_quiet: bool,
        sent_at: UnixNanos,
        timeout_ns: u64,
    },
    /// Answered, failed or cancelled: every call is ignored.
    Done,
}

/// A retry the policy and the budget agreed to.
#[derive(Debug, Clone, Copy)]
struct PlannedRetry {
    delay_ns: u64,
    cause: OutcomeClass,
    source: DelaySource,
    max_retries: u32,
}

/// One callout-mode request, from its buffered body to its final answer.
#[derive(Debug, Clone)]
pub struct CalloutForward {
    index: usize,
    /// The upstream's settings that forwarding uses (its cache and fallbacks are left out:
    /// they are the caller's business and may be large).
    upstream: UpstreamConfig,
    cluster: String,
    method: String,
    has_idempotency_key: bool,
    /// The callout header list, built once and sent unchanged on every attempt.
    headers: Rc<HeaderList>,
    body: Rc<Vec<u8>>,
    /// When the request was buffered: the `deadline` counts from here.
    started_at: UnixNanos,
    attempts: u32,
    backoff: Option<Backoff>,
    deposited: bool,
    phase: Phase,
    last_outcome: Option<AttemptOutcome>,
}

impl CalloutForward {
    /// A forward for `request` to upstream number `upstream_index`, buffered at `now`.
    /// `has_idempotency_key`: the request carries the configured idempotency key (this is
    /// what `non_idempotent: "with_key"` asks). The cluster is `upstream.cluster` (the
    /// upstream's name if, against validation, there is none).
    pub fn new(
        upstream_index: usize,
        upstream: &UpstreamConfig,
        request: SavedRequest,
        has_idempotency_key: bool,
        now: UnixNanos,
    ) -> Self {
        let authority = upstream.authority.as_deref().unwrap_or(&request.authority);
        let headers = callout_headers(&request.method, &request.path, authority, &request.headers);
        Self {
            index: upstream_index,
            upstream: slim(upstream),
            cluster: upstream
                .cluster
                .clone()
                .unwrap_or_else(|| upstream.name.clone()),
            method: request.method,
            has_idempotency_key,
            headers: Rc::new(headers),
            body: request.body,
            started_at: now,
            attempts: 0,
            backoff: upstream.retry.as_ref().map(Backoff::from_config),
            deposited: false,
            phase: Phase::Ready,
            last_outcome: None,
        }
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// True while the host must hold the client's request (body callbacks return Pause).
    pub fn is_active(&self) -> bool {
        self.phase != Phase::Done
    }

    /// The client went away: nothing more happens (later calls are [`ForwardStep::Ignored`]).
    /// An attempt in flight is not recorded in the breaker; a HALF_OPEN probe slot it holds
    /// frees itself when its lease ends.
    pub fn cancel(&mut self) {
        self.phase = Phase::Done;
    }

    /// Starts the first attempt, or the next one once a backoff wait is over.
    pub fn next(
        &mut self,
        store: &dyn SharedStore,
        now: UnixNanos,
        _rng: &mut dyn RandomSource,
        metrics: &mut dyn Metrics,
    ) -> ForwardStep {
        match self.phase {
            Phase::InFlight { .. } | Phase::Done => ForwardStep::Ignored,
            Phase::Waiting { until } if now < until => ForwardStep::Wait { until },
            Phase::Ready | Phase::Waiting { .. } => self.attempt(store, now, metrics),
        }
    }

    /// The attempt in flight finished with `answer` at `now`.
    pub fn on_response(
        &mut self,
        store: &dyn SharedStore,
        answer: CalloutAnswer,
        now: UnixNanos,
        rng: &mut dyn RandomSource,
        metrics: &mut dyn Metrics,
    ) -> ForwardStep {
        let Phase::InFlight {
            ticket,
            breaker_quiet,
            sent_at,
            timeout_ns,
        } = self.phase
        else {
            return ForwardStep::Ignored;
        };
        let elapsed = now.saturating_sub(sent_at);
        let outcome = match &answer {
            CalloutAnswer::Reset => classify_callout(false, 0, elapsed, timeout_ns, &[]),
            CalloutAnswer::Response { status, body, .. } => {
                let hint = body.get(..BODY_HINT_LEN).unwrap_or(body);
                classify_callout(true, *status, elapsed, timeout_ns, hint)
            }
        };
        breaker_gate::record_unless_quiet(
            &self.upstream,
            self.index,
            store,
            ticket,
            breaker_quiet,
            &outcome,
            now,
            metrics,
        );
        self.last_outcome = Some(outcome);

        // The config is taken out for the call so that `decide` may borrow `self` mutably.
        let decision = self.upstream.retry.take().map(|cfg| {
            let (budget, max_retries) = (cfg.budget, cfg.max_retries);
            (
                self.decide(cfg, &answer, &outcome, now, rng),
                budget,
                max_retries,
            )
        });
        let gave_up = match decision {
            None => None,
            Some((RetryDecision::GiveUp(g), ..)) => Some(g),
            Some((
                RetryDecision::Retry {
                    delay_ns,
                    cause,
                    source,
                },
                budget,
                max_retries,
            )) => {
                let allowed = match &budget {
                    Some(b) => budget_gate::withdraw(b, &self.upstream.name, store, now, metrics),
                    None => true,
                };
                if allowed {
                    let retry = PlannedRetry {
                        delay_ns,
                        cause,
                        source,
                        max_retries,
                    };
                    return self.schedule_retry(retry, store, now, metrics);
                }
                self.count(metrics, UpstreamEvent::BudgetExhausted);
                Some(GiveUp::BudgetExhausted)
            }
        };
        self.finish(answer, outcome, gave_up, metrics)
    }

    /// Asks the retry policy about the attempt that just ended.
    fn decide(
        &mut self,
        cfg: RetryConfig,
        answer: &CalloutAnswer,
        outcome: &AttemptOutcome,
        now: UnixNanos,
        rng: &mut dyn RandomSource,
    ) -> RetryDecision {
        let headers: &[(String, Vec<u8>)] = match answer {
            CalloutAnswer::Response { headers, .. } => headers,
            CalloutAnswer::Reset => &[],
        };
        let input = RetryInput {
            method: &self.method,
            has_idempotency_key: self.has_idempotency_key,
            outcome,
            attempts_made: self.attempts,
            started_at: self.started_at,
            now,
            retry_after: header_str(headers, RETRY_AFTER),
            rate_limit_reset: header_str(headers, X_RATELIMIT_RESET),
        };
        let backoff = self
            .backoff
            .get_or_insert_with(|| Backoff::from_config(&cfg));
        let decision = should_retry(&cfg, &input, backoff, rng);
        self.upstream.retry = Some(cfg);
        decision
    }

    fn schedule_retry(
        &mut self,
        retry: PlannedRetry,
        store: &dyn SharedStore,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> ForwardStep {
        let PlannedRetry {
            delay_ns,
            cause,
            source,
            max_retries,
        } = retry;
        self.count(metrics, UpstreamEvent::Retries);
        log::info!(
            "levee retry: upstream \"{}\" attempt {} of {} failed ({}); attempt {} in {} ms{}",
            self.upstream.name,
            self.attempts,
            max_retries.saturating_add(1),
            cause_name(cause),
            self.attempts.saturating_add(1),
            delay_ns / NANOS_PER_MILLI,
            match source {
                DelaySource::Backoff => "",
                DelaySource::RetryAfter => " (Retry-After)",
                DelaySource::RateLimitReset => " (X-RateLimit-Reset)",
            }
        );
        let until = now.saturating_add(delay_ns);
        self.phase = Phase::Waiting { until };
        if delay_ns == 0 {
            return self.attempt(store, now, metrics);
        }
        ForwardStep::Wait { until }
    }

    /// Sends the next attempt if the deadline and the breaker allow it.
    fn attempt(
        &mut self,
        store: &dyn SharedStore,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> ForwardStep {
        let base = duration_nanos(self.upstream.timeout);
        let timeout_ns = match &self.upstream.retry {
            Some(cfg) => attempt_timeout(cfg, base, self.started_at, now),
            None => base,
        };
        if timeout_ns == 0 {
            // Only after a wait that ended past the deadline (a late timer).
            self.count(metrics, UpstreamEvent::RetriesExhausted);
            return self.fail(Some(GiveUp::Deadline), None, metrics);
        }
        let (admission, breaker_quiet) =
            breaker_gate::admit_noting_quiet(&self.upstream, self.index, store, now, metrics);
        let ticket = match admission {
            Admission::Allow(ticket) | Admission::Probe { ticket, .. } => ticket,
            Admission::Reject { retry_after_ns } => {
                let info = FailureInfo {
                    attempts: self.attempts,
                    last_outcome: self.last_outcome,
                    breaker_open: true,
                    retry_after_ns: Some(retry_after_ns),
                    gave_up: None,
                    last_answer: None,
                };
                return self.done(ForwardStep::Failed(info), metrics);
            }
        };
        if !self.deposited {
            self.deposited = true;
            if self
                .upstream
                .retry
                .as_ref()
                .is_some_and(|r| r.budget.is_some())
            {
                budget_gate::deposit(&self.upstream.name, store, now, metrics);
            }
        }
        self.attempts = self.attempts.saturating_add(1);
        self.count(metrics, UpstreamEvent::Attempts);
        self.phase = Phase::InFlight {
            ticket,
            breaker_quiet,
            sent_at: now,
            timeout_ns,
        };
        ForwardStep::Dispatch(CalloutRequest {
            cluster: self.cluster.clone(),
            headers: Rc::clone(&self.headers),
            body: Rc::clone(&self.body),
            timeout_ns,
        })
    }

    pub(super) fn count(&self, metrics: &mut dyn Metrics, what: UpstreamEvent) {
        metrics.count(Event::Upstream {
            upstream: self.index,
            what,
        });
    }
}

/// The upstream's config without its cache and fallback chain.
fn slim(u: &UpstreamConfig) -> UpstreamConfig {
    UpstreamConfig {
        name: u.name.clone(),
        forward: u.forward,
        cluster: None,
        authority: None,
        timeout: u.timeout,
        max_body_bytes: u.max_body_bytes,
        retry: u.retry.clone(),
        circuit_breaker: u.circuit_breaker.clone(),
        cache: None,
        fallback: Vec::new(),
    }
}

fn cause_name(c: OutcomeClass) -> String {
    match c {
        OutcomeClass::FiveXx => "5xx".into(),
        OutcomeClass::GatewayError => "gateway_error".into(),
        OutcomeClass::Timeout => "timeout".into(),
        OutcomeClass::Reset => "reset".into(),
        OutcomeClass::ConnectFailure => "connect_failure".into(),
        OutcomeClass::Status(s) => s.to_string(),
    }
}
