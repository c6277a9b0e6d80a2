//! gRPC calls from a test, over HTTP/1.1, through Envoy's `grpc_web` filter to an HTTP/2
//! backend (etcd, the rate limit service).
//!
//! Why: the tests have an HTTP/1.1 client only, and the path Envoy → HTTP/2 cluster → backend
//! is the one levee's `dispatch_grpc_call` takes. gRPC-Web frames are the gRPC ones: one byte
//! of flags (0x80 marks trailers) and a big-endian u32 length, then the payload; the status is in
//! a trailer frame (`grpc-status:N\r\n`) or, for an answer without a message, in the headers.

use super::client::{try_send, Request};
use std::time::Duration;

/// A gRPC call's failure: status code and message (`14` unavailable, `4` deadline exceeded...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcError {
    /// `grpc-status`, or `-1` when the HTTP exchange itself failed.
    pub code: i32,
    /// `grpc-message` or what failed.
    pub message: String,
}

/// Calls `/<service>/<method>` through Envoy on `port`; the answer's message bytes.
pub fn call(
    port: u16,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, GrpcError> {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let req = Request::post(&format!("/{service}/{method}"), body)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("te", "trailers")
        .timeout(timeout);
    let r = try_send(port, &req).map_err(|e| GrpcError {
        code: -1,
        message: e.to_string(),
    })?;
    if r.status != 200 {
        return Err(GrpcError {
            code: -1,
            message: format!("HTTP {}: {}", r.status, r.text()),
        });
    }
    let mut payload = None;
    let mut status = r.header("grpc-status").and_then(|s| s.trim().parse().ok());
    let mut grpc_message = r.header("grpc-message").unwrap_or_default();
    let mut rest = &r.body[..];
    while rest.len() >= 5 {
        let flags = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let frame = rest.get(5..5 + len).ok_or(GrpcError {
            code: -1,
            message: "truncated gRPC-Web frame".into(),
        })?;
        if flags & 0x80 == 0 {
            payload = Some(frame.to_vec());
        } else {
            for line in String::from_utf8_lossy(frame).split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "grpc-status" => status = v.trim().parse().ok(),
                        "grpc-message" => grpc_message = v.trim().to_string(),
                        _ => {}
                    }
                }
            }
        }
        rest = &rest[5 + len..];
    }
    match (status, payload) {
        (Some(0), Some(p)) => Ok(p),
        (Some(0), None) => Ok(Vec::new()),
        (Some(code), _) => Err(GrpcError {
            code,
            message: grpc_message,
        }),
        (None, _) => Err(GrpcError {
            code: -1,
            message: "no grpc-status".into(),
        }),
    }
}
