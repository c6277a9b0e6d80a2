//! The generic cell rate algorithm (GCRA) in exact integer arithmetic: the engine under both
//! the token bucket and the leaky bucket.
//!
//! A token bucket of rate `limit / window` and capacity `burst`, and a leaky bucket that
//! drains one request per emission interval `T = window / limit` with tolerance
//! `τ = (burst − 1) · T`, admit exactly the same requests. GCRA tracks both with a single
//! instant, the *theoretical arrival time* (TAT): the moment the bucket is full of tokens
//! again (token view) or empty of water (leaky view). A request at `now` conforms iff
//! `now ≥ TAT − τ`; admitting it sets `TAT = max(TAT, now) + T`. There is no refill step, so
//! no refill can round anything away (compare `governor`'s `gcra.rs`, which keeps `T` in
//! whole nanoseconds).
//!
//! `T` is rarely a whole number of nanoseconds (3 per second: 333 333 333.3̅ ns), so every
//! instant here is kept *scaled by `limit`*: one unit is `1 / limit` ns. Then `T` is exactly
//! `window` units, `τ` is `(burst − 1) · window` units, `now` is `now · limit` units, and all
//! of it fits a `u128`. The state stores the TAT as whole nanoseconds plus the remainder in
//! units (`< limit`), so over any stretch of time the bucket refills at exactly
//! `limit / window` — not one fractional token is lost.
//!
//! State: tag, TAT whole ns (u64), TAT remainder in `1 / limit` ns (u64) — 17 bytes. A
//! remainder ≥ `limit` (the limit was lowered by a reload) rounds the TAT up to the next ns.
//!
//! The two buckets differ only in the tag their state is stored under and in whether they may
//! hold a request ([`Bucket`]); `token_bucket.rs` and `leaky_bucket.rs` name one each.

use super::codec::{
    decode_u64s, encode_u64s, u64s_state_bytes, TAG_LEAKY_BUCKET, TAG_TOKEN_BUCKET,
};
use super::wide;
use super::{Decision, Evaluation, Params};
use crate::time::UnixNanos;

/// Encoded state size in bytes (both buckets).
pub const STATE_BYTES: usize = u64s_state_bytes(2);

/// Which bucket a GCRA limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Polices only: `max_delay` is ignored (shaping is the leaky bucket's job).
    Token,
    /// Polices, or shapes when `max_delay` > 0.
    Leaky,
}

impl Bucket {
    /// The tag its state is stored under, so a reload that swaps one bucket for the other
    /// starts afresh instead of misreading the other's state.
    fn tag(self) -> u8 {
        match self {
            Self::Token => TAG_TOKEN_BUCKET,
            Self::Leaky => TAG_LEAKY_BUCKET,
        }
    }

    /// Whether it holds (rather than rejects) a request that can conform within `max_delay`.
    fn shapes(self, params: &Params) -> bool {
        self == Self::Leaky && params.max_delay_ns > 0
    }
}

/// The GCRA constants of one limit, in units of `1 / limit` ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Units per nanosecond (= `limit`, ≥ 1).
    scale: u128,
    /// Emission interval `T` (= `window`, ≥ 1).
    t: u128,
    /// Tolerance `τ = (burst − 1) · T`.
    tau: u128,
    /// Longest hold when shaping (0 = police).
    max_delay: u128,
    /// The largest number of requests admitted at one instant.
    burst: u64,
    /// `scale` and `t` as the `u64`s they are, to divide by ([`wide`]).
    limit: u64,
    window: u64,
    tag: u8,
}

impl Gcra {
    /// `None` when `limit` is 0: such a limit admits nothing.
    pub fn new(params: &Params, bucket: Bucket) -> Option<Self> {
        if params.limit == 0 {
            return None;
        }
        let scale = u128::from(params.limit);
        let t = u128::from(params.window_ns.max(1));
        let burst = params.burst.max(1);
        let max_delay = if bucket.shapes(params) {
            u128::from(params.max_delay_ns) * scale
        } else {
            0
        };
        Some(Self {
            scale,
            t,
            tau: u128::from(burst - 1) * t,
            max_delay,
            burst,
            limit: params.limit,
            window: params.window_ns.max(1),
            tag: bucket.tag(),
        })
    }

    /// The stored TAT in units; empty or undecodable state is "long ago" (full bucket).
    pub fn decode(&self, state: &[u8]) -> u128 {
        match decode_u64s(state, self.tag) {
            Some([whole, frac]) if u128::from(frac) < self.scale => {
                u128::from(whole) * self.scale + u128::from(frac)
            }
            Some([whole, _]) => (u128::from(whole) + 1) * self.scale,
            None => 0,
        }
    }

    pub fn encode(&self, tat: u128) -> Vec<u8> {
        self.encode_split(wide::div_rem(tat, self.limit))
    }

    /// [`Self::encode`] of a TAT already split into whole nanoseconds and the remainder.
    fn encode_split(&self, (whole, frac): (u128, u64)) -> Vec<u8> {
        match u64::try_from(whole) {
            Ok(w) => encode_u64s(self.tag, &[w, frac]),
            Err(_) => encode_u64s(self.tag, &[u64::MAX, 0]),
        }
    }

    /// Units → nanoseconds, rounded up (so a deadline is never reported early).
    fn ceil_ns(&self, units: u128) -> u64 {
        if units == 0 {
            return 0;
        }
        u64::try_from(wide::div_ceil(units, self.limit)).unwrap_or(u64::MAX)
    }

