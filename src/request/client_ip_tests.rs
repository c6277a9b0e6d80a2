//! Tests for [`super`]: X-Forwarded-For counting, address parsing (the byte parser checked
//! against the general one), masking and key bytes.

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
fn source_address_is_an_ip_without_its_port_else_text() {
    use SourceAddress::{Ip, Text};
    assert_eq!(
        read_source_address(b"[2001:db8::1:2]:1234"),
        Some(Ip(ip("2001:db8::1:2")))
    );
    assert_eq!(
        read_source_address(b"192.0.2.1:80"),
        Some(Ip(ip("192.0.2.1")))
    );
    assert_eq!(
        read_source_address(b"/run/envoy.sock"),
        Some(Text("/run/envoy.sock"))
    );
    assert_eq!(read_source_address(b"\xff1.2.3.4:80"), None);
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

/// What [`parse_address_bytes`] must answer: the general parser over the bytes as text.
fn general(bytes: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(bytes).ok().and_then(parse_address)
}

/// Octet-like texts, mostly valid; else a leading zero, above 255, too many digits, empty,
/// or not only digits.
fn octet_text() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (0u16..=255).prop_map(|n| n.to_string()),
        1 => "0[0-9]{1,3}",
        1 => (256u16..=999).prop_map(|n| n.to_string()),
        1 => "[0-9]{4,6}",
        1 => Just(String::new()),
        1 => "[0-9]{0,2}[a-f+ \\-٣]",
    ]
}

/// Texts shaped like `a.b.c.d:port`, mostly one defect away from valid: another number of
/// octets, doubled or missing dots, a colon in place of a dot, an empty, long or huge
/// port, trailing junk.
fn ipv4_port_like() -> impl Strategy<Value = String> {
    let separator = prop_oneof![12 => Just("."), 1 => Just(".."), 1 => Just(":"), 1 => Just("")];
    let count = prop_oneof![8 => Just(4usize), 1 => 1usize..7];
    (
        count.prop_flat_map(move |n| {
            proptest::collection::vec((octet_text(), separator.clone()), n)
        }),
        prop_oneof![8 => Just(":"), 1 => Just(""), 1 => Just("::"), 1 => Just(".")],
        prop_oneof![6 => "[0-9]{1,5}", 1 => Just(String::new()), 1 => "[0-9]{6,7}", 1 => "[0-9]{0,3}[a:]"],
        prop_oneof![8 => Just(""), 1 => Just(":1"), 1 => Just("]"), 1 => Just(" ")],
    )
        .prop_map(|(octets, colon, port, suffix)| {
            let mut text = String::new();
            for (index, (octet, separator)) in octets.iter().enumerate() {
                if index > 0 {
                    text.push_str(separator);
                }
                text.push_str(octet);
            }
            format!("{text}{colon}{port}{suffix}")
        })
}

#[test]
fn the_byte_parser_reads_the_usual_source_address_itself() {
    assert_eq!(
        ipv4_with_port(b"192.0.2.1:4000"),
        Some([192, 0, 2, 1].into())
    );
    assert_eq!(ipv4_with_port(b"0.0.0.0:0"), Some([0, 0, 0, 0].into()));
    assert_eq!(
        ipv4_with_port(b"255.255.255.255:99999"),
        Some([255; 4].into())
    );
    for other in [
        &b"[::1]:80"[..],
        b"::ffff:1.2.3.4",
        b"1.2.3.4",
        b"01.2.3.4:80",
        b"1.2.3.256:80",
        b"1.2.3.4:",
        b"1.2.3.4:123456",
        b"1.2.3.4.5:80",
        b"1..3.4:80",
    ] {
        assert_eq!(
            ipv4_with_port(other),
            None,
            "{:?}",
            String::from_utf8_lossy(other)
        );
        assert_eq!(parse_address_bytes(other), general(other));
    }
}

proptest! {
    /// The byte parser answers exactly as the general parser, on any bytes.
    #[test]
    fn the_byte_parser_equals_the_general_one_on_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..40),
        text in "[0-9.:\\[\\]a-f ]{0,24}",
    ) {
        prop_assert_eq!(parse_address_bytes(&bytes), general(&bytes));
        prop_assert_eq!(parse_address_bytes(text.as_bytes()), general(text.as_bytes()));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// … and on `a.b.c.d:port` look-alikes, where the fast path decides.
    #[test]
    fn the_byte_parser_equals_the_general_one_on_ipv4_port_forms(
        text in ipv4_port_like(),
        v4 in any::<[u8; 4]>(),
        port in "[0-9]{1,5}",
    ) {
        prop_assert_eq!(parse_address_bytes(text.as_bytes()), general(text.as_bytes()));
        let valid = format!("{}:{port}", Ipv4Addr::from(v4));
        prop_assert_eq!(ipv4_with_port(valid.as_bytes()), Some(Ipv4Addr::from(v4)));
        prop_assert_eq!(general(valid.as_bytes()), Some(IpAddr::V4(Ipv4Addr::from(v4))));
    }

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
