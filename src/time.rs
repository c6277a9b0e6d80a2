//! Time as a value. Envoy's clock is wall time (Unix nanoseconds) and may step backwards,
//! so every subtraction in levee saturates. Pure code never reads a clock: it takes `now`.

use std::cell::Cell;

/// Unix time in nanoseconds. Plain `u64` so that state encodings stay small and obvious.
pub type UnixNanos = u64;

pub const NANOS_PER_MILLI: u64 = 1_000_000;
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Where "now" comes from: Envoy's `get_current_time` in production, [`FakeClock`] in tests.
pub trait Clock {
    fn now(&self) -> UnixNanos;
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Cell<UnixNanos>,
}

impl FakeClock {
    pub fn at(now: UnixNanos) -> Self {
        Self {
            now: Cell::new(now),
        }
    }
    pub fn advance(&self, by: std::time::Duration) {
        self.now
            .set(self.now.get().saturating_add(duration_nanos(by)));
    }
    pub fn set(&self, now: UnixNanos) {
        self.now.set(now);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> UnixNanos {
        self.now.get()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub fn duration_nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up, never below 1: the `Retry-After` rule.
pub fn retry_after_seconds(wait_ns: u64) -> u64 {
    wait_ns.div_ceil(NANOS_PER_SEC).max(1)
}
