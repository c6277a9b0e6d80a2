//! One Envoy's reservation of a mesh-wide limit for one key: the units the rate limit service
//! granted and this Envoy has not spent yet, the window they belong to, the batch size of the
//! next ask, and whether an ask is already on its way.
//!
//! Everything here is a pure function of the stored state and `now`; [`super::reserve`] runs
//! it under read-compute-CAS in a bounded slot table, so every worker of the Envoy shares one
//! pool per key and a flood of distinct keys cannot grow shared data.
//!
//! # Why the mesh never admits more than the limit
//! A unit enters a pool only from an `OK` answer to an ask of `hits_addend = h` units, which the
//! service counted; the service answers `OK` only while its count for the window stays within
//! the limit. Each admitted request spends exactly one unit (one CAS), and units expire with the
//! window they were granted in (see [`window_end`]: never later than the service's own end). So admissions
//! in a window never exceed the units the service granted in it, which never exceed the limit.
//!
//! # Batch size and under-admission
//! The first ask of a window is for `q_max = clamp(limit / 16, 1, 1000)` units. After every
//! answer, `q = clamp(limit_remaining / 4, 1, q_max)`: one Envoy never reserves more than a
//! quarter of what the mesh has left, so q shrinks to 1 as the quota runs out. A refill is sent
//! ahead of need once the pool is down to a quarter of q, and asks only for what tops the pool
//! up to q, so a pool never holds more than `q_max` units. Units left in a pool when its window
//! ends were counted by the service but admitted nobody: that under-admission is at most
//! `q_max` per Envoy per key per window (and usually far less, since q shrinks as the
//! remaining quota does). An ask of q > 1 that the service refuses is re-sent as an ask of 1
//! for the waiting request (a service such as Limitador may still grant it); a refused ask of 1
//! closes the pool until the window resets, so the rest of the window costs no calls.

use crate::time::UnixNanos;

/// Encoded size of a [`Pool`].
pub const POOL_BYTES: usize = 40;

/// The stored reservation of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pool {
    /// Units may be spent strictly before this instant (the granting window's end).
    pub window_end: UnixNanos,
    /// Granted, not yet spent.
    pub units: u32,
    /// Size of the next ask.
    pub q: u32,
    /// An ask is on its way until this instant (its timeout); 0 when none.
    pub asking_until: UnixNanos,
    /// The service refused an ask of one unit: refuse locally until this instant.
    pub refused_until: UnixNanos,
    /// The limit as the service last stated it.
    pub service_limit: u32,
    /// What the service said was left in the window at its last answer.
    pub service_remaining: u32,
}

impl Pool {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(POOL_BYTES);
        out.extend_from_slice(&self.window_end.to_le_bytes());
        out.extend_from_slice(&self.units.to_le_bytes());
        out.extend_from_slice(&self.q.to_le_bytes());
        out.extend_from_slice(&self.asking_until.to_le_bytes());
        out.extend_from_slice(&self.refused_until.to_le_bytes());
        out.extend_from_slice(&self.service_limit.to_le_bytes());
        out.extend_from_slice(&self.service_remaining.to_le_bytes());
        out
    }

    /// The pool stored in `bytes`; anything that is not a pool reads as an empty one.
    pub fn decode(bytes: &[u8]) -> Pool {
        let u64_at = |at: usize| -> u64 {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let u32_at = |at: usize| -> u32 {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        if bytes.len() != POOL_BYTES {
            return Pool::default();
        }
        Pool {
            window_end: u64_at(0),
            units: u32_at(8),
            q: u32_at(12),
            asking_until: u64_at(16),
            refused_until: u64_at(24),
            service_limit: u32_at(32),
            service_remaining: u32_at(36),
        }
    }

    /// When the entry stops mattering: nothing to spend, no ask out, nothing refused.
    pub fn at_rest_at(&self) -> UnixNanos {
        self.window_end
            .max(self.asking_until)
            .max(self.refused_until)
    }
}

/// The fixed numbers of one limit's reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Requests per window, as configured.
    pub limit: u32,
    /// The window (the service's unit), for windows the service did not state.
    pub window_ns: u64,
    /// How long an ask may be out before another request may send one.
    pub ask_timeout_ns: u64,
}

impl Tuning {
    /// Largest batch: `clamp(limit / 16, 1, 1000)`; also the bound on one Envoy's unused
    /// units per key per window.
    pub fn q_max(&self) -> u32 {
        (self.limit / 16).clamp(1, 1000)
    }

    /// Batch size for the next ask, given what the service says is left.
    pub fn q_after(&self, remaining: u32) -> u32 {
        (remaining / 4).clamp(1, self.q_max())
    }

    /// Refill ahead of need at or below this many units.
    pub fn low_water(&self, q: u32) -> u32 {
        q / 4
    }
}

