//! What happened to one attempt, in the terms that `retry_on` and `failure_on` speak.
//!
//! levee sees an upstream attempt in one of two ways, and both lose information:
//!
//! - **Callout mode** (Envoy's async HTTP client). A reset before headers reaches the filter as
//!   *no headers at all* only sometimes; most transport failures are turned by the client's
//!   internal router into a local reply: a timeout is a plain `504` (body
//!   `upstream request timeout`) whose elapsed time reaches the timeout, and a failed connect is
//!   a `503` whose body reads `upstream connect error or disconnect/reset before headers. reset
//!   reason: connection failure…`. [`classify_callout`] undoes that disguise.
//! - **Router mode**. The filter sees the final status plus the `response.flags` property, a
//!   `u64` in which bit *i* is set when Envoy's `CoreResponseFlag` number *i* is
//!   (`StreamInfoImpl::legacyResponseFlags`, exposed by the CEL/wasm attribute `response.flags`).
//!   [`classify_router`] reads the flags listed in [`flags`].
//!
//! # Which classes match which outcome ([`matches()`])
//!
//! | outcome | `5xx` | `gateway_error` | `timeout` | `reset` | `connect_failure` | `Status(n)` |
//! |---|---|---|---|---|---|---|
//! | response 500–599 | yes | 502/503/504 | – | – | – | n = status |
//! | connect failure (a 503) | yes | yes | – | – | yes | n = 503 |
//! | [`AttemptOutcome::Timeout`] | yes | yes | yes | – | – | n = 504 |
//! | [`AttemptOutcome::Reset`] | yes | yes | – | yes | – | never |
//! | response 1xx–4xx | – | – | – | – | – | n = status |
//!
//! `5xx` and `gateway_error` include timeouts, resets and connect failures because that is what
//! Envoy's own `retry_on: 5xx` / `gateway-error` do (and because the client would have seen a
//! 503/504 for each). A 4xx never matches anything but an explicit `Status(n)`, so `404`, `400`
//! and `401` are neither retried nor counted as breaker failures unless listed.

use crate::config::OutcomeClass;

/// How one upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The upstream (or Envoy on its behalf) answered with a status.
    Response {
        status: u16,
        /// From sending the attempt to its response headers.
        elapsed_ns: u64,
        /// Envoy never got a connection (or a stream) to the upstream: the request was not sent.
        connect_failure: bool,
    },
    /// The attempt ended without response headers: the upstream may have acted.
    Reset,
    /// No answer within the attempt timeout: the upstream may have acted.
    Timeout,
}

impl AttemptOutcome {
    /// A plain answer from the upstream.
    pub fn response(status: u16, elapsed_ns: u64) -> Self {
        Self::Response {
            status,
            elapsed_ns,
            connect_failure: false,
        }
    }

    /// The status the client would see for this outcome (`None` for a reset).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Response { status, .. } => Some(*status),
            Self::Timeout => Some(504),
            Self::Reset => None,
        }
    }

    /// True when the request certainly never reached the upstream application.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::Response {
                connect_failure: true,
                ..
            }
        )
    }
}

/// `response.flags` bits (bit *i* = Envoy `CoreResponseFlag` number *i*, `stream_info.h`).
pub mod flags {
    /// `NoHealthyUpstream` (UH), index 1.
    pub const NO_HEALTHY_UPSTREAM: u64 = 1 << 1;
    /// `UpstreamRequestTimeout` (UT), index 2. Also set for a per-try timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2;
    /// `UpstreamRemoteReset` (UR), index 4.
    pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4;
    /// `UpstreamConnectionFailure` (UF), index 5.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5;
    /// `UpstreamConnectionTermination` (UC), index 6.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6;
    /// `UpstreamOverflow` (UO), index 7: Envoy's own circuit breaker refused the request.
    pub const UPSTREAM_OVERFLOW: u64 = 1 << 7;
    /// `UpstreamMaxStreamDurationReached` (UMSDR), index 19.
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 1 << 19;
    /// `UpstreamProtocolError` (UPE), index 23.
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 1 << 23;

    /// Flags that mean "no answer in time".
    pub const TIMEOUT: u64 = UPSTREAM_REQUEST_TIMEOUT | UPSTREAM_MAX_STREAM_DURATION_REACHED;
    /// Flags that mean "the request never reached an upstream host".
    pub const CONNECT_FAILURE: u64 =
        UPSTREAM_CONNECTION_FAILURE | NO_HEALTHY_UPSTREAM | UPSTREAM_OVERFLOW;
    /// Flags that mean "the upstream connection or stream broke".
    pub const RESET: u64 =
        UPSTREAM_REMOTE_RESET | UPSTREAM_CONNECTION_TERMINATION | UPSTREAM_PROTOCOL_ERROR;
}

/// Envoy's local-reply body for a reset or failed connect before response headers.
const RESET_BODY_PREFIX: &[u8] = b"upstream connect error or disconnect/reset before headers";
/// Envoy's local-reply body for a route/request timeout.
const TIMEOUT_BODY_PREFIX: &[u8] = b"upstream request timeout";
/// Reset reasons (Envoy `resetReasonToString`) and local-reply bodies meaning "never connected".
const CONNECT_FAILURE_MARKERS: [&[u8]; 4] = [
    b"connection failure",
    b"connection timeout",
    b"overflow",
    b"no healthy upstream",
];
/// A 504 arriving this close to the attempt timeout is the timeout (timers fire late, not early).
pub const TIMEOUT_SLACK_NS: u64 = 5_000_000;

