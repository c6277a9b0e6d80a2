//! Builds the byte string that identifies "who" a rate limit, idempotency record or cache
//! entry belongs to, from the configured key parts. The caller hashes it.
//!
//! ## Encoding: unambiguous by construction
//! Each part, in config order, is written as either
//! - `0x01`, the value's length as 4 bytes big-endian, then the value; or
//! - `0x00` when the part is **absent** (header not sent, no route name, metadata missing, …).
//!
//! Since the parts of one key list are fixed by the config, no two different tuples of
//! values can produce the same bytes (`["ab","c"]` ≠ `["a","bc"]`), and an absent header is
//! not the same as an empty one.
//!
//! ## Absent parts
//! An absent part still yields a key: all requests lacking, say, `x-user-id` share one
//! bucket (a client cannot escape a per-user limit by omitting its header — it only joins
//! the crowd of anonymous requests). [`KeyOutcome::missing_parts`] tells the caller, who may
//! choose otherwise (e.g. reject, or skip the limit).
//!
//! ## Values
//! `method`: as sent. `path`: without the query string. `client_ip` / `source_ip`: the
//! canonical IP bytes of [`super::client_ip::write_key`] (IPv6 masked); a `source.address`
//! that is not an IP (a Unix socket, an internal listener) is written as `0x00` + its text.
//! `header:NAME`: the first value's raw bytes. `metadata:…`: as the host renders it.
//! `query:NAME`: the first parameter whose **percent-decoded** name equals NAME, its value
//! percent-decoded too (`+` is a space, an invalid `%` escape is kept literally), so
//! `?user=a%62` and `?user=ab` share a bucket; `?user` alone is present with an empty value.

use std::net::IpAddr;

use super::client_ip::{
    client_ip, ipv4_key, mask, read_source_address, write_key, SourceAddress, KEY_V4_LEN,
};
use super::matcher::path_only;
use super::RequestAttributes;
use crate::config::{ClientIpConfig, KeyPart};

/// What [`extract_key`] found besides the bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyOutcome {
    /// How many parts were absent from the request (encoded as the absent marker).
    pub missing_parts: u32,
}

impl KeyOutcome {
    /// True when every part was present.
    pub fn complete(&self) -> bool {
        self.missing_parts == 0
    }
}

/// Clears `out` and writes the key for `parts` into it (see the module docs for the layout).
/// Allocates only to grow `out` and for metadata values (which the host hands over owned).
pub fn extract_key(
    parts: &[KeyPart],
    cfg: &ClientIpConfig,
    req: &dyn RequestAttributes,
    out: &mut Vec<u8>,
) -> KeyOutcome {
    out.clear();
    let mut outcome = KeyOutcome::default();
    for part in parts {
        let present = match part {
            KeyPart::Method => put(out, Some(req.method().as_bytes())),
            KeyPart::Path => put(out, Some(path_only(req.path_and_query()).as_bytes())),
            KeyPart::RouteName => put(out, req.route_name().map(str::as_bytes)),
            KeyPart::Header(name) => put(out, req.header(name)),
            KeyPart::Metadata { filter, path } => put(out, req.metadata(filter, path).as_deref()),
            KeyPart::ClientIp => match client_ip(cfg, req) {
                Some(ip) => put_ip(out, ip),
                None => put(out, None),
            },
            KeyPart::SourceIp => match req.source_address().and_then(read_source_address) {
                Some(SourceAddress::Ip(ip)) => put_ip(out, mask(ip, cfg.ipv6_prefix)),
                Some(SourceAddress::Text(text)) => put_with(
                    out,
                    Some(|o: &mut Vec<u8>| {
                        o.push(0);
                        o.extend_from_slice(text.as_bytes());
                    }),
                ),
                None => put(out, None),
            },
            KeyPart::Query(name) => {
                let value = query_param(req.path_and_query(), name);
                put_with(
                    out,
                    value.map(|v| move |o: &mut Vec<u8>| percent_decode_into(v.as_bytes(), o)),
                )
            }
        };
        if !present {
            outcome.missing_parts += 1;
        }
    }
    outcome
}

/// Writes one part from a ready value; returns whether it was present.
fn put(out: &mut Vec<u8>, value: Option<&[u8]>) -> bool {
    let Some(value) = value else {
        out.push(ABSENT);
        return false;
    };
    out.extend_from_slice(&present(value.len()));
    out.extend_from_slice(value);
    true
}

