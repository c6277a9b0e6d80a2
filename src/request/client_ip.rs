//! Who is the client? The `client_ip` and `source_ip` key parts, built so that a client
//! cannot pick its own identity.
//!
//! ## `client_ip`: X-Forwarded-For counted from the right
//!
//! Every proxy appends the address it received the request from to the **right** of
//! X-Forwarded-For; a client can write anything it likes on the **left**. So levee counts
//! from the right, like Envoy's `xff_num_trusted_hops`:
//!
//! - with `client_ip.xff_trusted_hops = N`, the client is the **(N+1)-th entry from the
//!   right** of the X-Forwarded-For header as levee sees it (after Envoy's connection manager);
//! - `N = 0` (the default) takes the **rightmost** entry: the address that the last proxy
//!   before levee saw. With Envoy at the edge and `use_remote_address: true`, Envoy itself
//!   appends the peer address, so that entry is the real TCP peer. Behind one load balancer
//!   that appends (and Envoy with `use_remote_address: false`), it is the address the load
//!   balancer saw. Each further trusted proxy that appends adds one to N.
//! - If the header is absent, has fewer than N+1 entries, or the chosen entry is not an IP
//!   address, levee falls back to `source.address` (what Envoy computed as the downstream
//!   address). Entries left of the chosen one are never read, so prepending entries — the
//!   only thing a client can do — changes nothing.
//!
//! Caveat for operators: if Envoy is the edge with `use_remote_address: false` and nothing
//! in front appends, the rightmost entry is the client's own text. Use `use_remote_address:
//! true` at the edge, or key on `source_ip`.
//!
//! Parsing: several X-Forwarded-For headers are the same as one joined by commas (Envoy
//! joins them); entries are trimmed of spaces and tabs, and empty entries are skipped
//! (proxies never append empty ones). An entry may be `1.2.3.4`, `1.2.3.4:port`, `::1`,
//! `[::1]` or `[::1]:port`. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) counts as the
//! IPv4 address, so dual-stack sockets do not give a client two identities.
//!
//! ## IPv6 masking
//! One IPv6 customer usually holds a whole /64 (or /56, /48): keying on the full address
//! would let them rotate through 2^64 identities. IPv6 addresses are therefore cut to
//! `client_ip.ipv6_prefix` bits (default 64); IPv4 addresses are used whole.
//!
//! ## Key bytes
//! [`write_key`] emits `4` + 4 octets or `6` + 16 octets (masked), a fixed-size canonical form.

use crate::header_names::X_FORWARDED_FOR;

use super::RequestAttributes;
use crate::config::ClientIpConfig;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The client address for the `client_ip` part, masked; `None` when neither
/// X-Forwarded-For nor `source.address` yields an IP.
pub fn client_ip(cfg: &ClientIpConfig, req: &dyn RequestAttributes) -> Option<IpAddr> {
    let from_xff = req
        .header(X_FORWARDED_FOR)
        .and_then(|xff| xff_client(xff, cfg.xff_trusted_hops));
    let ip = from_xff.or_else(|| req.source_address().and_then(parse_address))?;
    Some(mask(ip, cfg.ipv6_prefix))
}

/// The downstream address for the `source_ip` part, port stripped and masked.
pub fn source_ip(cfg: &ClientIpConfig, req: &dyn RequestAttributes) -> Option<IpAddr> {
    req.source_address()
        .and_then(parse_address)
        .map(|ip| mask(ip, cfg.ipv6_prefix))
}

/// The (trusted_hops + 1)-th non-empty entry from the right of an X-Forwarded-For value,
/// if there is one and it is an IP address. Never panics, whatever the bytes.
pub fn xff_client(xff: &[u8], trusted_hops: u32) -> Option<IpAddr> {
    let entry = xff
        .rsplit(|b| *b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
        .nth(usize::try_from(trusted_hops).ok()?)?;
    parse_address(std::str::from_utf8(entry).ok()?)
}

/// Parses `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`; IPv4-mapped IPv6 becomes IPv4.
pub fn parse_address(s: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Some((host, port)) = s.split_once(':').filter(|(_, p)| !p.contains(':')) {
        // One colon: `ipv4:port` (Envoy's source address), as no IPv6 address has only one.
        // Checked first, so the common case skips a failed parse as a whole address.
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    } else {
        s.parse::<IpAddr>().ok()?
    };
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

/// Keeps the first `ipv6_prefix` bits of an IPv6 address; IPv4 is returned as is.
pub fn mask(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let keep = u32::from(ipv6_prefix.min(128));
            let bits = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & bits))
        }
    }
}

