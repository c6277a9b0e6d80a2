//! A time-bucketed sliding window of two counters, small enough to live in shared data.
//!
//! Both the breaker's failure rate (calls, failures) and the retry budget (deposits,
//! withdrawals) need "how many in the last W seconds" across worker VMs. Keeping a timestamp per
//! event does not fit in one shared-data value, so, as resilience4j's time-based window and
//! finagle/tower's budgets do, the window is cut into [`BUCKETS`] buckets of `width_ns` each; the
//! window is the current bucket plus the nine before it. Old buckets are zeroed lazily when time
//! reaches them, so the encoding has a fixed size: [`ENCODED_LEN`] bytes.
//!
//! A clock that steps backwards writes into the newest bucket rather than rewinding.

use crate::time::UnixNanos;

/// Buckets per window.
pub const BUCKETS: usize = 10;
/// Encoded size: width (8) + head bucket number (8) + 10 × two u32 counters.
pub const ENCODED_LEN: usize = 16 + BUCKETS * 8;

/// Two counters per time bucket over the last [`BUCKETS`] buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    width_ns: u64,
    /// Bucket number (`now / width_ns`) of the newest bucket.
    head: u64,
    /// Ring indexed by bucket number modulo [`BUCKETS`].
    counts: [[u32; 2]; BUCKETS],
}

impl Window {
    /// An empty window of buckets `width_ns` wide (at least 1 ns).
    pub fn new(width_ns: u64) -> Self {
        Self {
            width_ns: width_ns.max(1),
            head: 0,
            counts: [[0; 2]; BUCKETS],
        }
    }

    pub fn width_ns(&self) -> u64 {
        self.width_ns
    }

    /// Moves the window to `now`, zeroing buckets that fell out of it.
    pub fn advance(&mut self, now: UnixNanos) {
        let bucket = now / self.width_ns;
        if bucket <= self.head {
            return;
        }
        let gap = bucket - self.head;
        if gap >= BUCKETS as u64 {
            self.counts = [[0; 2]; BUCKETS];
        } else {
            for b in self.head + 1..=bucket {
                self.counts[slot(b)] = [0; 2];
            }
        }
        self.head = bucket;
    }

    /// Adds to the counters of the bucket holding `now` (after [`Self::advance`]).
    pub fn add(&mut self, now: UnixNanos, first: u32, second: u32) {
        self.advance(now);
        let c = &mut self.counts[slot(self.head)];
        c[0] = c[0].saturating_add(first);
        c[1] = c[1].saturating_add(second);
    }

    /// Sums of both counters over the window as of the last advance.
    pub fn totals(&self) -> (u64, u64) {
        self.counts.iter().fold((0, 0), |(a, b), c| {
            (a + u64::from(c[0]), b + u64::from(c[1]))
        })
    }

    /// Sums of both counters over the window ending at `now`, without changing `self`.
    pub fn totals_at(&self, now: UnixNanos) -> (u64, u64) {
        let mut w = self.clone();
        w.advance(now);
        w.totals()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.width_ns.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        for c in &self.counts {
            out.extend_from_slice(&c[0].to_le_bytes());
            out.extend_from_slice(&c[1].to_le_bytes());
        }
    }

    /// Reads [`ENCODED_LEN`] bytes; `None` if too short or the width is zero.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let width_ns = read_u64(bytes, 0)?;
        if width_ns == 0 {
            return None;
        }
        let head = read_u64(bytes, 8)?;
        let mut counts = [[0u32; 2]; BUCKETS];
        for (i, c) in counts.iter_mut().enumerate() {
            c[0] = read_u32(bytes, 16 + i * 8)?;
            c[1] = read_u32(bytes, 20 + i * 8)?;
        }
        Some(Self {
            width_ns,
            head,
            counts,
        })
    }
}

fn slot(bucket: u64) -> usize {
    (bucket % BUCKETS as u64) as usize
}

/// Little-endian `u64` at `at`, or `None` past the end.
pub fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Little-endian `u32` at `at`, or `None` past the end.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_for_ten_buckets_then_expire() {
        let mut w = Window::new(100);
        w.add(1_000, 1, 0);
        w.add(1_050, 1, 1);
        assert_eq!(w.totals_at(1_999), (2, 1));
        assert_eq!(w.totals_at(2_000), (0, 0));
    }

    #[test]
    fn partial_expiry_keeps_recent_buckets() {
        let mut w = Window::new(100);
        w.add(1_000, 1, 0);
        w.add(1_500, 2, 0);
        assert_eq!(w.totals_at(2_050), (2, 0));
    }

    #[test]
    fn clock_stepping_back_writes_into_the_newest_bucket() {
        let mut w = Window::new(100);
        w.add(1_000, 1, 0);
        w.add(500, 1, 0);
        assert_eq!(w.totals(), (2, 0));
    }

    #[test]
    fn roundtrips_and_rejects_short_input() {
        let mut w = Window::new(7);
        w.add(123, 4, 5);
        let mut out = Vec::new();
        w.encode_into(&mut out);
        assert_eq!(out.len(), ENCODED_LEN);
        assert_eq!(Window::decode(&out), Some(w));
        assert_eq!(Window::decode(&out[..ENCODED_LEN - 1]), None);
        assert_eq!(Window::decode(&[0; ENCODED_LEN]), None);
    }
}
