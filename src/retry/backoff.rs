//! How long to wait before retry *n*: exponential backoff with jitter.
//!
//! Without jitter every client that failed together retries together (100 ms, 200 ms, 400 ms…)
//! and the synchronized waves re-create the overload that caused the failure. The formulas are
//! the AWS Architecture Blog's ("Exponential Backoff And Jitter"), with
//! `t = min(max_delay, base_delay · 2ⁿ)` for retry `n = 0, 1, …`:
//!
//! | jitter | delay |
//! |---|---|
//! | `full` | uniform in `[0, t]` |
//! | `equal` | `t/2` + uniform in `[0, t/2]` (so in `[t/2, t]`) |
//! | `decorrelated` | `min(max_delay, uniform in [base_delay, 3 · previous])`, previous starts at `base_delay` |
//! | `none` | `t` |
//!
//! Randomness comes from a [`RandomSource`] passed in on each call, so that a [`Backoff`] is
//! plain data that a request can keep across host callbacks, and a seeded source makes tests
//! assert exact sequences (as `backon` does). All arithmetic saturates: `2ⁿ` for large `n`
//! simply reaches `max_delay`.

use std::time::Duration;

use crate::config::{Jitter, RetryConfig};
use crate::random::RandomSource;
use crate::time::duration_nanos;

/// The backoff state of one request: which retry comes next and the previous delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    jitter: Jitter,
    base_ns: u64,
    max_ns: u64,
    /// Index of the next retry (0 for the first).
    retry: u32,
    /// The last delay handed out (decorrelated jitter); starts at `base_ns`.
    previous_ns: u64,
}

impl Backoff {
    pub fn new(jitter: Jitter, base_delay: Duration, max_delay: Duration) -> Self {
        let base_ns = duration_nanos(base_delay);
        Self {
            jitter,
            base_ns,
            max_ns: duration_nanos(max_delay),
            retry: 0,
            previous_ns: base_ns,
        }
    }

    /// The backoff that `cfg` describes.
    pub fn from_config(cfg: &RetryConfig) -> Self {
        Self::new(cfg.jitter, cfg.base_delay, cfg.max_delay)
    }

    /// How many delays have been handed out.
    pub fn retries_so_far(&self) -> u32 {
        self.retry
    }

    /// The un-jittered ceiling for retry `n`: `min(max_delay, base_delay · 2ⁿ)`.
    pub fn ceiling_ns(&self, n: u32) -> u64 {
        let factor = 1u64.checked_shl(n).unwrap_or(u64::MAX);
        self.base_ns.saturating_mul(factor).min(self.max_ns)
    }

    /// The delay before the next retry, in nanoseconds; advances the state.
    pub fn next_delay_ns(&mut self, rng: &mut dyn RandomSource) -> u64 {
        let t = self.ceiling_ns(self.retry);
        let delay = match self.jitter {
            Jitter::None => t,
            Jitter::Full => uniform_inclusive(rng, 0, t),
            Jitter::Equal => {
                let half = t / 2;
                half.saturating_add(uniform_inclusive(rng, 0, t - half))
            }
            Jitter::Decorrelated => {
                let hi = self.previous_ns.saturating_mul(3).max(self.base_ns);
                uniform_inclusive(rng, self.base_ns, hi).min(self.max_ns)
            }
        };
        self.retry = self.retry.saturating_add(1);
        self.previous_ns = delay;
        delay
    }

    /// An endless iterator of delays drawing on `rng` (take `max_retries` of them).
    pub fn delays<'r>(self, rng: &'r mut dyn RandomSource) -> Delays<'r> {
        Delays { backoff: self, rng }
    }
}

/// [`Backoff`] as an `Iterator<Item = Duration>`, backon-style.
pub struct Delays<'r> {
    backoff: Backoff,
    rng: &'r mut dyn RandomSource,
}

impl Iterator for Delays<'_> {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_nanos(self.backoff.next_delay_ns(self.rng)))
    }
}