/// Writes a present IP part; an IPv4 address (the common case) in one fixed-size copy.
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [p, l0, l1, l2, l3] = present(KEY_V4_LEN);
            let [tag, a, b, c, d] = ipv4_key(v4);
            out.extend_from_slice(&[p, l0, l1, l2, l3, tag, a, b, c, d]);
            true
        }
        IpAddr::V6(_) => put_with(out, Some(|o: &mut Vec<u8>| write_key(ip, o))),
    }
}

/// Writes one part whose value is produced by `write`, patching its length afterwards.
fn put_with(out: &mut Vec<u8>, write: Option<impl FnOnce(&mut Vec<u8>)>) -> bool {
    let Some(write) = write else {
        out.push(ABSENT);
        return false;
    };
    let at = out.len();
    out.extend_from_slice(&present(0));
    write(out);
    let header = present(out.len() - at - PRESENT_LEN);
    out[at..at + PRESENT_LEN].copy_from_slice(&header);
    true
}

/// The byte of a part the request lacks.
const ABSENT: u8 = 0;
/// Length of a present part's header ([`present`]).
const PRESENT_LEN: usize = 5;

/// A present part's header: `1`, then the value's length as a big-endian `u32`.
fn present(len: usize) -> [u8; PRESENT_LEN] {
    let [a, b, c, d] = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [1, a, b, c, d]
}

/// The raw (still percent-encoded) value of the first query parameter whose decoded name is
/// `name`; `Some("")` for `?name` or `?name=`.
pub fn query_param<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path_and_query.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        decoded_eq(k.as_bytes(), name.as_bytes()).then_some(v)
    })
}

/// Percent-decodes `raw` (`+` → space; a malformed `%` escape stays as is) onto `out`.
pub fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut it = Decoded { raw, i: 0 };
    while let Some(b) = it.next_byte() {
        out.push(b);
    }
}

/// Compares the percent-decoding of `raw` with `want`, without allocating.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut it = Decoded { raw, i: 0 };
    let mut want = want.iter();
    loop {
        match (it.next_byte(), want.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == *b => {}
            _ => return false,
        }
    }
}

struct Decoded<'a> {
    raw: &'a [u8],
    i: usize,
}

