//! The breaker's shared state and its byte encoding.
//!
//! One breaker per upstream is shared by every worker VM through one shared-data value, which
//! Envoy copies under a lock on every access — so the encoding is small and fixed-layout
//! (little-endian, [`HEADER_LEN`] + 12 bytes per held probe lease; 140 bytes with one probe):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version = 1 |
//! | 1 | 1 | phase: 0 closed, 1 open, 2 half-open |
//! | 2 | 1 | number of held probe leases *n* (≤ [`MAX_LEASES`]) |
//! | 3 | 1 | reserved (0) |
//! | 4 | 4 | epoch: +1 on every transition |
//! | 8 | 8 | since: Unix ns of the last transition (open: when it opened) |
//! | 16 | 4 | consecutive failures (closed) |
//! | 20 | 4 | consecutive probe successes (half-open) |
//! | 24 | 4 | next lease id |
//! | 28 | 4 | reserved (0) |
//! | 32 | 96 | failure-rate window: [`crate::window`] (calls, failures) |
//! | 128 | 12·n | leases: id u32, until u64 |
//!
//! **Garbage is a fresh CLOSED breaker.** Empty bytes (a key created empty), another version, a
//! wrong length or an unknown phase decode to [`State::fresh`]; a window whose bucket width no
//! longer matches the config (a reload changed `failure_rate.window`) is emptied. Forgetting
//! that an upstream was failing costs at most `failure_threshold` more failures; refusing to
//! decode would cost every request.

use crate::config::BreakerConfig;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};

use crate::window::{read_u32, read_u64, Window, ENCODED_LEN as WINDOW_LEN};

const VERSION: u8 = 1;
/// Bytes before the lease list.
pub const HEADER_LEN: usize = 32 + WINDOW_LEN;
/// Bytes per held lease.
pub const LEASE_LEN: usize = 12;
/// At most this many probes in flight, whatever `half_open_max_in_flight` says: a half-open
/// breaker that lets hundreds of requests through is not testing the water any more.
pub const MAX_LEASES: usize = 255;

/// The three states of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    /// The value of the breaker-state gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Closed),
            1 => Some(Self::Open),
            2 => Some(Self::HalfOpen),
            _ => None,
        }
    }
}

/// A probe slot held in HALF_OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    pub id: u32,
    pub until: UnixNanos,
}

/// The decoded breaker state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub phase: Phase,
    pub epoch: u32,
    pub since: UnixNanos,
    pub consecutive_failures: u32,
    pub half_open_successes: u32,
    pub next_lease_id: u32,
    pub window: Window,
    pub leases: Vec<HeldLease>,
}

/// Width of one failure-rate bucket for `cfg` (1 s when there is no failure-rate rule).
pub fn bucket_width(cfg: &BreakerConfig) -> u64 {
    match &cfg.failure_rate {
        Some(rate) => (duration_nanos(rate.window) / crate::window::BUCKETS as u64).max(1),
        None => NANOS_PER_SEC,
    }
}

impl State {
    /// A CLOSED breaker with no history, epoch 0.
    pub fn fresh(cfg: &BreakerConfig) -> Self {
        Self {
            phase: Phase::Closed,
            epoch: 0,
            since: 0,
            consecutive_failures: 0,
            half_open_successes: 0,
            next_lease_id: 0,
            window: Window::new(bucket_width(cfg)),
            leases: Vec::new(),
        }
    }

    /// Decodes `bytes`, or a fresh CLOSED state if they are not a valid encoding.
    pub fn decode(cfg: &BreakerConfig, bytes: &[u8]) -> Self {
        Self::try_decode(cfg, bytes).unwrap_or_else(|| Self::fresh(cfg))
    }

