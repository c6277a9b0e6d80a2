//! Which header fields describe a connection rather than the message, and so must not be sent
//! on another one (RFC 9110 §7.6.1).
//!
//! In router mode Envoy strips them itself. levee re-sends messages behind Envoy's back in
//! three places — a callout (the client's request on a new connection, the upstream's answer
//! back to the client), a fallback (a stored answer replayed, a queued request delivered
//! later) and an idempotent replay — and each must drop the same fields, or a client's
//! `Connection: close` or `Transfer-Encoding: chunked` would be applied to a connection it was
//! never meant for. Header values come as bytes from the host and as text from storage, so the
//! filter is generic over both.
//!
//! Dropped, names compared case-insensitively:
//! - `connection`, `keep-alive`, `te`, `trailer`, `transfer-encoding`, `upgrade`, and every
//!   field the message's own `Connection` header names;
//! - `proxy-connection` (a pre-standard `connection`), and `proxy-authorization` /
//!   `proxy-authenticate` (credentials a client gave to *this* proxy, a proxy's challenge to the
//!   client: RFC 2616 §13.5.1 lists them as hop-by-hop). Other `proxy-*` fields are end to end:
//!   `Proxy-Status` (RFC 9209) exists precisely to tell the client what a proxy saw;
//! - `content-length`: Envoy sets it from the body it actually sends;
//! - pseudo-headers (`:method`, `:path`, `:status`, …): the sender writes its own.
//!
//! The callout and fallback paths once had a copy each; they differed only in `proxy-*`
//! (the callout dropped the three named ones, the fallback every one). The named three are
//! kept: dropping every `proxy-*` field would hide a `Proxy-Status` from the client.

use crate::header_names::{CONTENT_LENGTH, UPGRADE};

/// Dropped by exact name (any case) whatever `Connection` says.
const CONNECTION_SPECIFIC: [&str; 10] = [
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    UPGRADE,
    CONTENT_LENGTH,
];

/// Whether `name` (any case) is dropped whatever the `Connection` header says.
pub fn is_hop_by_hop(name: &str) -> bool {
    name.starts_with(':')
        || CONNECTION_SPECIFIC
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
}

/// The field names the message's `Connection` header(s) list, lower-cased. A token that is not
/// UTF-8 cannot name a field levee would send, so it is skipped.
pub fn connection_tokens<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.as_ref().split(|b| *b == b','))
        .filter_map(|token| std::str::from_utf8(token).ok())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `headers` without hop-by-hop fields (see the module docs) and without the `also_drop` names
/// (any case), order and repeated fields kept.
pub fn end_to_end<N, V>(headers: &[(N, V)], also_drop: &[&str]) -> Vec<(N, V)>
where
    N: AsRef<str> + Clone,
    V: AsRef<[u8]> + Clone,
{
    let listed = connection_tokens(headers);
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_ref();
            !(is_hop_by_hop(n)
                || listed.iter().any(|t| n.eq_ignore_ascii_case(t))
                || also_drop.iter().any(|d| n.eq_ignore_ascii_case(d)))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<V>(list: &[(String, V)]) -> Vec<&str> {
        list.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn text(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn bytes(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn text_and_byte_values_lose_the_same_fields() {
        let pairs = [
            (":status", "200"),
            ("Connection", "close, X-Hop"),
            ("x-hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "x-sum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Content-Length", "2"),
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ];
        let want = ["content-type", "set-cookie", "set-cookie"];
        assert_eq!(names(&end_to_end(&text(&pairs), &[])), want);
        assert_eq!(names(&end_to_end(&bytes(&pairs), &[])), want);
    }

    #[test]
    fn the_three_rfc_2616_proxy_fields_are_dropped_and_proxy_status_reaches_the_client() {
        let pairs = [
            ("Proxy-Connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("Proxy-Authenticate", "Basic"),
            ("proxy-status", "envoy; error=connection_timeout"),
            ("proxyish", "kept: no dash"),
            ("x-proxy-id", "kept: not a prefix"),
        ];
        let want = ["proxy-status", "proxyish", "x-proxy-id"];
        assert_eq!(names(&end_to_end(&bytes(&pairs), &[])), want);
        assert_eq!(names(&end_to_end(&text(&pairs), &[])), want);
    }

    #[test]
    fn extra_names_are_dropped_in_any_case() {
        let h = text(&[("Age", "3"), ("x-a", "1"), ("EXPECT", "100-continue")]);
        assert_eq!(names(&end_to_end(&h, &["age", "expect"])), ["x-a"]);
    }

    #[test]
    fn connection_tokens_that_are_not_utf8_are_skipped() {
        let mut listed = vec![0xff, b','];
        listed.extend_from_slice(b" X-A ");
        let h = vec![
            ("connection".to_string(), listed),
            ("x-a".to_string(), b"1".to_vec()),
            ("x-b".to_string(), vec![0xfe]),
        ];
        assert_eq!(connection_tokens(&h), ["x-a"]);
        assert_eq!(names(&end_to_end(&h, &[])), ["x-b"]);
    }

    #[test]
    fn short_and_non_ascii_names_are_not_mistaken_for_proxy_fields() {
        assert!(!is_hop_by_hop("proxy"));
        assert!(!is_hop_by_hop("prö-xy"));
        assert!(!is_hop_by_hop(""));
        assert!(!is_hop_by_hop("PROXY-"));
        assert!(is_hop_by_hop("PROXY-AUTHORIZATION"));
    }
}