/// What a request that passed the local tier does with the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Spent one unit. `refill`: this request sends an ask of that many units in the
    /// background (it holds the pool's ask lease) and does not wait for it.
    Spent { refill: Option<u32> },
    /// Nothing to spend: ask the service for `hits` units and wait. `lease`: this ask holds
    /// the pool's ask lease (an ask of 1 beside another request's ask does not).
    Ask { hits: u32, lease: bool },
    /// The service refused this window: refuse until `until`, no call.
    Closed { until: UnixNanos },
}

/// The pool as live at `now` (an expired window's units and lease are gone).
pub fn live(pool: Option<Pool>, tuning: &Tuning, now: UnixNanos) -> Pool {
    let mut p = pool.unwrap_or_default();
    if p.window_end <= now {
        p.units = 0;
        if p.q == 0 || p.refused_until <= now {
            p.q = tuning.q_max();
        }
    }
    if p.asking_until <= now {
        p.asking_until = 0;
    }
    if p.q == 0 {
        p.q = tuning.q_max();
    }
    p
}

/// One request's spend at `now`, and the pool to write back.
pub fn spend(pool: Option<Pool>, tuning: &Tuning, now: UnixNanos) -> (Spend, Pool) {
    let mut p = live(pool, tuning, now);
    if p.refused_until > now {
        return (
            Spend::Closed {
                until: p.refused_until,
            },
            p,
        );
    }
    let lease_free = p.asking_until == 0;
    if p.units > 0 {
        p.units -= 1;
        let refill = if p.units <= tuning.low_water(p.q) && lease_free {
            p.asking_until = now.saturating_add(tuning.ask_timeout_ns);
            Some(p.q.saturating_sub(p.units).max(1))
        } else {
            None
        };
        return (Spend::Spent { refill }, p);
    }
    if lease_free {
        p.asking_until = now.saturating_add(tuning.ask_timeout_ns);
        (
            Spend::Ask {
                hits: p.q,
                lease: true,
            },
            p,
        )
    } else {
        (
            Spend::Ask {
                hits: 1,
                lease: false,
            },
            p,
        )
    }
}

/// The service's answer to an ask of `hits` units sent at `asked_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// The window's end as this ask's answer implies it (see [`window_end`]).
    pub window_end: UnixNanos,
}

/// The granting window's end: the end of the unit-aligned window around `asked_at` (where
/// envoyproxy/ratelimit's windows end), or `asked_at + reset` when that is earlier (a service
/// whose windows start at their first hit, such as Limitador). Both are at or before the
/// service's own end, so a unit is never spent in the next window.
pub fn window_end(asked_at: UnixNanos, reset_ms: u64, window_ns: u64) -> UnixNanos {
    let w = window_ns.max(1);
    let aligned = (asked_at / w).saturating_add(1).saturating_mul(w);
    if reset_ms > 0 {
        return aligned.min(asked_at.saturating_add(reset_ms.saturating_mul(1_000_000)));
    }
    aligned
}

/// What became of an ask the request waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Granted: the request spends one of the units; the rest went to the pool.
    Admit,
    /// Refused at more than one unit: ask again for one.
    AskOne,
    /// Refused at one unit: the pool is closed until `until`.
    Refuse { until: UnixNanos },
}

/// Folds an answer to an ask of `hits` into the pool. `waiting`: a request waits for it and
/// takes one granted unit; `lease`: the ask held the pool's lease.
pub fn settle(
    pool: Option<Pool>,
    tuning: &Tuning,
    now: UnixNanos,
    hits: u32,
    lease: bool,
    waiting: bool,
    answer: &Granted,
) -> (Settle, Pool) {
    let mut p = live(pool, tuning, now);
    if lease {
        p.asking_until = 0;
    }
    p.service_limit = answer.limit;
    p.service_remaining = answer.remaining;
    p.q = tuning.q_after(answer.remaining);
    if !answer.allowed {
        if hits > 1 {
            p.q = 1;
            return (
                if waiting {
                    Settle::AskOne
                } else {
                    Settle::Refuse { until: now }
                },
                p,
            );
        }
        p.refused_until = answer.window_end.max(now);
        return (
            Settle::Refuse {
                until: p.refused_until,
            },
            p,
        );
    }
    if answer.window_end <= now {
        // Granted for a window already over: nothing to keep.
        return (Settle::Admit, p);
    }
    let half = tuning.window_ns / 2;
    if p.window_end > now && answer.window_end <= p.window_end.saturating_add(half) {
        // The same window: keep the earlier (safer) end.
        p.window_end = p.window_end.min(answer.window_end);
    } else {
        // A new window: the old units (if any) expire with theirs.
        p.units = 0;
        p.window_end = answer.window_end;
        p.refused_until = 0;
    }
    let kept = if waiting {
        hits.saturating_sub(1)
    } else {
        hits
    };
    p.units = p.units.saturating_add(kept);
    (Settle::Admit, p)
}

/// Releases the ask lease after an ask failed (the backend error policy decides the request).
pub fn release(pool: Option<Pool>, tuning: &Tuning, now: UnixNanos) -> Pool {
    let mut p = live(pool, tuning, now);
    p.asking_until = 0;
    p
}