/// Appends the canonical key bytes: `4` + 4 octets, or `6` + 16 octets.
pub fn write_key(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::fake::FakeRequest;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(hops: u32, prefix: u8) -> ClientIpConfig {
        ClientIpConfig {
            xff_trusted_hops: hops,
            ipv6_prefix: prefix,
        }
    }

    #[test]
    fn xff_with_zero_trusted_hops_takes_the_rightmost_entry() {
        assert_eq!(
            xff_client(b"1.1.1.1, 2.2.2.2, 3.3.3.3", 0),
            Some(ip("3.3.3.3"))
        );
    }

    #[test]
    fn xff_with_one_trusted_hop_ignores_spoofed_prefix() {
        let honest = xff_client(b"203.0.113.7, 10.0.0.2", 1);
        let spoofed = xff_client(b"6.6.6.6, 7.7.7.7, 203.0.113.7, 10.0.0.2", 1);
        assert_eq!(honest, Some(ip("203.0.113.7")));
        assert_eq!(spoofed, honest);
    }

    #[test]
    fn xff_too_short_or_invalid_falls_back_to_source_address() {
        let c = cfg(1, 64);
        let short = FakeRequest::get("/")
            .header("x-forwarded-for", "10.0.0.2")
            .source("192.0.2.1:5000");
        assert_eq!(client_ip(&c, &short), Some(ip("192.0.2.1")));
        let junk = FakeRequest::get("/")
            .header("x-forwarded-for", "unknown, 10.0.0.2")
            .source("192.0.2.1:5000");
        assert_eq!(client_ip(&c, &junk), Some(ip("192.0.2.1")));
        let none = FakeRequest::get("/").source("[2001:db8::1]:443");
        assert_eq!(client_ip(&c, &none), Some(ip("2001:db8::")));
        assert_eq!(client_ip(&c, &FakeRequest::get("/")), None);
    }

    #[test]
    fn xff_entries_may_carry_ports_brackets_and_whitespace() {
        assert_eq!(xff_client(b"\t1.2.3.4:8080 ", 0), Some(ip("1.2.3.4")));
        assert_eq!(xff_client(b"[2001:db8::5]:443", 0), Some(ip("2001:db8::5")));
        assert_eq!(xff_client(b"[2001:db8::5]", 0), Some(ip("2001:db8::5")));
        assert_eq!(xff_client(b"2001:db8::5", 0), Some(ip("2001:db8::5")));
        assert_eq!(
            xff_client(b"::ffff:198.51.100.9", 0),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn joined_xff_headers_and_empty_entries_count_like_one_list() {
        assert_eq!(
            xff_client(b"1.1.1.1,,2.2.2.2 , ,3.3.3.3", 1),
            Some(ip("2.2.2.2"))
        );
        assert_eq!(xff_client(b"1.1.1.1,", 0), Some(ip("1.1.1.1")));
    }

    #[test]
    fn malformed_entries_are_not_addresses() {
        for bad in [
            "1.2.3.4:",
            "1.2.3.4:123456",
            "[::1",
            "[::1]x",
            "::1:80:x",
            "1.2.3",
            "fe80::1%eth0",
            "",
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn ipv6_is_masked_to_the_prefix_and_ipv4_is_untouched() {
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 48), ip("2001:db8:1::"));
        assert_eq!(
            mask(ip("2001:db8:1:2:3:4:5:6"), 128),
            ip("2001:db8:1:2:3:4:5:6")
        );
        assert_eq!(mask(ip("2001:db8::1"), 1), ip("::"));
        assert_eq!(mask(ip("192.0.2.55"), 8), ip("192.0.2.55"));
    }

    #[test]
    fn source_ip_strips_the_port_and_masks() {
        let c = cfg(0, 64);
        let req = FakeRequest::get("/")
            .source("[2001:db8::1:2]:1234")
            .header("x-forwarded-for", "9.9.9.9");
        assert_eq!(source_ip(&c, &req), Some(ip("2001:db8::")));
        assert_eq!(
            source_ip(&c, &FakeRequest::get("/").source("192.0.2.1:80")),
            Some(ip("192.0.2.1"))
        );
    }

    #[test]
    fn key_bytes_are_fixed_size_and_tagged() {
        let mut out = Vec::new();
        write_key(ip("1.2.3.4"), &mut out);
        assert_eq!(out, [4, 1, 2, 3, 4]);
        out.clear();
        write_key(ip("::1"), &mut out);
        assert_eq!((out.len(), out[0], out[16]), (17, 6, 1));
    }

    proptest! {
        #[test]
        fn xff_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), hops in 0u32..20) {
            let _ = xff_client(&bytes, hops);
        }

        #[test]
        fn prepended_entries_never_change_the_client(prefix in "[0-9a-f.:, \\[\\]]{0,40}", hops in 0u32..4) {
            let proxies = ["203.0.113.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"];
            let tail = proxies[..=hops as usize].join(", ");
            let spoofed = format!("{prefix},{tail}");
            prop_assert_eq!(xff_client(spoofed.as_bytes(), hops), Some(ip("203.0.113.1")));
        }

        /// `ipv4:port` is tried before a whole address: the same answers as the other order.
        #[test]
        fn the_one_colon_shortcut_parses_as_the_whole_address_first(
            s in "\\[?[0-9a-f.:]{0,24}\\]?(:[0-9]{0,6})?",
            v4 in any::<[u8; 4]>(),
            port in any::<u16>(),
        ) {
            let whole_first = |s: &str| -> Option<IpAddr> {
                if s.starts_with('[') {
                    return parse_address(s);
                }
                let ip = match s.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        let (host, port) = s.split_once(':')?;
                        if !is_port(port) {
                            return None;
                        }
                        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
                    }
                };
                Some(match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                })
            };
            let addr = format!("{}:{port}", Ipv4Addr::from(v4));
            prop_assert_eq!(parse_address(&addr), whole_first(&addr));
            prop_assert_eq!(parse_address(&addr), Some(IpAddr::V4(Ipv4Addr::from(v4))));
            prop_assert_eq!(parse_address(&s), whole_first(&s));
        }
    }
}
