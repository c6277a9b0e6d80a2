//! Which headers cross levee in callout mode, both ways.
//!
//! In router mode Envoy's HTTP connection manager and router strip hop-by-hop headers; a
//! callout bypasses both, so levee must do it itself or a client's `Connection: close` or
//! `Transfer-Encoding: chunked` would be replayed on a connection they were never meant for.
//! Requests and responses alike go through [`crate::hop_by_hop::end_to_end`], the filter the
//! fallbacks and idempotent replays use too: `connection` and every field it names,
//! `keep-alive`, `te`, `trailer`, `transfer-encoding`, `upgrade`, `proxy-connection`,
//! `proxy-authorization` and `proxy-authenticate` (credentials a client gave to *this* proxy,
//! and a proxy's challenge to the client, must not travel on to the application),
//! `content-length` (Envoy sets it for the callout body and for levee's reply body) and
//! pseudo-headers (levee writes `:method`, `:path` and `:authority` itself, Envoy adds
//! `:scheme`, and the status travels apart from the headers).
//!
//! Everything else is kept in order: `x-request-id`, `traceparent`, `b3`, the
//! `Idempotency-Key` (forwarded unchanged on every attempt), cookies, authorization.

use crate::header_names::{AUTHORITY, METHOD, PATH};
use crate::hop_by_hop::end_to_end;

/// A header list as the host hands it over: names as received, values as raw bytes.
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// The response header that tells the client how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "x-levee-attempts";

/// The header list of a callout: `:method`, `:path`, `:authority`, then the request's
/// end-to-end headers.
pub fn callout_headers(
    method: &str,
    path: &str,
    authority: &str,
    request_headers: &[(String, Vec<u8>)],
) -> HeaderList {
    let mut out = Vec::with_capacity(request_headers.len() + 3);
    out.push((METHOD.to_string(), method.as_bytes().to_vec()));
    out.push((PATH.to_string(), path.as_bytes().to_vec()));
    out.push((AUTHORITY.to_string(), authority.as_bytes().to_vec()));
    out.extend(end_to_end(request_headers, &[]));
    out
}

/// The headers levee answers the client with: the upstream's end-to-end headers (any
/// `x-levee-attempts` it sent replaced) plus `x-levee-attempts: attempts`.
pub fn client_headers(upstream_headers: &[(String, Vec<u8>)], attempts: u32) -> HeaderList {
    let mut out = end_to_end(upstream_headers, &[ATTEMPTS_HEADER]);
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
    fn callouts_keep_proxy_status_as_fallbacks_and_replays_do() {
        let req = h(&[("Proxy-Connection", "close"), ("x-proxy-id", "kept")]);
        let out = callout_headers("GET", "/", "a", &req);
        assert_eq!(
            names(&out),
            [":method", ":path", ":authority", "x-proxy-id"]
        );
        let resp = h(&[("proxy-status", "upstream"), ("content-type", "text/plain")]);
        assert_eq!(
            names(&client_headers(&resp, 1)),
            ["proxy-status", "content-type", "x-levee-attempts"]
        );
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let resp = h(&[("Retry-After", "3")]);
        assert_eq!(header_str(&resp, "retry-after"), Some("3"));
        assert_eq!(header_str(&resp, "x-ratelimit-reset"), None);
    }
}
