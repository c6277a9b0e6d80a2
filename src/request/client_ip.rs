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
    let ip = from_xff.or_else(|| req.source_address().and_then(parse_address_bytes))?;
    Some(mask(ip, cfg.ipv6_prefix))
}

/// A `source.address` value as the `source_ip` part reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAddress<'a> {
    /// `ip:port` or `[v6]:port`: the IP, port stripped (the part masks it).
    Ip(IpAddr),
    /// Not an IP: a Unix socket path, an internal listener's name, …
    Text(&'a str),
}

/// Reads a `source.address` value; `None` when its bytes are not text, which the part
/// treats as absent.
pub fn read_source_address(address: &[u8]) -> Option<SourceAddress<'_>> {
    if let Some(v4) = ipv4_with_port(address) {
        return Some(SourceAddress::Ip(IpAddr::V4(v4)));
    }
    let text = std::str::from_utf8(address).ok()?;
    Some(parse_address(text).map_or(SourceAddress::Text(text), SourceAddress::Ip))
}

/// The (trusted_hops + 1)-th non-empty entry from the right of an X-Forwarded-For value,
/// if there is one and it is an IP address. Never panics, whatever the bytes.
pub fn xff_client(xff: &[u8], trusted_hops: u32) -> Option<IpAddr> {
    let entry = xff
        .rsplit(|b| *b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
        .nth(usize::try_from(trusted_hops).ok()?)?;
    parse_address_bytes(entry)
}

/// [`parse_address`] over raw bytes (Envoy's `source.address` property, an X-Forwarded-For
/// entry). Envoy's usual `a.b.c.d:port` is read straight from the bytes; anything else goes
/// through the general parser.
pub fn parse_address_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = ipv4_with_port(bytes) {
        return Some(IpAddr::V4(v4));
    }
    parse_address(std::str::from_utf8(bytes).ok()?)
}

/// `a.b.c.d:port` exactly as [`parse_address`] accepts it: four decimal octets of one to
/// three digits, none above 255 and none with a leading zero (the standard library's rule),
/// then one to five port digits (the port is not checked against 65535, as [`is_port`]).
/// `None` for anything else, which may still be an address of another form.
fn ipv4_with_port(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut rest = bytes;
    for (index, octet) in octets.iter_mut().enumerate() {
        let (value, after) = decimal_octet(rest)?;
        let separator = if index == 3 { b':' } else { b'.' };
        *octet = value;
        rest = after.strip_prefix(&[separator])?;
    }
    let port_ok = (1..=5).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit);
    port_ok.then_some(Ipv4Addr::from(octets))
}

/// The decimal octet at the start of `bytes` and what follows it: one to three digits, no
/// leading zero unless the octet is `0` itself, at most 255.
fn decimal_octet(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = bytes.split_at_checked(digits)?;
    let value = match *number {
        [a] => u32::from(a - b'0'),
        [a @ b'1'..=b'9', b] => u32::from(a - b'0') * 10 + u32::from(b - b'0'),
        [a @ b'1'..=b'9', b, c] => {
            u32::from(a - b'0') * 100 + u32::from(b - b'0') * 10 + u32::from(c - b'0')
        }
        _ => return None,
    };
    Some((u8::try_from(value).ok()?, rest))
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
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, ipv6_prefix)),
    }
}

/// Out of line: inlined, the compiler computes the 128-bit mask once before a caller's loop
/// (a library call on wasm), even when every address in it is IPv4.
#[inline(never)]
fn mask_v6(v6: Ipv6Addr, ipv6_prefix: u8) -> Ipv6Addr {
    let keep = u32::from(ipv6_prefix.min(128));
    let bits = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
    Ipv6Addr::from(u128::from(v6) & bits)
}

/// Length of an IPv4 address's key bytes ([`ipv4_key`]).
pub const KEY_V4_LEN: usize = 5;

/// The key bytes of an IPv4 address: `4` + its 4 octets.
pub fn ipv4_key(v4: Ipv4Addr) -> [u8; KEY_V4_LEN] {
    let [a, b, c, d] = v4.octets();
    [4, a, b, c, d]
}

/// Appends the canonical key bytes: `4` + 4 octets ([`ipv4_key`]), or `6` + 16 octets.
pub fn write_key(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&ipv4_key(v4)),
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
#[path = "client_ip_tests.rs"]
mod tests;
