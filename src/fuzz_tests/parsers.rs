//! Parsers of outside input: the header values any client or upstream sends (the plugin
//! JSON an operator writes is fuzzed in [`super::config_json`]).

use proptest::prelude::*;

use super::cases;
use crate::config::{ClientIpConfig, KeyPart};
use crate::idempotency::{parse_key, KeyError};
use crate::random::{RandomSource, SplitMix64};
use crate::request::client_ip::{parse_address, xff_client};
use crate::request::fake::FakeRequest;
use crate::request::keys::extract_key;
use crate::retry::retry_after::{parse_http_date, parse_rate_limit_reset, parse_retry_after};

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn idempotency_keys_are_visible_ascii_within_the_limit_or_a_400(
        raw in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            "[ -~\t]{0,80}".prop_map(String::into_bytes),
            "\"([ !#-\\[\\]-~]|\\\\[\"\\\\]){0,40}\"".prop_map(String::into_bytes),
        ],
        max in prop_oneof![0u32..64, Just(u32::MAX)],
    ) {
        match parse_key(&raw, max) {
            Ok(key) => {
                prop_assert!(!key.as_bytes().is_empty());
                prop_assert!(key.as_bytes().len() as u64 <= u64::from(max));
                prop_assert!(key.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)));
                // The echoed header value names the same key.
                let echo = key.header_value();
                prop_assert_eq!(parse_key(echo.as_bytes(), u32::MAX), Ok(key.clone()));
                prop_assert!(echo.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                if let KeyError::TooLong { max: m } = e {
                    prop_assert_eq!(m, max);
                }
            }
        }
    }

    #[test]
    fn huge_idempotency_keys_are_refused_without_copying_them(len in 256usize..70_000, b in 0x23u8..0x7f) {
        let raw = vec![b; len];
        prop_assert_eq!(parse_key(&raw, 255), Err(KeyError::TooLong { max: 255 }));
    }

    #[test]
    fn retry_after_and_rate_limit_reset_never_panic(
        value in prop_oneof![
            ".{0,40}",
            "[0-9]{1,25}",
            "(Mon|Sun|Sunday), [0-9]{1,3}[ -](Jan|Feb|Nov|Dec|Xyz)[ -][0-9]{1,5} [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3} GMT",
            "(Sun|Mon) (Feb|Nov) +[0-9]{1,3} [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}",
        ],
        now in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), Just(1_700_000_000_000_000_000u64)],
    ) {
        let _ = parse_retry_after(&value, now);
        let _ = parse_rate_limit_reset(&value, now);
        if let Some(secs) = parse_http_date(value.trim()) {
            // A date in the past is "now", never a wait that wrapped around.
            prop_assert_eq!(parse_retry_after(&value, u64::MAX), Some(0));
            prop_assert!(secs < 253_402_300_800, "after 9999-12-31: {secs}");
        }
    }

    #[test]
    fn x_forwarded_for_never_panics_and_picks_a_real_entry(
        seed in any::<u64>(),
        n in 0usize..120,
        raw_tail in proptest::collection::vec(any::<u8>(), 0..16),
        hops in prop_oneof![0u32..8, Just(u32::MAX)],
    ) {
        // Entries built from a seed (regex strategies for 120 entries are slow in debug).
        let mut rng = SplitMix64::seeded(seed);
        let entries: Vec<String> = (0..n)
            .map(|_| {
                let o: Vec<u64> = (0..4).map(|_| rng.below(300)).collect();
                match rng.below(8) {
                    0 => format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
                    1 => format!("{}.{}.{}.{}:{}", o[0], o[1], o[2], o[3], rng.below(200_000)),
                    2 => format!("[2001:db8::{:x}]:{}", rng.below(65_536), rng.below(70_000)),
                    3 => format!("2001:db8::{:x}", rng.below(65_536)),
                    4 => format!("::ffff:10.0.0.{}", rng.below(300)),
                    5 => " \t ".repeat(rng.below(3) as usize),
                    6 => "[::1".to_string(),
                    _ => (0..rng.below(20)).map(|_| (0x20 + rng.below(95) as u8) as char).collect(),
                }
            })
            .collect();
        let mut xff = entries.join(",").into_bytes();
        xff.extend_from_slice(&raw_tail);
        if let Some(ip) = xff_client(&xff, hops) {
            // The answer is one of the entries, parsed.
            let found = String::from_utf8_lossy(&xff)
                .split(',')
                .filter_map(|e| parse_address(e.trim_matches([' ', '\t'])))
                .any(|e| e == ip);
            prop_assert!(found, "{ip} is not an entry of {:?}", String::from_utf8_lossy(&xff));
        }
    }

    #[test]
    fn key_extraction_is_total_and_unambiguous(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        other in proptest::collection::vec(any::<u8>(), 0..64),
        path in "(/[^?]{0,20})?(\\?.{0,30})?",
        source in prop_oneof![Just(None), ".{0,30}".prop_map(Some), Just(Some("[::1]:80".to_string()))],
        xff in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        prefix in 1u8..=128,
        hops in 0u32..4,
    ) {
        let parts = vec![
            KeyPart::Header("x-user".into()),
            KeyPart::Query("u".into()),
            KeyPart::ClientIp,
            KeyPart::SourceIp,
            KeyPart::Path,
            KeyPart::Method,
            KeyPart::RouteName,
            KeyPart::Metadata { filter: "f".into(), path: vec!["a".into()] },
        ];
        let cfg = ClientIpConfig { xff_trusted_hops: hops, ipv6_prefix: prefix };
        let build = |h: &[u8]| {
            let mut req = FakeRequest::get(&path).header("x-user", h);
            if let Some(s) = &source {
                req = req.source(s);
            }
            if let Some(x) = &xff {
                req = req.header("x-forwarded-for", x);
            }
            let mut out = Vec::new();
            let outcome = extract_key(&parts, &cfg, &req, &mut out);
            (out, outcome)
        };
        let (a, outcome) = build(&header);
        prop_assert!(outcome.missing_parts as usize <= parts.len());
        let (b, _) = build(&other);
        // Only the header differs: the keys differ exactly when the header values do.
        prop_assert_eq!(a == b, header == other);
    }
}

#[test]
fn a_60_kb_non_utf8_header_is_a_key_like_any_other() {
    let value: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
    let req = FakeRequest::get("/x").header("x-user", &value);
    let mut out = Vec::new();
    let outcome = extract_key(
        &[KeyPart::Header("x-user".into())],
        &ClientIpConfig {
            xff_trusted_hops: 0,
            ipv6_prefix: 64,
        },
        &req,
        &mut out,
    );
    assert!(outcome.complete());
    assert_eq!(out.len(), 1 + 4 + value.len());
}

#[test]
fn a_hundred_entry_forged_x_forwarded_for_yields_the_trusted_position() {
    let mut entries: Vec<String> = (0..100)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    entries.push("203.0.113.9".into());
    let xff = entries.join(", ");
    assert_eq!(
        xff_client(xff.as_bytes(), 0)
            .map(|ip| ip.to_string())
            .as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(
        xff_client(xff.as_bytes(), 1)
            .map(|ip| ip.to_string())
            .as_deref(),
        Some("10.0.0.99")
    );
    assert_eq!(xff_client(xff.as_bytes(), 500), None);
}
