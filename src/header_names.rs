//! HTTP header names that more than one layer reads or writes, spelled once. Lower-case, as
//! Envoy's header maps hold them (HTTP/2 and HTTP/3 require it; Envoy lower-cases HTTP/1).
//! Names that belong to one layer live with it: the idempotency key's default header in
//! [`crate::config::defaults`], its echo in [`crate::idempotency::replay`], levee's own
//! `x-levee-*` answers next to the layer that sets them.

/// The request method pseudo-header.
pub const METHOD: &str = ":method";
/// The request path (with query) pseudo-header.
pub const PATH: &str = ":path";
/// The request authority (host) pseudo-header.
pub const AUTHORITY: &str = ":authority";
/// The response status pseudo-header.
pub const STATUS: &str = ":status";
pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
/// When to try again: seconds or an HTTP-date.
pub const RETRY_AFTER: &str = "retry-after";
pub const UPGRADE: &str = "upgrade";
/// The client chain that proxies append to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// The limit that applies to the request.
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
/// How many more requests the limit admits now.
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// When the upstream's (or levee's) rate-limit window resets, in Unix seconds.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
/// The IETF field naming the policy: `"name";q=100;w=60`.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// The IETF field with the quota left: `"name";r=97;t=42`.
pub const RATELIMIT: &str = "ratelimit";

/// Whether `name` is one of the rate-limit fields levee writes (`X-RateLimit-*`, IETF
/// `RateLimit` / `RateLimit-Policy`). On an upstream's answer these are added beside any the
/// upstream sent itself, as Envoy's own rate limit filters add theirs; levee's other headers
/// replace the upstream's copy.
pub fn is_rate_limit_field(name: &str) -> bool {
    matches!(
        name,
        X_RATELIMIT_LIMIT
            | X_RATELIMIT_REMAINING
            | X_RATELIMIT_RESET
            | RATELIMIT_POLICY
            | RATELIMIT
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitHeaders;
    use crate::ratelimit::headers::rate_limit_headers;
    use crate::ratelimit::{Decision, Evaluation};

    #[test]
    fn every_field_an_admitted_request_carries_is_a_rate_limit_field() {
        let evaluation = Evaluation {
            decision: Decision::Admit,
            new_state: None,
            at_rest_at: 0,
            limit: 10,
            remaining: 9,
            reset_at: 2_000_000_000,
            retry_after_ns: 0,
        };
        let written = rate_limit_headers(RateLimitHeaders::Both, "rl", 60, &evaluation, false, 0);
        assert_eq!(written.len(), 5);
        for (name, _) in &written {
            assert!(is_rate_limit_field(name), "{name}");
        }
        for other in [
            RETRY_AFTER,
            "x-idempotency-key",
            "x-ratelimit",
            "ratelimit-",
        ] {
            assert!(!is_rate_limit_field(other), "{other}");
        }
    }
}
