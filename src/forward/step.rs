//! The values that pass between the host and [`super::CalloutForward`]: the callout requests
//! going out, the callout answers coming back, and the [`ForwardStep`] verdicts.

use std::rc::Rc;

use crate::header_names::STATUS;
use crate::outcome::AttemptOutcome;
use crate::problem::ProblemKind;
use crate::retry::policy::GiveUp;
use crate::time::{UnixNanos, NANOS_PER_MILLI};

use super::headers::{header_str, HeaderList};

/// One attempt for the host to send with `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutRequest {
    /// The Envoy cluster to call.
    pub cluster: String,
    /// `:method`, `:path`, `:authority` first, then the end-to-end request headers. Shared
    /// with the forward that sends it, so that every attempt does not copy them.
    pub headers: Rc<HeaderList>,
    pub body: Rc<Vec<u8>>,
    /// This attempt's timeout: `min(upstream timeout, time left before the deadline)`, > 0.
    pub timeout_ns: u64,
}

impl CalloutRequest {
    /// The timeout in whole milliseconds, rounded **up** and at least 1: proxy-wasm takes
    /// milliseconds, and a timeout of 0 would mean "no timeout" to Envoy.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ns.div_ceil(NANOS_PER_MILLI).max(1)
    }
}

/// How a callout ended, as `on_http_call_response` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutAnswer {
    /// No response headers: the stream was reset, or the response exceeded Envoy's buffer.
    Reset,
    /// A response (from the upstream, or Envoy's local 503/504 on its behalf).
    Response {
        status: u16,
        /// The response headers as received (`:status` may be included; it is dropped).
        headers: HeaderList,
        body: Vec<u8>,
    },
}

impl CalloutAnswer {
    /// From what the host read: `None` or empty headers, or no valid `:status`, is a reset.
    pub fn from_parts(headers: Option<HeaderList>, body: Vec<u8>) -> Self {
        let Some(headers) = headers.filter(|h| !h.is_empty()) else {
            return Self::Reset;
        };
        match header_str(&headers, STATUS).and_then(|s| s.trim().parse::<u16>().ok()) {
            Some(status) if (100..=999).contains(&status) => Self::Response {
                status,
                headers,
                body,
            },
            _ => Self::Reset,
        }
    }
}

/// An upstream answer as the client gets it: hop-by-hop headers removed,
/// `x-levee-attempts: attempts` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalAnswer {
    pub status: u16,
    pub headers: HeaderList,
    pub body: Vec<u8>,
    /// Attempts made, the one that produced this answer included.
    pub attempts: u32,
}

/// No usable answer: the breaker is open, or the final attempt failed (5xx, timeout, reset,
/// connect failure). The caller runs the upstream's fallback chain; if no entry applies it
/// answers with [`FailureInfo::status`]: `last_answer` verbatim when there is one, else a
/// levee-made reply (see [`FailureInfo::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInfo {
    /// Attempts that reached the upstream (0 when the breaker refused the first).
    pub attempts: u32,
    /// How the last attempt ended (`None` when no attempt was made).
    pub last_outcome: Option<AttemptOutcome>,
    /// The breaker refused an attempt: answer `503` + `Retry-After` + `x-levee-circuit: open`.
    pub breaker_open: bool,
    /// With `breaker_open`: how long the breaker stays open (or until a probe slot frees).
    pub retry_after_ns: Option<u64>,
    /// Why no further attempt was made, when retries are configured and one was considered:
    /// `NotRetryable` (e.g. 5xx not in `retry_on`), `NonIdempotent`, `MaxRetries`,
    /// `Deadline`, `RetryAfterBeyondDeadline` or `BudgetExhausted`.
    pub gave_up: Option<GiveUp>,
    /// The last attempt's answer, client-ready, when it had headers (a 5xx, Envoy's local
    /// 503/504): what the client gets if no fallback applies.
    pub last_answer: Option<FinalAnswer>,
}

impl FailureInfo {
    /// The status for the client when no fallback applies:
    /// - breaker open → `503` (levee's problem+json, `Retry-After`, `x-levee-circuit: open`);
    /// - the last attempt had an answer → its status (serve `last_answer` as it is);
    /// - a timeout without an answer → `504`;
    /// - a reset (no headers) or no attempt at all → `502`.
    pub fn status(&self) -> u16 {
        if self.breaker_open {
            return 503;
        }
        if let Some(answer) = &self.last_answer {
            return answer.status;
        }
        match self.last_outcome {
            Some(AttemptOutcome::Timeout) => 504,
            _ => 502,
        }
    }

    /// Envoy response code details for a levee-made reply to this failure.
    pub fn details(&self) -> &'static str {
        if self.breaker_open {
            return ProblemKind::CircuitOpen.details();
        }
        match self.last_outcome {
            Some(AttemptOutcome::Timeout) => "levee_upstream_timeout",
            Some(AttemptOutcome::Reset) => "levee_upstream_reset",
            Some(AttemptOutcome::Response {
                connect_failure: true,
                ..
            }) => "levee_upstream_connect_failure",
            _ => ProblemKind::UpstreamFailure.details(),
        }
    }
}

/// What the host must do next for a callout-mode request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardStep {
    /// Send this attempt; pass its answer to [`super::CalloutForward::on_response`].
    Dispatch(CalloutRequest),
    /// Hold the request (backoff); call [`super::CalloutForward::next`] at `until`.
    Wait { until: UnixNanos },
    /// Answer the client with this upstream answer.
    Respond(FinalAnswer),
    /// No usable answer: run the fallback chain, else answer per [`FailureInfo::status`].
    Failed(FailureInfo),
    /// The call came out of order (an attempt is in flight, or the forward is over or
    /// cancelled) and changed nothing: do nothing.
    Ignored,
}
