//! Randomness behind a trait so that jitter and ids are deterministic in tests.

/// A source of random 64-bit numbers.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;

    /// A uniform value in `[0, bound)`; 0 when `bound` is 0.
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for jitter, no division on the hot path.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// SplitMix64: tiny, fast, seedable. Seeded from `getrandom` in production.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Seeded from the operating system (WASI `random_get` inside Envoy).
    pub fn from_entropy() -> Self {
        Self::seeded(entropy_u64())
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// 64 bits from the OS; falls back to a fixed odd constant if the host refuses (never panics).
pub fn entropy_u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::getrandom(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => 0x2545_F491_4F6C_DD1D,
    }
}

/// `n` bytes from the OS, or `None` if the host refuses.
pub fn entropy_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).ok().map(|()| buf)
}
