//! The descriptor levee sends for one limit, with client-supplied key values bounded.
//!
//! One descriptor per limit: entries `("levee_limit", <limit name>)` and `("key", <value>)`,
//! the limit's own `requests_per_unit` and `unit` as the `limit` override (so the service's
//! config needs only the domain) and the request's cost as `hits_addend`.
//!
//! Bounded by design: the key value comes from the client (a header, a query parameter) and may
//! be huge, binary, or one of millions. A value of at most [`MAX_PLAIN_VALUE`] bytes of
//! printable ASCII is sent as is, so operators can write service-side overrides for it; any
//! other value is sent as `h:` followed by the 32 hex digits of its SipHash-1-3-128 (keys 0, so
//! every Envoy sends the same string). The service's key space therefore grows only with
//! values levee has admitted past its local tier, each at most 64 bytes long.

use super::request::{Descriptor, Entry, LimitOverride, Unit};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Entry key naming the limit.
pub const LIMIT_ENTRY: &str = "levee_limit";
/// Entry key carrying the limit's key value.
pub const KEY_ENTRY: &str = "key";
/// Longest key value sent unhashed.
pub const MAX_PLAIN_VALUE: usize = 64;

/// The unit of a window the protocol can express (`1s`, `1m`, `1h`, `1d`), else `None`.
pub fn unit_for_window_secs(secs: u64) -> Option<Unit> {
    match secs {
        1 => Some(Unit::Second),
        60 => Some(Unit::Minute),
        3600 => Some(Unit::Hour),
        86_400 => Some(Unit::Day),
        _ => None,
    }
}

/// `value` as sent to the service: itself if short printable ASCII (and not empty: the
/// protocol requires a non-empty value), else `h:<32 hex digits>`.
pub fn bounded_value(value: &[u8]) -> String {
    let plain = !value.is_empty()
        && value.len() <= MAX_PLAIN_VALUE
        && value.iter().all(|b| (0x21..0x7f).contains(b));
    if plain {
        return value.iter().map(|&b| char::from(b)).collect();
    }
    let mut h = SipHasher13::new_with_keys(0, 0);
    h.write(value);
    format!("h:{:032x}", h.finish128().as_u128())
}

/// The descriptor for limit `name` on key `value`, `requests_per_unit` per `unit`, costing `hits`.
pub fn limit_descriptor(
    name: &str,
    value: &[u8],
    requests_per_unit: u32,
    unit: Unit,
    hits: u64,
) -> Descriptor {
    Descriptor {
        entries: vec![
            Entry {
                key: LIMIT_ENTRY.to_string(),
                value: name.to_string(),
            },
            Entry {
                key: KEY_ENTRY.to_string(),
                value: bounded_value(value),
            },
        ],
        limit: Some(LimitOverride {
            requests_per_unit,
            unit,
        }),
        hits_addend: Some(hits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_values_are_sent_as_they_are() {
        assert_eq!(bounded_value(b"api-key-123"), "api-key-123");
        assert_eq!(
            bounded_value(&[b'a'; MAX_PLAIN_VALUE]).len(),
            MAX_PLAIN_VALUE
        );
    }

    #[test]
    fn long_binary_spaced_or_empty_values_are_hashed_to_a_fixed_length() {
        for v in [
            &[b'a'; MAX_PLAIN_VALUE + 1][..],
            b"\x00\xff",
            b"a b",
            b"",
            "é".as_bytes(),
        ] {
            let sent = bounded_value(v);
            assert!(sent.starts_with("h:") && sent.len() == 34, "{sent}");
        }
        assert_ne!(bounded_value(b"a b"), bounded_value(b"a  b"));
        assert_eq!(
            bounded_value(b"\x00"),
            bounded_value(b"\x00"),
            "the same on every Envoy"
        );
    }

    #[test]
    fn only_windows_the_protocol_names_have_a_unit() {
        assert_eq!(unit_for_window_secs(60), Some(Unit::Minute));
        assert_eq!(unit_for_window_secs(30), None);
    }

    #[test]
    fn the_descriptor_carries_name_key_override_and_cost() {
        let d = limit_descriptor("per-api-key", b"k", 100, Unit::Minute, 3);
        assert_eq!(d.entries[0].value, "per-api-key");
        assert_eq!(d.entries[1].value, "k");
        assert_eq!(
            d.limit,
            Some(LimitOverride {
                requests_per_unit: 100,
                unit: Unit::Minute
            })
        );
        assert_eq!(d.hits_addend, Some(3));
    }
}
