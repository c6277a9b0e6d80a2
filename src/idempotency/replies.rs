//! The answers the idempotency layer gives itself: a replayed answer, and the refusals, each
//! a problem document that says what happened and what the client can do.

use crate::header_names::RETRY_AFTER;
use crate::problem::{problem, LocalReply, ProblemKind};
use crate::time::retry_after_seconds;

use super::response::StoredResponse;
use super::KeyError;

/// A completed request's answer, replayed as it was stored.
pub fn replayed(stored: StoredResponse) -> LocalReply {
    LocalReply {
        status: stored.status,
        headers: stored.headers,
        body: stored.body,
        details: "levee_idempotent_replay",
        grpc_status: None,
    }
}

/// `400`: the layer requires a key and the request has none.
pub fn missing_key(header: &str) -> LocalReply {
    let detail = format!("this request needs the {header} header");
    problem(ProblemKind::IdempotencyKeyMissing, 400, &detail, &[])
}

/// `400`: the key header is not a valid key.
pub fn invalid_key(e: &KeyError) -> LocalReply {
    problem(ProblemKind::IdempotencyKeyInvalid, 400, &e.to_string(), &[])
}

/// `409` + `Retry-After`: another request with this key is still running.
pub fn in_flight(retry_after_ns: u64) -> LocalReply {
    let mut reply = problem(
        ProblemKind::IdempotencyConflict,
        409,
        "a request with this idempotency key is still being processed",
        &[],
    );
    reply.headers.push((
        RETRY_AFTER.into(),
        retry_after_seconds(retry_after_ns).to_string(),
    ));
    reply
}

/// `409`: the key's request completed with `status`, but its answer was not kept.
pub fn completed(status: u16) -> LocalReply {
    let detail = format!("a request with this idempotency key already completed with status {status}; its answer was not kept");
    problem(
        ProblemKind::IdempotencyCompleted,
        409,
        &detail,
        &[("completed_status", &status.to_string())],
    )
}

/// `422`: the key was used for a different request.
pub fn mismatch() -> LocalReply {
    problem(
        ProblemKind::IdempotencyMismatch,
        422,
        "this idempotency key was used for a different request (method, path or body)",
        &[],
    )
}

/// `503`: the record could not be written, and `on_internal_error` refuses.
pub fn internal() -> LocalReply {
    problem(
        ProblemKind::Internal,
        503,
        "levee could not record the idempotency key",
        &[],
    )
}
