//! levee's own answers, as values.
//!
//! When levee answers a request itself (rate-limited, circuit open, bad idempotency key,
//! internal error), the body is RFC 9457 `application/problem+json` naming the limit or
//! upstream, and Envoy's response code details carry a `levee_*` reason so access logs show
//! why. gRPC clients cannot read a problem document, so for `content-type: application/grpc…`
//! the same answer becomes a gRPC status (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, …) with the
//! problem's `detail` as its `grpc-message` — what a gRPC client shows as the error text —
//! percent-encoded as the gRPC HTTP/2 protocol requires ([`grpc_message`]).

use crate::header_names::CONTENT_TYPE;

/// gRPC status codes levee answers with, or reads in a backend's answers.
pub const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
pub const GRPC_UNAVAILABLE: u32 = 14;
pub const GRPC_INVALID_ARGUMENT: u32 = 3;
pub const GRPC_ABORTED: u32 = 10;
pub const GRPC_INTERNAL: u32 = 13;

/// A complete local answer: what the host sends with `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy response code details, e.g. `levee_rate_limited`.
    pub details: &'static str,
    /// The gRPC status to use instead when the request is gRPC.
    pub grpc_status: Option<GrpcStatus>,
}

/// A gRPC answer: the status code and the human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    pub code: u32,
    /// Plain text; [`grpc_message`] encodes it for the `grpc-message` header.
    pub message: String,
}

/// `message` as a `grpc-message` header value: UTF-8 bytes, percent-encoded as the gRPC
/// HTTP/2 protocol says — space and visible ASCII except `%` stay as they are, every other
/// byte becomes `%XX` (upper-case hex). gRPC clients decode it back to the text.
pub fn grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0F));
        }
    }
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0x0F)])
}

/// The kinds of problem levee reports, each with a stable `type` URI and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    RateLimited,
    CircuitOpen,
    IdempotencyKeyMissing,
    IdempotencyKeyInvalid,
    IdempotencyConflict,
    IdempotencyMismatch,
    IdempotencyCompleted,
    PayloadTooLarge,
    BodyNotDelivered,
    UpstreamFailure,
    Internal,
}

impl ProblemKind {
    pub fn slug(self) -> &'static str {
        match self {
            Self::RateLimited => "rate-limited",
            Self::CircuitOpen => "circuit-open",
            Self::IdempotencyKeyMissing => "idempotency-key-missing",
            Self::IdempotencyKeyInvalid => "idempotency-key-invalid",
            Self::IdempotencyConflict => "idempotency-key-in-use",
            Self::IdempotencyMismatch => "idempotency-key-reused",
            Self::IdempotencyCompleted => "idempotency-key-completed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::BodyNotDelivered => "body-not-delivered",
            Self::UpstreamFailure => "upstream-failure",
            Self::Internal => "internal-error",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::RateLimited => "Too many requests",
            Self::CircuitOpen => "Upstream circuit is open",
            Self::IdempotencyKeyMissing => "Idempotency-Key header is required",
            Self::IdempotencyKeyInvalid => "Idempotency-Key header is invalid",
            Self::IdempotencyConflict => "A request with this idempotency key is in progress",
            Self::IdempotencyMismatch => "Idempotency key reused with a different request",
            Self::IdempotencyCompleted => "A request with this idempotency key already completed",
            Self::PayloadTooLarge => "Request body too large",
            Self::BodyNotDelivered => "Request body never reached levee",
            Self::UpstreamFailure => "The upstream did not answer",
            Self::Internal => "Internal error in levee",
        }
    }

    /// Envoy response code details for access logs.
    pub fn details(self) -> &'static str {
        match self {
            Self::RateLimited => "levee_rate_limited",
            Self::CircuitOpen => "levee_circuit_open",
            Self::IdempotencyKeyMissing | Self::IdempotencyKeyInvalid => {
                "levee_idempotency_bad_key"
            }
            Self::IdempotencyConflict => "levee_idempotency_conflict",
            Self::IdempotencyMismatch => "levee_idempotency_mismatch",
            Self::IdempotencyCompleted => "levee_idempotency_completed",
            Self::PayloadTooLarge => "levee_payload_too_large",
            Self::BodyNotDelivered => "levee_body_not_delivered",
            Self::UpstreamFailure => "levee_upstream_failure",
            Self::Internal => "levee_internal_error",
        }
    }

    fn grpc_status(self) -> u32 {
        match self {
            Self::RateLimited => GRPC_RESOURCE_EXHAUSTED,
            Self::CircuitOpen => GRPC_UNAVAILABLE,
            Self::IdempotencyKeyMissing | Self::IdempotencyKeyInvalid | Self::PayloadTooLarge => {
                GRPC_INVALID_ARGUMENT
            }
            Self::IdempotencyConflict | Self::IdempotencyMismatch | Self::IdempotencyCompleted => {
                GRPC_ABORTED
            }
            Self::UpstreamFailure => GRPC_UNAVAILABLE,
            Self::BodyNotDelivered | Self::Internal => GRPC_INTERNAL,
        }
    }
}

/// Builds a problem+json reply. `extra` members (e.g. `("limit", "per-user")`) are added as
/// JSON strings after the standard ones.
pub fn problem(kind: ProblemKind, status: u16, detail: &str, extra: &[(&str, &str)]) -> LocalReply {
    let mut doc = serde_json::Map::new();
    doc.insert(
        "type".into(),
        format!("https://levee.dev/problems/{}", kind.slug()).into(),
    );
    doc.insert("title".into(), kind.title().into());
    doc.insert("status".into(), status.into());
    doc.insert("detail".into(), detail.into());
    for (k, v) in extra {
        doc.insert((*k).into(), (*v).into());
    }
    let body = serde_json::to_vec(&serde_json::Value::Object(doc)).unwrap_or_default();
    LocalReply {
        status,
        headers: vec![(CONTENT_TYPE.into(), "application/problem+json".into())],
        body,
        details: kind.details(),
        grpc_status: Some(GrpcStatus {
            code: kind.grpc_status(),
            message: detail.to_owned(),
        }),
    }
}

/// True for gRPC requests, which get a gRPC status instead of a problem document.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|ct| ct.starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_body_is_rfc9457_json_naming_the_limit() {
        let r = problem(
            ProblemKind::RateLimited,
            429,
            "limit per-user exceeded",
            &[("limit", "per-user")],
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["limit"], "per-user");
        assert_eq!(v["type"], "https://levee.dev/problems/rate-limited");
        assert_eq!(r.details, "levee_rate_limited");
        assert_eq!(
            r.grpc_status,
            Some(GrpcStatus {
                code: GRPC_RESOURCE_EXHAUSTED,
                message: "limit per-user exceeded".into()
            })
        );
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/problem+json".into())));
    }

    #[test]
    fn grpc_message_percent_encodes_percent_controls_and_non_ascii_only() {
        assert_eq!(
            grpc_message(r#"rate limit "per-user" exceeded"#),
            r#"rate limit "per-user" exceeded"#
        );
        assert_eq!(grpc_message("100% used"), "100%25 used");
        assert_eq!(grpc_message("a\nb\tc\u{7f}"), "a%0Ab%09c%7F");
        assert_eq!(grpc_message("clé ✓"), "cl%C3%A9 %E2%9C%93");
        assert_eq!(grpc_message(""), "");
    }

    #[test]
    fn grpc_is_detected_by_content_type_prefix() {
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(!is_grpc(Some(b"application/json")));
        assert!(!is_grpc(None));
    }
}
