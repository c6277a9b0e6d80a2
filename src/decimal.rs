//! Unsigned integers in decimal, written into a buffer of their own without the formatter: the
//! slot-table key names take a few digits on every request, and the formatter's generic path
//! costs several times more in wasm. Two digits per step from a table, and 64-bit divisions
//! (one wasm instruction each, not strength-reduced) only for the part above eight digits; the
//! rest divides 32-bit numbers, which the VM turns into multiplications.
//!
//! A number wanted as a `String` (the `X-RateLimit-*` values) takes `u64::to_string`: the
//! standard library writes integers the same way and copies the digits into an exact-size
//! `String` without checking them as UTF-8 again, which going through [`Digits`] cannot do in
//! safe code (measured: ≈ 0.1 k fewer instructions of wasm code per number).

/// The decimal digits of a number, in a buffer of their own.
pub struct Digits {
    buf: [u8; 20],
    at: usize,
}

impl Digits {
    pub fn of(n: u64) -> Self {
        const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                                     2021222324252627282930313233343536373839\
                                     4041424344454647484950515253545556575859\
                                     6061626364656667686970717273747576777879\
                                     8081828384858687888990919293949596979899";
        const EIGHT_DIGITS: u64 = 100_000_000;
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        let mut put_pair = |at: &mut usize, two: u32| {
            let i = two as usize * 2;
            *at -= 2;
            buf[*at..*at + 2].copy_from_slice(&PAIRS[i..i + 2]);
        };
        let mut high = n;
        while high >= EIGHT_DIGITS {
            let mut chunk = (high % EIGHT_DIGITS) as u32;
            high /= EIGHT_DIGITS;
            for _ in 0..4 {
                put_pair(&mut at, chunk % 100);
                chunk /= 100;
            }
        }
        let mut rest = high as u32;
        while rest >= 100 {
            put_pair(&mut at, rest % 100);
            rest /= 100;
        }
        if rest >= 10 {
            put_pair(&mut at, rest);
        } else {
            at -= 1;
            buf[at] = b'0' + rest as u8;
        }
        Self { buf, at }
    }

    /// The digits, most significant first (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn digits_are_the_formatters_digits(n in proptest::prelude::any::<u64>()) {
            let (digits, formatted) = (Digits::of(n), n.to_string());
            proptest::prop_assert_eq!(digits.as_bytes(), formatted.as_bytes());
        }
    }

    #[test]
    fn decimal_edges() {
        for n in [
            0,
            9,
            10,
            99,
            100,
            99_999_999,
            100_000_000,
            10u64.pow(16),
            10u64.pow(19),
            u64::MAX,
        ] {
            assert_eq!(Digits::of(n).as_bytes(), n.to_string().as_bytes());
        }
    }
}
