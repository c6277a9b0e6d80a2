//! What a client sees when the breaker refuses its request: `503` with the problem body,
//! `Retry-After` (when the breaker will let a probe through) and `x-levee-circuit: open`.

use crate::header_names::RETRY_AFTER;
use crate::problem::{problem, LocalReply, ProblemKind};
use crate::time::retry_after_seconds;

/// The header that marks an answer the open breaker gave.
pub const CIRCUIT_HEADER: &str = "x-levee-circuit";

/// The refusal of a request to `upstream`, whose breaker lets a probe through in
/// `retry_after_ns`.
pub fn open_reply(upstream: &str, retry_after_ns: u64) -> LocalReply {
    let mut reply = problem(
        ProblemKind::CircuitOpen,
        503,
        &format!("the circuit to upstream \"{upstream}\" is open"),
        &[("upstream", upstream)],
    );
    reply.headers.push((
        RETRY_AFTER.into(),
        retry_after_seconds(retry_after_ns).to_string(),
    ));
    reply.headers.push((CIRCUIT_HEADER.into(), "open".into()));
    reply
}
