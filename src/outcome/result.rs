//! How a whole request ended at the upstream, as the idempotency record needs to know it:
//! the last attempt's [`AttemptOutcome`] plus what levee knows beyond it (it answered before
//! forwarding, the client left, how big the answer was).

use super::attempt::AttemptOutcome;

/// How a keyed request ended, as the host saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamResult {
    /// levee answered itself before forwarding (rate limit, open circuit, `413`, …).
    RejectedBeforeForwarding,
    /// No connection (or stream) to the upstream was ever made: the request was not sent.
    ConnectFailure,
    /// The client went away before the request was forwarded.
    ClientGoneBeforeForwarding,
    /// The client went away after the request was forwarded (the upstream may be acting).
    ClientGoneAfterForwarding,
    /// No answer within the timeout.
    Timeout,
    /// The stream was reset before a complete answer.
    Reset,
    /// A complete answer; `body_bytes` is its body size (or any count above
    /// `max_body_bytes` once buffering stopped).
    Response { status: u16, body_bytes: u64 },
}

impl UpstreamResult {
    /// The ending of a request whose last attempt ended as `outcome`, with a body of
    /// `body_bytes` when it was an answer.
    pub fn of_attempt(outcome: AttemptOutcome, body_bytes: u64) -> Self {
        match outcome {
            AttemptOutcome::Timeout => Self::Timeout,
            AttemptOutcome::Reset => Self::Reset,
            AttemptOutcome::Response {
                connect_failure: true,
                ..
            } => Self::ConnectFailure,
            AttemptOutcome::Response { status, .. } => Self::Response { status, body_bytes },
        }
    }
}