/// Uniform in `[lo, hi]` (`lo` when `hi <= lo`).
fn uniform_inclusive(rng: &mut dyn RandomSource, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        return lo;
    }
    let span = hi - lo;
    match span.checked_add(1) {
        Some(bound) => lo + rng.below(bound),
        None => rng.next_u64(), // the whole u64 range
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff::new(jitter, Duration::from_millis(100), Duration::from_secs(2))
    }

    fn first(jitter: Jitter, n: usize, seed: u64) -> Vec<u64> {
        let mut rng = SplitMix64::seeded(seed);
        let mut b = backoff(jitter);
        (0..n).map(|_| b.next_delay_ns(&mut rng) / MS).collect()
    }

    #[test]
    fn no_jitter_doubles_up_to_max_delay() {
        assert_eq!(
            first(Jitter::None, 7, 1),
            [100, 200, 400, 800, 1600, 2000, 2000]
        );
    }

    #[test]
    fn full_jitter_sequence_is_exact_for_a_seed() {
        assert_eq!(first(Jitter::Full, 6, 42), [74, 31, 111, 275, 60, 1736]);
    }

    #[test]
    fn equal_jitter_sequence_is_exact_for_a_seed() {
        assert_eq!(first(Jitter::Equal, 6, 42), [87, 115, 255, 537, 830, 1868]);
    }

    #[test]
    fn decorrelated_jitter_sequence_is_exact_for_a_seed() {
        assert_eq!(
            first(Jitter::Decorrelated, 6, 42),
            [248, 203, 241, 315, 132, 357]
        );
    }

    #[test]
    fn same_seed_gives_same_sequence_and_iterator_agrees() {
        let mut rng = SplitMix64::seeded(9);
        let it: Vec<u64> = backoff(Jitter::Full)
            .delays(&mut rng)
            .take(5)
            .map(|d| u64::try_from(d.as_millis()).unwrap())
            .collect();
        assert_eq!(it, first(Jitter::Full, 5, 9));
    }

    #[test]
    fn huge_retry_numbers_saturate_at_max_delay() {
        let b = Backoff::new(
            Jitter::None,
            Duration::from_secs(1),
            Duration::from_secs(30),
        );
        assert_eq!(b.ceiling_ns(64), 30_000 * MS);
        assert_eq!(b.ceiling_ns(u32::MAX), 30_000 * MS);
        let big = Backoff::new(Jitter::Full, Duration::MAX, Duration::MAX);
        assert_eq!(big.ceiling_ns(3), u64::MAX);
        let mut rng = SplitMix64::seeded(1);
        let mut big = big;
        let _ = big.next_delay_ns(&mut rng); // no overflow
    }

    proptest! {
        #[test]
        fn full_jitter_stays_within_zero_and_ceiling(seed: u64, n in 0usize..20) {
            let mut rng = SplitMix64::seeded(seed);
            let mut b = backoff(Jitter::Full);
            for i in 0..=n {
                let t = b.ceiling_ns(u32::try_from(i).unwrap());
                let d = b.next_delay_ns(&mut rng);
                prop_assert!(d <= t);
            }
        }

        #[test]
        fn equal_jitter_stays_within_half_and_ceiling(seed: u64, n in 0usize..20) {
            let mut rng = SplitMix64::seeded(seed);
            let mut b = backoff(Jitter::Equal);
            for i in 0..=n {
                let t = b.ceiling_ns(u32::try_from(i).unwrap());
                let d = b.next_delay_ns(&mut rng);
                prop_assert!(d >= t / 2 && d <= t);
            }
        }

        #[test]
        fn decorrelated_jitter_stays_within_base_and_three_times_previous(seed: u64, n in 0usize..20) {
            let mut rng = SplitMix64::seeded(seed);
            let mut b = backoff(Jitter::Decorrelated);
            let mut prev = 100 * MS;
            for _ in 0..=n {
                let d = b.next_delay_ns(&mut rng);
                prop_assert!(d >= 100 * MS);
                prop_assert!(d <= (3 * prev).min(2_000 * MS));
                prev = d;
            }
        }
    }
}