/// Classifies a callout attempt from what `on_http_call_response` offers.
///
/// - `headers_present == false` → [`AttemptOutcome::Reset`];
/// - `504` with body `upstream request timeout…`, or whose `elapsed_ns` is within
///   [`TIMEOUT_SLACK_NS`] of `timeout_ns` (or beyond) → [`AttemptOutcome::Timeout`];
/// - `503` with Envoy's `upstream connect error…` body: a connect failure when the reset reason
///   says the connection never came up (`connection failure`, `connection timeout`, `overflow`),
///   otherwise [`AttemptOutcome::Reset`] (the upstream reset the stream before answering);
/// - `503` with body `no healthy upstream` → connect failure;
/// - anything else → a plain response.
///
/// `body_hint` is the start of the response body (a few hundred bytes are plenty).
pub fn classify_callout(
    headers_present: bool,
    status: u16,
    elapsed_ns: u64,
    timeout_ns: u64,
    body_hint: &[u8],
) -> AttemptOutcome {
    if !headers_present {
        return AttemptOutcome::Reset;
    }
    let body = trim_ascii_start(body_hint);
    if status == 504
        && (body.starts_with(TIMEOUT_BODY_PREFIX)
            || elapsed_ns.saturating_add(TIMEOUT_SLACK_NS) >= timeout_ns)
    {
        return AttemptOutcome::Timeout;
    }
    if status == 503 {
        if body.starts_with(RESET_BODY_PREFIX) {
            let reason = reset_reason(body);
            if CONNECT_FAILURE_MARKERS.iter().any(|m| contains(reason, m)) {
                return AttemptOutcome::Response {
                    status,
                    elapsed_ns,
                    connect_failure: true,
                };
            }
            return AttemptOutcome::Reset;
        }
        if body.starts_with(b"no healthy upstream") {
            return AttemptOutcome::Response {
                status,
                elapsed_ns,
                connect_failure: true,
            };
        }
    }
    AttemptOutcome::response(status, elapsed_ns)
}

/// Classifies a router-mode request from its final status and `response.flags`.
///
/// Precedence: timeout flags, then connect-failure flags, then reset flags, then the status.
/// Downstream-side flags (client went away, local reset) are not upstream failures and are
/// ignored; a status of 0 with no upstream flag is returned as `Response { status: 0 }`, which
/// matches no class.
pub fn classify_router(status: u16, response_flags: u64, elapsed_ns: u64) -> AttemptOutcome {
    if response_flags & flags::TIMEOUT != 0 {
        AttemptOutcome::Timeout
    } else if response_flags & flags::CONNECT_FAILURE != 0 {
        AttemptOutcome::Response {
            status,
            elapsed_ns,
            connect_failure: true,
        }
    } else if response_flags & flags::RESET != 0 {
        AttemptOutcome::Reset
    } else {
        AttemptOutcome::response(status, elapsed_ns)
    }
}

/// Whether `outcome` belongs to `class` (see the table in the module docs).
pub fn matches(class: &OutcomeClass, outcome: &AttemptOutcome) -> bool {
    use AttemptOutcome as O;
    match (class, outcome) {
        (OutcomeClass::FiveXx, O::Response { status, .. }) => (500..=599).contains(status),
        (OutcomeClass::FiveXx | OutcomeClass::GatewayError, O::Reset | O::Timeout) => true,
        (OutcomeClass::GatewayError, O::Response { status, .. }) => {
            matches!(status, 502..=504)
        }
        (OutcomeClass::Timeout, O::Timeout) => true,
        (OutcomeClass::Reset, O::Reset) => true,
        (
            OutcomeClass::ConnectFailure,
            O::Response {
                connect_failure, ..
            },
        ) => *connect_failure,
        (OutcomeClass::Status(n), o) => o.status() == Some(*n),
        _ => false,
    }
}

/// The most specific class in `classes` that `outcome` belongs to (for logs and metrics:
/// a reset listed as both `5xx` and `reset` is reported as `reset`). Specificity:
/// `Status(n)`, `connect_failure`, `timeout`, `reset`, `gateway_error`, `5xx`.
pub fn best_match(classes: &[OutcomeClass], outcome: &AttemptOutcome) -> Option<OutcomeClass> {
    fn rank(c: &OutcomeClass) -> u8 {
        match c {
            OutcomeClass::Status(_) => 0,
            OutcomeClass::ConnectFailure => 1,
            OutcomeClass::Timeout => 2,
            OutcomeClass::Reset => 3,
            OutcomeClass::GatewayError => 4,
            OutcomeClass::FiveXx => 5,
        }
    }
    classes
        .iter()
        .filter(|c| matches(c, outcome))
        .min_by_key(|c| rank(c))
        .copied()
}

/// The fallback chain's "failed": a 5xx answer, a timeout, a reset or a connect failure —
/// exactly the outcomes the `5xx` class covers. A 4xx (429 included) is an answer, not a
/// failure.
pub fn is_failure(outcome: &AttemptOutcome) -> bool {
    matches(&OutcomeClass::FiveXx, outcome)
}

/// The text after `reset reason:` (the whole body if absent).
fn reset_reason(body: &[u8]) -> &[u8] {
    const MARK: &[u8] = b"reset reason:";
    body.windows(MARK.len())
        .position(|w| w == MARK)
        .and_then(|i| body.get(i + MARK.len()..))
        .unwrap_or(body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

#[cfg(test)]
#[path = "attempt_tests.rs"]
mod tests;
