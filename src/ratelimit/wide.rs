//! `u128 ÷ u64` without the 128-bit library division where the operands allow it.
//!
//! GCRA keeps its instants in units of `1 / limit` ns, so its numbers pass `u64` (an instant
//! of 2026 times a limit of a thousand already does) and it divides them by the limit or the
//! window, both `u64`. On wasm32 a `u128` division is a call into the compiler's runtime
//! library (a loop of shifts and subtractions), made several times per limit and request; a
//! 64-bit division is one wasm instruction. So: a dividend that fits `u64` takes one 64-bit
//! division, a divisor below 2³² takes four (long division by 32-bit digits: each step divides
//! at most `(divisor − 1) · 2³² + (2³² − 1)`, which fits `u64`), and only the rest — a divisor
//! of 2³² or more with a dividend past `u64` — uses the library.

/// `(n / d, n % d)`; `d` must be at least 1 (0 gives `(0, 0)`).
pub fn div_rem(n: u128, d: u64) -> (u128, u64) {
    if d == 0 {
        return (0, 0);
    }
    if let Ok(small) = u64::try_from(n) {
        return (u128::from(small / d), small % d);
    }
    if d <= u64::from(u32::MAX) {
        let mut quotient = 0u128;
        let mut rem = 0u64;
        for shift in [96u32, 64, 32, 0] {
            // `rem < d < 2³²`, so the running dividend fits 64 bits.
            let digit = u64::from((n >> shift) as u32);
            let running = (rem << 32) | digit;
            quotient |= u128::from(running / d) << shift;
            rem = running % d;
        }
        return (quotient, rem);
    }
    let quotient = n / u128::from(d);
    // `n − quotient · d < d`: the remainder fits u64.
    let rem = (n - quotient * u128::from(d)) as u64;
    (quotient, rem)
}

/// `⌈n / d⌉`; `d` must be at least 1 (0 gives 0).
pub fn div_ceil(n: u128, d: u64) -> u128 {
    let (q, r) = div_rem(n, d);
    if r > 0 {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(n: u128, d: u64) {
        let d = d.max(1);
        let wide = u128::from(d);
        assert_eq!(div_rem(n, d), (n / wide, (n % wide) as u64), "{n} / {d}");
        assert_eq!(div_ceil(n, d), n.div_ceil(wide), "⌈{n} / {d}⌉");
    }

    #[test]
    fn edges_divide_as_u128_does() {
        let ns = [
            0,
            1,
            u128::from(u64::MAX),
            u128::from(u64::MAX) + 1,
            u128::MAX,
            u128::MAX - 1,
        ];
        let ds = [
            1,
            2,
            3,
            1_000_000_000,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        for n in ns {
            for d in ds {
                check(n, d);
            }
        }
        // A GCRA instant: 2026 in ns times a limit of a billion, over the limit and a minute.
        let now = 1_780_000_000_000_000_000u128 * 1_000_000_000 + 999_999_999;
        check(now, 1_000_000_000);
        check(now, 60_000_000_000);
        assert_eq!(div_rem(5, 0), (0, 0));
    }

    proptest! {
        #[test]
        fn divides_as_u128_does(n: u128, d: u64, small in 1u64..=u64::from(u32::MAX), low: u64) {
            check(n, d);
            check(n, small);
            check(u128::from(low), d);
            check(n >> 40, small);
        }
    }
}
