//! levee's own answers (RFC 9457 `application/problem+json`, or a gRPC status for gRPC).
