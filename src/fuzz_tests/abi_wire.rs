//! What the host hands back through the ABI: serialized header maps and status codes.
//!
//! Envoy writes these bytes, not a client, but a decoder that indexes past the end traps the
//! VM just the same, so the decoder is fed raw bytes, mutated valid maps (the mutations pass
//! the count check and reach the size table and terminators) and extreme sizes.

use proptest::prelude::*;

use super::{cases, interesting_u64, mutate_bytes};
use crate::abi_wire::{decode_pairs, encode_pairs, HostStatus};
use crate::random::{RandomSource, SplitMix64};

/// A header map the host could send: up to 12 pairs, names and values of any bytes.
fn map(rng: &mut SplitMix64) -> Vec<(String, Vec<u8>)> {
    (0..rng.below(12))
        .map(|_| {
            let name: String = (0..rng.below(20))
                .map(|_| char::from(b'a' + rng.below(26) as u8))
                .collect();
            let value = (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect();
            (name, value)
        })
        .collect()
}

fn encode(map: &[(String, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = map
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    encode_pairs(&refs)
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn random_bytes_decode_or_fail_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(pairs) = decode_pairs(&bytes) {
            // Whatever decodes re-encodes to the same bytes, unless it was the empty buffer (the
            // other form of an empty map) or a name that was not UTF-8.
            if !bytes.is_empty() && !pairs.iter().any(|(k, _)| k.contains('\u{fffd}')) {
                prop_assert_eq!(encode(&pairs), bytes);
            }
        }
    }

    #[test]
    fn mutated_maps_decode_or_fail_without_panicking(seed in any::<u64>(), rounds in 1u32..6) {
        let mut rng = SplitMix64::seeded(seed);
        let original = map(&mut rng);
        let mut bytes = encode(&original);
        prop_assert_eq!(decode_pairs(&bytes), Ok(original));
        mutate_bytes(&mut bytes, &mut rng, rounds);
        if rng.below(4) == 0 && bytes.len() >= 4 {
            // An extreme count or size over the header: the decoder must not trust it.
            let at = 4 * rng.below((bytes.len() / 4) as u64) as usize;
            let v = interesting_u64(&mut rng) as u32;
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        let _ = decode_pairs(&bytes);
    }

    #[test]
    fn every_status_code_maps(code in any::<u32>()) {
        let status = HostStatus::from_code(code);
        prop_assert_eq!(status == HostStatus::Ok, code == 0);
    }
}
