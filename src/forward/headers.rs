//! Which headers cross levee in callout mode, both ways.
//!
//! In router mode Envoy's HTTP connection manager and router strip hop-by-hop headers; a
//! callout bypasses both, so levee must do it itself or a client's `Connection: close` or
//! `Transfer-Encoding: chunked` would be replayed on a connection they were never meant for.
//!
//! Removed (names compared case-insensitively), requests and responses alike:
//! - RFC 9110 §7.6.1 connection-specific fields: `connection`, `keep-alive`,
//!   `proxy-connection`, `transfer-encoding`, `te`, `trailer`, `upgrade`, and every field the
//!   message's own `Connection` header names;
//! - `proxy-authorization` and `proxy-authenticate` (RFC 2616 §13.5.1's list): credentials a
//!   client gave to *this* proxy, and a proxy's challenge to the client, must not travel on to
//!   the application (levee calls an application cluster, not a chain of proxies);
//! - `content-length`: Envoy sets it for the callout body and for levee's reply body;
//! - pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`, `:status`, …): levee writes
//!   `:method`, `:path` and `:authority` itself, Envoy adds `:scheme`, and the status travels
//!   apart from the headers.
//!
//! Everything else is kept in order: `x-request-id`, `traceparent`, `b3`, the
//! `Idempotency-Key` (forwarded unchanged on every attempt), cookies, authorization.

/// A header list as the host hands it over: names as received, values as raw bytes.
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// The response header that tells the client how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "x-levee-attempts";

/// Connection-specific names, always removed (lower case).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Whether `name` (any case) is removed whatever the `Connection` header says.
pub fn is_hop_by_hop(name: &str) -> bool {
    name.starts_with(':')
        || name.eq_ignore_ascii_case("content-length")
        || HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The field names listed in the message's `Connection` header(s), lower-cased.
fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(|b| *b == b','))
        .filter_map(|token| std::str::from_utf8(token).ok())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `headers` without hop-by-hop fields, pseudo-headers and `content-length`, order kept.
pub fn end_to_end(headers: &[(String, Vec<u8>)]) -> HeaderList {
    let listed = connection_tokens(headers);
    headers
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n) && !listed.iter().any(|t| n.eq_ignore_ascii_case(t)))
        .cloned()
        .collect()
}

/// The header list of a callout: `:method`, `:path`, `:authority`, then the request's
/// end-to-end headers.
pub fn callout_headers(
    method: &str,
    path: &str,
    authority: &str,
    request_headers: &[(String, Vec<u8>)],
) -> HeaderList {
    let mut out = Vec::with_capacity(request_headers.len() + 3);
    out.push((":method".to_string(), method.as_bytes().to_vec()));
    out.push((":path".to_string(), path.as_bytes().to_vec()));
    out.push((":authority".to_string(), authority.as_bytes().to_vec()));
    out.extend(end_to_end(request_headers));
    out
}

/// The headers levee answers the client with: the upstream's end-to-end headers (any
/// `x-levee-attempts` it sent replaced) plus `x-levee-attempts: attempts`.
pub fn client_headers(upstream_headers: &[(String, Vec<u8>)], attempts: u32) -> HeaderList {
    let mut out: HeaderList = end_to_end(upstream_headers)
        .into_iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(ATTEMPTS_HEADER))
        .collect();
    out.push((
        ATTEMPTS_HEADER.to_string(),
        attempts.to_string().into_bytes(),
    ));
    out
}

/// The first value of header `name` (any case) as text, if it is UTF-8.
pub fn header_str<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn names(list: &HeaderList) -> Vec<&str> {
        list.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn request_hop_by_hop_headers_are_dropped_and_end_to_end_ones_kept_in_order() {
        let req = h(&[
            (":method", "POST"),
            (":scheme", "https"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-request-id", "r1"),
            ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"),
            ("content-length", "12"),
            ("x-secret-hop", "1"),
            ("traceparent", "00-abc-def-01"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("trailer", "x-checksum"),
            ("idempotency-key", "k-1"),
            ("authorization", "Bearer t"),
        ]);
        let out = callout_headers("POST", "/pay?x=1", "payments.internal", &req);
        assert_eq!(
            names(&out),
            [
                ":method",
                ":path",
                ":authority",
                "x-request-id",
                "traceparent",
                "idempotency-key",
                "authorization"
            ]
        );
        assert_eq!(out[1].1, b"/pay?x=1");
        assert_eq!(out[2].1, b"payments.internal");
    }

    #[test]
    fn response_keeps_end_to_end_headers_and_states_the_attempts() {
        let resp = h(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("connection", "close"),
            ("content-length", "2"),
            ("x-levee-attempts", "99"),
            ("set-cookie", "a=1"),
            ("proxy-authenticate", "Basic"),
        ]);
        let out = client_headers(&resp, 3);
        assert_eq!(
            out,
            h(&[
                ("content-type", "application/json"),
                ("set-cookie", "a=1"),
                ("x-levee-attempts", "3")
            ])
        );
    }

    #[test]
    fn connection_tokens_that_are_not_utf8_are_ignored() {
        let req = vec![
            ("connection".to_string(), vec![0xff, b',', b'x', b'-', b'a']),
            ("x-a".to_string(), b"1".to_vec()),
            ("x-b".to_string(), vec![0xfe]),
        ];
        assert_eq!(names(&end_to_end(&req)), ["x-b"]);
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let resp = h(&[("Retry-After", "3")]);
        assert_eq!(header_str(&resp, "retry-after"), Some("3"));
        assert_eq!(header_str(&resp, "x-ratelimit-reset"), None);
    }
}
