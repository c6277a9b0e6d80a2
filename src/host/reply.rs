//! Sending levee's local replies with Envoy response code details.
//!
//! The SDK's `send_http_response` passes no details and panics on a non-Ok host status, so
//! levee calls the ABI function itself: `details` (e.g. `levee_rate_limited`) lands in
//! Envoy's `%RESPONSE_CODE_DETAILS%`, and gRPC requests get a gRPC status instead of a body.

use crate::problem::LocalReply;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// The proxy-wasm header-map wire format: count, (name len, value len)*, (name\0 value\0)*.
pub(crate) fn serialize_headers(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Answers the current (or effective) request with `reply`. Returns false if the host
/// refused (the stream is already gone, for instance).
pub(crate) fn send(reply: &LocalReply, grpc: bool) -> bool {
    let pairs: Vec<(&str, &[u8])> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let headers = serialize_headers(&pairs);
    let (status, body, grpc_status): (u32, &[u8], i32) = match (grpc, reply.grpc_status) {
        (true, Some(code)) => (200, b"", code as i32),
        _ => (u32::from(reply.status), &reply.body, -1),
    };
    let details = reply.details.as_bytes();
    // SAFETY: every pointer/length pair describes a live slice for the duration of the call.
    let result = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    };
    result == 0
}
