//! Did the upstream act? Mapping how a keyed request ended to released / unknown / stored.
//!
//! A proxy cannot always know whether the upstream executed a request, and the two mistakes
//! are not equally bad: treating "maybe executed" as "not executed" lets the client's retry
//! execute a second time (a double charge), while treating it as "executed" only makes the
//! client wait for `lock_timeout`. So:
//!
//! | how it ended | kind |
//! |---|---|
//! | levee rejected it before forwarding; the upstream was never connected; the client left before it was forwarded | **released** |
//! | a status in `release_on` (default 408, 425, 429, 503: "not processed, try again") | **released** |
//! | timeout, reset, 502, 504, the client left after it was forwarded | **unknown** |
//! | any other answer (2xx, 3xx, other 4xx, 500, …) within `max_body_bytes` | **stored** |
//! | any other answer over `max_body_bytes` | **too large** |
//!
//! A timeout is the classic "succeeded but the response was lost": the payment went through,
//! the answer did not. Releasing it would let the retry charge twice; keeping it locked until
//! `lock_timeout` and then allowing a retake is the least bad choice a proxy has. `release_on`
//! is checked first, so an operator who knows their upstream's 502s mean "not processed" can
//! list 502 there.

use crate::config::IdempotencyConfig;
use crate::metrics::IdempotencyEvent;

use super::machine::Outcome;
use super::response::StoredResponse;
pub use crate::outcome::UpstreamResult;

/// Which of the idempotency outcomes applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Released,
    Unknown,
    Stored,
    TooLarge,
}

impl OutcomeKind {
    /// Metric / log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::Unknown => "unknown",
            Self::Stored => "stored",
            Self::TooLarge => "too_large",
        }
    }
}

/// The outcome class of `result` under `cfg` (see the module table).
pub fn classify(cfg: &IdempotencyConfig, result: UpstreamResult) -> OutcomeKind {
    match result {
        UpstreamResult::RejectedBeforeForwarding
        | UpstreamResult::ConnectFailure
        | UpstreamResult::ClientGoneBeforeForwarding => OutcomeKind::Released,
        UpstreamResult::ClientGoneAfterForwarding
        | UpstreamResult::Timeout
        | UpstreamResult::Reset => OutcomeKind::Unknown,
        UpstreamResult::Response { status, .. } if cfg.release_on.contains(&status) => {
            OutcomeKind::Released
        }
        UpstreamResult::Response {
            status: 502 | 504, ..
        } => OutcomeKind::Unknown,
        UpstreamResult::Response { body_bytes, .. } if body_bytes > cfg.max_body_bytes => {
            OutcomeKind::TooLarge
        }
        UpstreamResult::Response { .. } => OutcomeKind::Stored,
    }
}

/// An answer as the request saw it: status, headers, body.
pub type AnswerParts<'a> = (u16, &'a [(String, String)], &'a [u8]);

/// The record's outcome for a request that ended as `result`, with its answer (status,
/// headers, body) when it had one; a stored outcome also gives the answer to keep.
pub fn ending(
    cfg: &IdempotencyConfig,
    result: UpstreamResult,
    answer: Option<AnswerParts<'_>>,
) -> (Outcome, Option<StoredResponse>) {
    match (classify(cfg, result), answer) {
        (OutcomeKind::Released, _) => (Outcome::Released, None),
        (OutcomeKind::Unknown, _) | (OutcomeKind::Stored, None) => (Outcome::Unknown, None),
        (OutcomeKind::TooLarge, answer) => {
            let status = answer.map_or(0, |a| a.0);
            (Outcome::TooLarge { status }, None)
        }
        (OutcomeKind::Stored, Some((status, headers, body))) => {
            let keep = StoredResponse {
                status,
                headers: headers.to_vec(),
                body: body.to_vec(),
            };
            (Outcome::Stored { status, body: None }, Some(keep))
        }
    }
}

/// After the primary ended as `primary` (none recorded yet: `None`), the secondary cluster
/// failed with `status` (`None`: no answer). When nothing happened at the primary (released),
/// the secondary's failure decides — a reset or timeout there may have acted: the new ending.
pub fn secondary_ending(
    cfg: &IdempotencyConfig,
    primary: Option<UpstreamResult>,
    status: Option<u16>,
    body_bytes: u64,
) -> Option<UpstreamResult> {
    let released = primary.is_none_or(|r| classify(cfg, r) == OutcomeKind::Released);
    released.then_some(match status {
        Some(status) => UpstreamResult::Response { status, body_bytes },
        None => UpstreamResult::Reset,
    })
}

/// The metric that counts a record completed with `outcome`.
pub fn event_of(outcome: Outcome) -> IdempotencyEvent {
    match outcome {
        Outcome::Released => IdempotencyEvent::Released,
        Outcome::Unknown => IdempotencyEvent::Unknown,
        Outcome::Stored { .. } => IdempotencyEvent::Stored,
        Outcome::TooLarge { .. } => IdempotencyEvent::TooLarge,
    }
}