    /// How many requests would be admitted at `now` (units) given `tat` without being held:
    /// `⌊(now + τ + T − TAT) / T⌋`, at most `burst`.
    ///
    /// This is what Remaining reports, shaping or not. Requests a shaper would hold are left
    /// out on purpose: a client reads Remaining as "this many more go through now", and the
    /// IETF fields require `r ≤ q` (Limit is `burst`). It also keeps the engine's headline
    /// ("the limit with the lowest Remaining") pointing at a shaper that is already holding
    /// requests (Remaining 0) rather than at one with room.
    fn room(&self, tat: u128, now: u128) -> u64 {
        let tat = tat.max(now);
        let n = now.saturating_add(self.tau).saturating_add(self.t);
        u64::try_from(
            wide::div_rem(n.saturating_sub(tat), self.window)
                .0
                .min(u128::from(self.burst)),
        )
        .unwrap_or(u64::MAX)
    }

    /// One request at `now`: admit, hold (shaping only) or reject.
    pub fn evaluate(&self, state: &[u8], now: UnixNanos) -> Evaluation {
        let tat = self.decode(state);
        let now_u = u128::from(now) * self.scale;
        // Units until the request conforms.
        let wait = tat.saturating_sub(self.tau).saturating_sub(now_u);
        let wait_ns = self.ceil_ns(wait);
        let (decision, new_tat) = if wait == 0 {
            (Decision::Admit, Some(tat.max(now_u).saturating_add(self.t)))
        } else if self.max_delay > 0 && u128::from(wait_ns) * self.scale <= self.max_delay {
            // Held until the request conforms; counted as if it arrived then, so held
            // requests leave exactly T apart.
            let until = now.saturating_add(wait_ns);
            (Decision::Delay { until }, Some(tat.saturating_add(self.t)))
        } else {
            (Decision::Reject, None)
        };
        let after = new_tat.unwrap_or(tat);
        // One division serves the state written and its at-rest instant (`ceil_ns(after)`).
        let split = wide::div_rem(after, self.limit);
        let after_ns = u64::try_from(split.0 + u128::from(split.1 > 0)).unwrap_or(u64::MAX);
        let at_rest_at = after_ns.max(now);
        let remaining = self.room(after, now_u);
        let reset_at = self
            .next_room_at(after, remaining, now, now_u, after_ns)
            .max(now);
        let retry_after_ns = match decision {
            Decision::Reject => reset_at.saturating_sub(now).max(1),
            _ => 0,
        };
        Evaluation {
            decision,
            new_state: new_tat.map(|_| self.encode_split(split)),
            at_rest_at,
            limit: self.burst,
            remaining,
            reset_at,
            retry_after_ns,
        }
    }

    /// The instant (ns, rounded up) at which `remaining + 1` requests would go through at once
    /// with nothing held — the next token — or `now` when the bucket is already full.
    ///
    /// Remaining is `⌊(now + τ + T − TAT) / T⌋`, so it reaches `r + 1` at `TAT − τ + r·T`.
    /// For a rejected request (`r = 0`) that is the instant it conforms: the retry instant.
    /// `tat_ns` is `tat` in nanoseconds, rounded up.
    fn next_room_at(
        &self,
        tat: u128,
        remaining: u64,
        now_ns: UnixNanos,
        now: u128,
        tat_ns: u64,
    ) -> u64 {
        if remaining >= self.burst || tat <= now {
            // `now` is `now_ns` whole nanoseconds in units: rounding it up gives `now_ns`.
            return now_ns;
        }
        if remaining + 1 == self.burst && tat >= self.tau {
            // One short of full: `TAT − τ + (burst − 1)·T` is `TAT` itself, already rounded.
            return tat_ns;
        }
        let next = tat
            .saturating_sub(self.tau)
            .saturating_add(u128::from(remaining).saturating_mul(self.t));
        self.ceil_ns(next)
    }

    /// Gives back the emission interval the admitted request took, if no other request
    /// has changed the state since (only then is `TAT − T` exactly "as if it never came").
    pub fn refund(&self, state: &[u8], admitted: &Evaluation) -> Option<Vec<u8>> {
        let written = admitted.new_state.as_deref()?;
        let tat = self.decode(state);
        if tat != self.decode(written) || tat == 0 {
            return None;
        }
        Some(self.encode(tat.saturating_sub(self.t)))
    }
}

/// One request at `now` against `bucket`: see [`Gcra::evaluate`]; a limit of 0 rejects.
pub fn evaluate(bucket: Bucket, params: &Params, state: &[u8], now: UnixNanos) -> Evaluation {
    match Gcra::new(params, bucket) {
        Some(g) => g.evaluate(state, now),
        None => Evaluation {
            decision: Decision::Reject,
            new_state: None,
            at_rest_at: now,
            limit: 0,
            remaining: 0,
            reset_at: now.saturating_add(params.window_ns),
            retry_after_ns: params.window_ns.max(1),
        },
    }
}

/// See [`Gcra::refund`].
pub fn refund(
    bucket: Bucket,
    params: &Params,
    state: &[u8],
    admitted: &Evaluation,
) -> Option<Vec<u8>> {
    Gcra::new(params, bucket)?.refund(state, admitted)
}
