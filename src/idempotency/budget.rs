//! `max_stored_bytes`: how many bytes of stored answers are alive, across all worker VMs.
//!
//! Each stored answer lives for `ttl`, and shared data has no delete and no expiry, so "bytes
//! currently stored" cannot be a plain counter: nobody would be around to subtract when an
//! answer expires. Instead the counter is split by *when* bytes were stored, into 17 buckets of
//! `ttl / 16` each (a ring). Bytes stored during bucket *k* have all expired once bucket
//! *k + 17* begins, so advancing the ring simply zeroes the buckets that fell out of it. The
//! live total is the sum of the ring. One small fixed value ([`ENCODED_LEN`] = 160 bytes),
//! updated with read-compute-CAS by the worker that stores an answer.
//!
//! **Precision.** The total never under-counts live answers, and over-counts in two bounded
//! ways, both on the safe side (an over-count only refuses to store, which degrades a later
//! replay into `409` "completed with status N", never into a second execution):
//! - an answer stays counted until its bucket leaves the ring: at most `ttl / 16` after it
//!   expired;
//! - an answer whose body entry is reused before it expires stays counted until then, unless
//!   the caller [`refund`]s it (it should when it overwrites or abandons a blob it reserved).
//!
//! If the wall clock steps back, new bytes go into the newest bucket (counted a little
//! longer); if `ttl` changes on a reload, all counted bytes move into the newest bucket of
//! the new ring (counted for a full new `ttl`). Garbage decodes as an empty ring.
//!
//! This bounds the *live* answers. Envoy frees nothing: a body entry keeps its last value until
//! it is overwritten, so the memory actually held is bounded by the body table's size.

use crate::config::IdempotencyConfig;
use crate::time::{duration_nanos, UnixNanos};

/// Buckets in the ring: 16 spans of `ttl / 16`, plus the one being filled.
pub const BUCKETS: usize = 17;
const VERSION: u8 = 1;
/// Encoded size: version, 7 reserved, width, head, 17 counters.
pub const ENCODED_LEN: usize = 8 + 8 + 8 + 8 * BUCKETS;

/// The width of one bucket for `cfg`: `ttl / 16` rounded up, at least 1 ns.
pub fn bucket_width(cfg: &IdempotencyConfig) -> u64 {
    duration_nanos(cfg.ttl).div_ceil(16).max(1)
}

/// The decoded ring.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Budget {
    width_ns: u64,
    /// Number (`now / width`) of the newest bucket.
    head: u64,
    bytes: [u64; BUCKETS],
}

/// The answer to "may I store `size` more bytes?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// Yes: write these budget bytes (CAS), then store the answer.
    Granted { new_state: Vec<u8> },
    /// No: `used` live bytes plus the answer would exceed `max_stored_bytes`.
    Full { used: u64 },
}

impl Budget {
    fn fresh(width_ns: u64) -> Self {
        Self {
            width_ns,
            head: 0,
            bytes: [0; BUCKETS],
        }
    }

    /// Decodes the ring for `cfg` and moves it to `now` (garbage: an empty ring; another
    /// bucket width: everything collapsed into the current bucket, see the module doc).
    fn load(cfg: &IdempotencyConfig, state: &[u8], now: UnixNanos) -> Self {
        let width = bucket_width(cfg);
        let mut b = match Self::try_decode(state) {
            Some(b) if b.width_ns == width => b,
            Some(old) => {
                let mut b = Self::fresh(width);
                b.head = now / width;
                b.bytes[index(b.head)] = old.total();
                b
            }
            None => Self::fresh(width),
        };
        b.advance(now);
        b
    }

    fn try_decode(state: &[u8]) -> Option<Self> {
        if state.len() != ENCODED_LEN || *state.first()? != VERSION {
            return None;
        }
        let word = |i: usize| -> Option<u64> {
            let at = 8 + 8 * i;
            Some(u64::from_le_bytes(state.get(at..at + 8)?.try_into().ok()?))
        };
        let mut bytes = [0; BUCKETS];
        for (i, slot) in bytes.iter_mut().enumerate() {
            *slot = word(2 + i)?;
        }
        Some(Self {
            width_ns: word(0)?.max(1),
            head: word(1)?,
            bytes,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(VERSION);
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(&self.width_ns.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        for b in &self.bytes {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    /// Moves the ring to `now`, dropping buckets whose bytes have all expired.
    fn advance(&mut self, now: UnixNanos) {
        let current = now / self.width_ns;
        if current <= self.head {
            return;
        }
        let steps = (current - self.head).min(BUCKETS as u64);
        for k in 1..=steps {
            self.bytes[index(self.head.wrapping_add(k))] = 0;
        }
        self.head = current;
    }

    fn total(&self) -> u64 {
        self.bytes.iter().fold(0, |a, x| a.saturating_add(*x))
    }
}

fn index(bucket: u64) -> usize {
    (bucket % BUCKETS as u64) as usize
}

/// Live bytes at `now` (for a gauge).
pub fn used(cfg: &IdempotencyConfig, state: &[u8], now: UnixNanos) -> u64 {
    Budget::load(cfg, state, now).total()
}

/// Reserves `size` bytes for an answer stored at `now`, if `max_stored_bytes` allows.
pub fn reserve(cfg: &IdempotencyConfig, state: &[u8], size: u64, now: UnixNanos) -> Reserve {
    let mut b = Budget::load(cfg, state, now);
    let used = b.total();
    if used.saturating_add(size) > cfg.max_stored_bytes {
        return Reserve::Full { used };
    }
    let head = index(b.head);
    b.bytes[head] = b.bytes[head].saturating_add(size);
    Reserve::Granted {
        new_state: b.encode(),
    }
}

/// Gives back `size` bytes reserved at `stored_at` (a blob abandoned or overwritten before
/// it expired). Bytes whose bucket has already left the ring are not counted any more.
pub fn refund(
    cfg: &IdempotencyConfig,
    state: &[u8],
    size: u64,
    stored_at: UnixNanos,
    now: UnixNanos,
) -> Vec<u8> {
    let mut b = Budget::load(cfg, state, now);
    let bucket = (stored_at / b.width_ns).min(b.head);
    if b.head - bucket < BUCKETS as u64 {
        let i = index(bucket);
        b.bytes[i] = b.bytes[i].saturating_sub(size);
    }
    b.encode()
}
