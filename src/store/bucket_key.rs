//! The shared-data key of a slot-table bucket, `<prefix><index>`, built without the
//! formatter and, on the request path, without an allocation.
//!
//! Every table access names its bucket twice (the read, then the CAS write); a fresh `String`
//! for each would cost an allocation and its free per matching limit. The key is assembled in
//! a buffer on the stack instead whenever it fits (table names are short), and only a prefix
//! too long for it falls back to a `String`.

/// Bytes of the stack buffer a key is built in; longer keys are allocated.
const STACK_KEY_BYTES: usize = 96;

/// The decimal digits of `n`: the buffer and where they start in it.
fn decimal(n: u32) -> ([u8; 10], usize) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return (digits, at);
        }
    }
}

/// `<prefix><index>` as an owned key: one exact allocation.
pub(super) fn owned(prefix: &str, index: u32) -> String {
    let (digits, at) = decimal(index);
    let mut key = String::with_capacity(prefix.len() + digits.len() - at);
    key.push_str(prefix);
    key.extend(digits[at..].iter().map(|&d| char::from(d)));
    key
}

/// Calls `f` with `<prefix><index>`, built on the stack when it fits.
pub(super) fn with<R>(prefix: &str, index: u32, f: impl FnOnce(&str) -> R) -> R {
    let (digits, at) = decimal(index);
    let digits = &digits[at..];
    let len = prefix.len() + digits.len();
    let mut buf = [0u8; STACK_KEY_BYTES];
    if let Some(key) = buf.get_mut(..len) {
        let (head, tail) = key.split_at_mut(prefix.len());
        head.copy_from_slice(prefix.as_bytes());
        tail.copy_from_slice(digits);
        // A string's bytes followed by ASCII digits: always UTF-8.
        if let Ok(key) = std::str::from_utf8(key) {
            return f(key);
        }
    }
    f(&owned(prefix, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_on_the_stack_is_the_owned_key() {
        for index in [0, 7, 10, 4_294_967_295] {
            let short = with("levee:v1:rl:api:", index, str::to_owned);
            assert_eq!(short, owned("levee:v1:rl:api:", index));
            assert_eq!(short, format!("levee:v1:rl:api:{index}"));
        }
    }

    #[test]
    fn a_prefix_too_long_for_the_stack_is_still_named_in_full() {
        let prefix = format!("levee:v1:rl:{}:", "é".repeat(60));
        assert!(prefix.len() + 10 > STACK_KEY_BYTES);
        assert_eq!(with(&prefix, 12, str::to_owned), format!("{prefix}12"));
    }
}
