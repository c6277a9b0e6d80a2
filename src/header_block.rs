//! A request's header map kept as the host serialized it, read in place.
//!
//! Why: a configuration that needs three or more request headers fetches the whole map in
//! one host call. Decoding it into owned pairs costs two allocations per header (a name and
//! a value), most never looked at: a request usually carries 6–10 headers and levee reads
//! two or three. [`HeaderBlock`] checks the bytes once and then answers lookups from them;
//! owned pairs are made only when every header is needed (callout forwarding).

use crate::abi_wire::{decode_pairs, encode_pairs, walk_pairs, PairsError};

/// A serialized header map (`count`, size table, `name \0 value \0` per pair) that decoded
/// without error; see [`crate::abi_wire`] for the format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    raw: Vec<u8>,
}

impl HeaderBlock {
    /// The host's bytes, checked once; an empty buffer is an empty map.
    pub fn parse(raw: Vec<u8>) -> Result<Self, PairsError> {
        walk_pairs(&raw, |_, _| {})?;
        Ok(Self { raw })
    }

    /// A block holding `pairs` (tests, and hosts that hand over pairs).
    pub fn from_pairs(pairs: &[(String, Vec<u8>)]) -> Self {
        let borrowed: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        Self {
            raw: encode_pairs(&borrowed),
        }
    }

    /// The pairs in order, read from bytes [`Self::parse`] checked (so no bound can fail;
    /// a short read would only end the walk early).
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let raw = self.raw.as_slice();
        let count = le_u32(raw, 0);
        let mut data = 4 + count * 8;
        (0..count).map(move |i| {
            let name_len = le_u32(raw, 4 + i * 8);
            let value_len = le_u32(raw, 8 + i * 8);
            let name = raw.get(data..data + name_len).unwrap_or_default();
            data += name_len + 1;
            let value = raw.get(data..data + value_len).unwrap_or_default();
            data += value_len + 1;
            (name, value)
        })
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// How many lines carry header `name`.
    pub fn lines(&self, name: &str) -> usize {
        self.pairs().filter(|(n, _)| *n == name.as_bytes()).count()
    }

    /// Every pair, owned (names that are not UTF-8 converted lossily).
    pub fn to_pairs(&self) -> Vec<(String, Vec<u8>)> {
        decode_pairs(&self.raw).unwrap_or_default()
    }
}

/// The little-endian `u32` at `at` (0 past the end: [`HeaderBlock::parse`] ruled that out).
fn le_u32(raw: &[u8], at: usize) -> usize {
    raw.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn lookups_answer_from_the_bytes_as_the_decoded_pairs_would() {
        let p = pairs(&[
            (":method", "GET"),
            ("x-user", "al"),
            ("x-user", "bo"),
            ("e", ""),
        ]);
        let block = HeaderBlock::parse(encode_pairs(
            &p.iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect::<Vec<_>>(),
        ))
        .unwrap();
        assert_eq!(block.get(":method"), Some(&b"GET"[..]));
        assert_eq!(block.get("x-user"), Some(&b"al"[..]), "the first line");
        assert_eq!(block.get("e"), Some(&b""[..]));
        assert_eq!(block.get("absent"), None);
        assert_eq!(block.lines("x-user"), 2);
        assert_eq!(block.lines("absent"), 0);
        assert_eq!(block.to_pairs(), p);
        assert_eq!(HeaderBlock::from_pairs(&p), block);
    }

    #[test]
    fn bytes_that_do_not_decode_are_refused_and_empty_is_an_empty_map() {
        assert!(HeaderBlock::parse(vec![1, 0, 0, 0]).is_err());
        let empty = HeaderBlock::parse(Vec::new()).unwrap();
        assert_eq!(empty.get(":method"), None);
        assert!(empty.to_pairs().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn the_block_answers_as_the_decoded_pairs(
            list in proptest::collection::vec(("[a-c:]{1,3}", proptest::collection::vec(0u8..255, 0..6)), 0..8),
            name in "[a-c:]{1,3}",
        ) {
            let borrowed: Vec<(&str, &[u8])> = list.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            let block = HeaderBlock::parse(encode_pairs(&borrowed)).unwrap();
            let first = list.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_slice());
            proptest::prop_assert_eq!(block.get(&name), first);
            proptest::prop_assert_eq!(block.lines(&name), list.iter().filter(|(k, _)| *k == name).count());
            proptest::prop_assert_eq!(block.to_pairs(), list.clone());
        }
    }
}
