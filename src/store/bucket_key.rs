//! The shared-data key of a slot-table bucket, `<prefix><index>`, built without the
//! formatter: one exact allocation, made once per lookup and kept for its write.
//!
//! (Building the key twice on the stack instead — once for the read, once for the write —
//! measured 1.7 k instructions per request more for five limits in Envoy's V8: zeroing the
//! buffer and validating the bytes as UTF-8, twice, cost more than one small allocation.)

use crate::decimal::Digits;

/// `<prefix><index>` as an owned key: one exact allocation.
pub(super) fn owned(prefix: &str, index: u32) -> String {
    let digits = Digits::of(u64::from(index));
    let digits = digits.as_bytes();
    let mut key = String::with_capacity(prefix.len() + digits.len());
    key.push_str(prefix);
    key.extend(digits.iter().map(|&d| char::from(d)));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_prefix_and_the_decimal_index() {
        for index in [0, 7, 10, 4_294_967_295] {
            let key = owned("levee:v1:rl:api:", index);
            assert_eq!(key, format!("levee:v1:rl:api:{index}"));
            assert_eq!(key.capacity(), key.len());
        }
    }
}