impl Decoded<'_> {
    fn next_byte(&mut self) -> Option<u8> {
        let b = *self.raw.get(self.i)?;
        self.i += 1;
        match b {
            b'+' => Some(b' '),
            b'%' => match (
                self.raw.get(self.i).and_then(hex),
                self.raw.get(self.i + 1).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    self.i += 2;
                    Some(hi << 4 | lo)
                }
                _ => Some(b'%'),
            },
            _ => Some(b),
        }
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::fake::FakeRequest;

    const CFG: ClientIpConfig = ClientIpConfig {
        xff_trusted_hops: 0,
        ipv6_prefix: 64,
    };

    fn key(parts: &[KeyPart], req: &FakeRequest) -> (Vec<u8>, KeyOutcome) {
        let mut out = b"stale".to_vec();
        let outcome = extract_key(parts, &CFG, req, &mut out);
        (out, outcome)
    }

    fn header(n: &str) -> KeyPart {
        KeyPart::Header(n.into())
    }

    #[test]
    fn no_parts_is_one_global_key() {
        assert_eq!(
            key(&[], &FakeRequest::get("/")),
            (vec![], KeyOutcome { missing_parts: 0 })
        );
    }

    #[test]
    fn parts_are_length_prefixed_so_boundaries_cannot_shift() {
        let parts = [header("a"), header("b")];
        let (k1, _) = key(
            &parts,
            &FakeRequest::get("/").header("a", "ab").header("b", "c"),
        );
        let (k2, _) = key(
            &parts,
            &FakeRequest::get("/").header("a", "a").header("b", "bc"),
        );
        assert_ne!(k1, k2);
        assert_eq!(k1, [1, 0, 0, 0, 2, b'a', b'b', 1, 0, 0, 0, 1, b'c']);
    }

    #[test]
    fn absent_header_is_a_shared_marker_distinct_from_empty() {
        let parts = [header("x-user-id")];
        let (absent, o) = key(&parts, &FakeRequest::get("/"));
        let (absent2, _) = key(&parts, &FakeRequest::get("/other"));
        let (empty, o2) = key(&parts, &FakeRequest::get("/").header("x-user-id", ""));
        assert_eq!((absent.as_slice(), o.missing_parts), (&[0u8][..], 1));
        assert_eq!(absent, absent2);
        assert_eq!(
            (empty.as_slice(), o2.complete()),
            (&[1u8, 0, 0, 0, 0][..], true)
        );
    }

    #[test]
    fn method_path_and_route_name() {
        let req = FakeRequest::new("POST", "/orders?x=1").route("orders");
        let (k, o) = key(&[KeyPart::Method, KeyPart::Path, KeyPart::RouteName], &req);
        assert!(o.complete());
        assert_eq!(
            k,
            [
                &[1, 0, 0, 0, 4][..],
                b"POST",
                &[1, 0, 0, 0, 7],
                b"/orders",
                &[1, 0, 0, 0, 6],
                b"orders"
            ]
            .concat()
        );
        let (_, o) = key(&[KeyPart::RouteName], &FakeRequest::get("/"));
        assert_eq!(o.missing_parts, 1);
    }

    #[test]
    fn client_ip_uses_canonical_ip_bytes() {
        let a = FakeRequest::get("/").header("x-forwarded-for", "9.9.9.9, 2001:db8::1");
        let b = FakeRequest::get("/").header("x-forwarded-for", "[2001:db8::ffff]:99");
        let (ka, _) = key(&[KeyPart::ClientIp], &a);
        assert_eq!(ka, key(&[KeyPart::ClientIp], &b).0, "same /64");
        assert_eq!(&ka[..6], &[1, 0, 0, 0, 17, 6]);
        assert_eq!(
            key(&[KeyPart::ClientIp], &FakeRequest::get("/"))
                .1
                .missing_parts,
            1
        );
    }

    #[test]
    fn source_ip_that_is_not_an_ip_is_kept_as_text() {
        let (k, o) = key(
            &[KeyPart::SourceIp],
            &FakeRequest::get("/").source("/run/envoy.sock"),
        );
        assert!(o.complete());
        assert_eq!(&k[5..], b"\0/run/envoy.sock");
        let (k, _) = key(
            &[KeyPart::SourceIp],
            &FakeRequest::get("/").source("192.0.2.1:4000"),
        );
        assert_eq!(k, [1, 0, 0, 0, 5, 4, 192, 0, 2, 1]);
    }

    #[test]
    fn source_ip_ignores_forwarded_for_and_masks_ipv6() {
        let req = FakeRequest::get("/")
            .source("[2001:db8::1:2]:1234")
            .header("x-forwarded-for", "9.9.9.9");
        let (k, o) = key(&[KeyPart::SourceIp], &req);
        assert!(o.complete());
        let mut want = vec![1, 0, 0, 0, 17, 6, 0x20, 0x01, 0x0d, 0xb8];
        want.extend_from_slice(&[0; 12]);
        assert_eq!(k, want);
        let (k, o) = key(
            &[KeyPart::SourceIp, KeyPart::SourceIp],
            &FakeRequest::get("/"),
        );
        assert_eq!((k, o.missing_parts), (vec![0, 0], 2));
    }

    #[test]
    fn query_takes_the_first_occurrence_and_decodes() {
        let part = [KeyPart::Query("user".into())];
        let (a, _) = key(&part, &FakeRequest::get("/p?x=1&user=a%62&user=zz"));
        let (b, _) = key(&part, &FakeRequest::get("/p?us%65r=ab"));
        assert_eq!(a, [1, 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(a, b);
        let (c, _) = key(&part, &FakeRequest::get("/p?user=a+b%zz"));
        assert_eq!(&c[5..], b"a b%zz");
        let (d, o) = key(&part, &FakeRequest::get("/p?user"));
        assert_eq!((d.as_slice(), o.complete()), (&[1u8, 0, 0, 0, 0][..], true));
        assert_eq!(
            key(&part, &FakeRequest::get("/p?users=1")).1.missing_parts,
            1
        );
        assert_eq!(
            key(&part, &FakeRequest::get("/p#user=1")).1.missing_parts,
            1
        );
    }

    #[test]
    fn metadata_value_comes_from_the_host() {
        let part = [KeyPart::Metadata {
            filter: "jwt".into(),
            path: vec!["payload".into(), "sub".into()],
        }];
        let req = FakeRequest::get("/").metadata("jwt", &["payload", "sub"], "alice");
        assert_eq!(
            key(&part, &req).0,
            [&[1, 0, 0, 0, 5][..], b"alice"].concat()
        );
        assert_eq!(key(&part, &FakeRequest::get("/")).1.missing_parts, 1);
    }
}
