//! Sending levee's local replies with Envoy response code details.
//!
//! The SDK's `send_http_response` passes no details, so levee uses
//! [`abi::send_local_response`]: `details` (e.g. `levee_rate_limited`) lands in Envoy's
//! `%RESPONSE_CODE_DETAILS%`, and gRPC requests get a gRPC status instead of a body, with the
//! reason in `grpc-message` (Envoy adds none when the body is empty).

use crate::problem::{grpc_message, LocalReply};

use super::abi;

/// Answers the current (or effective) request with `reply`. Returns false if the host
/// refused (the stream is already gone, for instance).
pub(crate) fn send(reply: &LocalReply, grpc: bool) -> bool {
    let mut pairs: Vec<(&str, &[u8])> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let message;
    let (status, body, grpc_status): (u32, &[u8], i32) = match (grpc, &reply.grpc_status) {
        (true, Some(g)) => {
            message = grpc_message(&g.message);
            pairs.push(("grpc-message", message.as_bytes()));
            (200, b"", i32::try_from(g.code).unwrap_or(2))
        }
        _ => (u32::from(reply.status), &reply.body, -1),
    };
    abi::send_local_response(status, reply.details, body, &pairs, grpc_status).is_ok()
}