    fn try_decode(cfg: &BreakerConfig, bytes: &[u8]) -> Option<Self> {
        if *bytes.first()? != VERSION {
            return None;
        }
        let phase = Phase::from_byte(*bytes.get(1)?)?;
        let n = usize::from(*bytes.get(2)?);
        if bytes.len() != HEADER_LEN + n * LEASE_LEN {
            return None;
        }
        let width = bucket_width(cfg);
        let window = Window::decode(bytes.get(32..HEADER_LEN)?)
            .filter(|w| w.width_ns() == width)
            .unwrap_or_else(|| Window::new(width));
        let mut leases = Vec::with_capacity(n);
        for i in 0..n {
            let at = HEADER_LEN + i * LEASE_LEN;
            leases.push(HeldLease {
                id: read_u32(bytes, at)?,
                until: read_u64(bytes, at + 4)?,
            });
        }
        Some(Self {
            phase,
            epoch: read_u32(bytes, 4)?,
            since: read_u64(bytes, 8)?,
            consecutive_failures: read_u32(bytes, 16)?,
            half_open_successes: read_u32(bytes, 20)?,
            next_lease_id: read_u32(bytes, 24)?,
            window,
            leases,
        })
    }

    /// Whether the encoded state `bytes` is *unsettled*: not CLOSED, or CLOSED with a failure
    /// streak. Garbage reads as the fresh CLOSED state it decodes to (settled). Needs no
    /// config: phase and streak do not depend on it.
    pub fn unsettled(bytes: &[u8]) -> bool {
        let valid = bytes.first() == Some(&VERSION)
            && bytes
                .get(2)
                .is_some_and(|n| bytes.len() == HEADER_LEN + usize::from(*n) * LEASE_LEN);
        if !valid {
            return false;
        }
        match bytes.get(1).copied().and_then(Phase::from_byte) {
            Some(Phase::Closed) => read_u32(bytes, 16).is_some_and(|streak| streak > 0),
            Some(_) => true,
            None => false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let n = self.leases.len().min(MAX_LEASES);
        let mut out = Vec::with_capacity(HEADER_LEN + n * LEASE_LEN);
        out.push(VERSION);
        out.push(self.phase.gauge());
        out.push(u8::try_from(n).unwrap_or(u8::MAX));
        out.push(0);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.since.to_le_bytes());
        out.extend_from_slice(&self.consecutive_failures.to_le_bytes());
        out.extend_from_slice(&self.half_open_successes.to_le_bytes());
        out.extend_from_slice(&self.next_lease_id.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        self.window.encode_into(&mut out);
        for lease in self.leases.iter().take(n) {
            out.extend_from_slice(&lease.id.to_le_bytes());
            out.extend_from_slice(&lease.until.to_le_bytes());
        }
        out
    }

    /// Enters `phase` at `now`: a new epoch, counters and leases cleared, window emptied.
    pub fn enter(&mut self, phase: Phase, now: UnixNanos) {
        self.phase = phase;
        self.epoch = self.epoch.wrapping_add(1);
        self.since = now;
        self.consecutive_failures = 0;
        self.half_open_successes = 0;
        self.leases.clear();
        self.window = Window::new(self.window.width_ns());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            failure_rate: None,
            slow_call: None,
            reset_timeout: Duration::from_secs(30),
            half_open_successes: 3,
            half_open_max_in_flight: 2,
            failure_on: vec![],
        }
    }

    #[test]
    fn roundtrips_with_leases() {
        let mut s = State::fresh(&cfg());
        s.enter(Phase::HalfOpen, 77);
        s.leases.push(HeldLease { id: 3, until: 99 });
        s.leases.push(HeldLease { id: 4, until: 100 });
        s.half_open_successes = 1;
        let bytes = s.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 2 * LEASE_LEN);
        assert_eq!(State::decode(&cfg(), &bytes), s);
    }

    #[test]
    fn fresh_closed_encoding_is_128_bytes() {
        assert_eq!(State::fresh(&cfg()).encode().len(), 128);
    }

    #[test]
    fn garbage_decodes_to_fresh_closed() {
        let c = cfg();
        let good = State::fresh(&c).encode();
        let mut bad_phase = good.clone();
        bad_phase[1] = 7;
        let mut bad_count = good.clone();
        bad_count[2] = 1;
        for bad in [
            vec![],
            vec![0xff; 128],
            bad_phase,
            bad_count,
            good[..100].to_vec(),
        ] {
            assert_eq!(State::decode(&c, &bad), State::fresh(&c));
        }
    }
}
