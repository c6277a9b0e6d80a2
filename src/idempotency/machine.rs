//! The record's transitions, as pure functions of (state bytes, request, `now`).
//!
//! The caller runs each inside its read-compute-CAS loop on the key's slot-table entry, so each
//! may run again on fresh bytes after a conflict; they read no clock and write nothing.
//!
//! ```text
//!            begin (fresh / at rest / lock expired)            finish Stored
//!   (none) ─────────────────────────────────────▶ InFlight ─────────────────▶ Completed ─┐
//!     ▲  ▲                                          │ │ ▲ renew (owner only)             │
//!     │  └──────────── finish Released ─────────────┘ │ └─┘          finish TooLarge      │
//!     │                                               └──────────────────────▶ TooLarge ─┤
//!     └─────────────────────────── at rest (expires_at / locked_until) ──────────────────┘
//! ```
//!
//! `finish Unknown` writes nothing: the owner stops renewing, so the record stays locked
//! until `locked_until` and is then retaken by the next `begin`. Every finish and renew checks
//! the owner, so a request whose lock was retaken can never overwrite its successor's record.

use crate::config::IdempotencyConfig;
use crate::time::{duration_nanos, UnixNanos};

use super::fingerprint::Fingerprint;
use super::record::{BodyRef, Completed, InFlight, Record, TooLarge};

/// State bytes to write, and the instant after which the entry is at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewState {
    pub bytes: Vec<u8>,
    pub at_rest_at: UnixNanos,
}

impl NewState {
    fn of(record: &Record) -> Self {
        Self {
            bytes: record.encode(),
            at_rest_at: record.at_rest_at(),
        }
    }

    /// The empty record: nobody holds the key, the entry is at rest at once.
    pub fn empty() -> Self {
        Self {
            bytes: Vec::new(),
            at_rest_at: 0,
        }
    }
}

/// What a keyed request should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key is ours: write `new_state` (an [`InFlight`] record) and forward the request.
    /// `retaken`: a previous owner's lock had expired (its outcome was unknown or it died).
    Execute { new_state: NewState, retaken: bool },
    /// Completed before: replay the stored answer (see [`super::replay()`]).
    Replay { record: Completed },
    /// Another request holds the key: `409` + `Retry-After`, or wait and `begin` again.
    Conflict { retry_after_ns: u64 },
    /// The key is bound to a different request (fingerprint): `422`.
    Mismatch,
    /// Completed, but the answer was too large to keep: `409` "completed with `status`".
    CompletedTooLarge { status: u16 },
}

/// How the owner's request ended, in the terms of the idempotency outcomes (see [`super::outcome::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not processed: clear the record so the next same-key request executes at once.
    Released,
    /// The upstream may have acted: leave the lock to expire.
    Unknown,
    /// An answer to replay; `body` is `None` when it could not be kept.
    Stored { status: u16, body: Option<BodyRef> },
    /// An answer over `max_body_bytes`: remember only the status.
    TooLarge { status: u16 },
}

/// What `finish` asks the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Write(NewState),
    /// Nothing to write (`Unknown`: the lock runs out on its own).
    Unchanged,
    /// The record is no longer ours (lock expired and retaken, or gone): write nothing, and
    /// free the body blob written for this answer, if any.
    NotOwner,
}

fn lock_ns(cfg: &IdempotencyConfig) -> u64 {
    duration_nanos(cfg.lock_timeout).max(1)
}

/// How often the owner renews its lock: a third of `lock_timeout`, so two renewals can be
/// late before anyone may retake the key.
pub fn renew_interval_ns(cfg: &IdempotencyConfig) -> u64 {
    (lock_ns(cfg) / 3).max(1)
}

/// Claims, replays or refuses the key, given the entry's current state (`None` or empty: no
/// record). `owner` is this request's random id.
pub fn begin(
    cfg: &IdempotencyConfig,
    state: Option<&[u8]>,
    fingerprint: Fingerprint,
    owner: u64,
    now: UnixNanos,
) -> Begin {
    let record = state.and_then(Record::decode);
    let claim = |retaken| Begin::Execute {
        new_state: NewState::of(&Record::InFlight(InFlight {
            owner,
            fingerprint,
            locked_until: now.saturating_add(lock_ns(cfg)),
            started_at: now,
        })),
        retaken,
    };
    let Some(record) = record else {
        return claim(false);
    };
    if record.is_at_rest(now) {
        return claim(matches!(record, Record::InFlight(r) if r.owner != owner));
    }
    if cfg.fingerprint && record.fingerprint() != fingerprint {
        return Begin::Mismatch;
    }
    match record {
        // Our own claim read back (a CAS rerun after a write we could not confirm).
        Record::InFlight(r) if r.owner == owner => claim(false),
        Record::InFlight(r) => Begin::Conflict {
            retry_after_ns: r
                .locked_until
                .saturating_sub(now)
                .min(renew_interval_ns(cfg))
                .max(1),
        },
        Record::Completed(record) => Begin::Replay { record },
        Record::TooLarge(r) => Begin::CompletedTooLarge { status: r.status },
    }
}

/// Extends the owner's lock to `now + lock_timeout`; `None` when `owner` no longer holds the
/// key (finished, retaken, or never claimed) — then the caller stops renewing.
pub fn renew(
    cfg: &IdempotencyConfig,
    state: &[u8],
    owner: u64,
    now: UnixNanos,
) -> Option<NewState> {
    match Record::decode(state)? {
        Record::InFlight(r) if r.owner == owner => {
            let locked_until = r.locked_until.max(now.saturating_add(lock_ns(cfg)));
            Some(NewState::of(&Record::InFlight(InFlight {
                locked_until,
                ..r
            })))
        }
        _ => None,
    }
}

/// Records how the owner's request ended.
pub fn finish(
    cfg: &IdempotencyConfig,
    state: Option<&[u8]>,
    owner: u64,
    outcome: Outcome,
    now: UnixNanos,
) -> Finish {
    let held = match state.and_then(Record::decode) {
        Some(Record::InFlight(r)) if r.owner == owner => r,
        _ => return Finish::NotOwner,
    };
    let expires_at = now.saturating_add(duration_nanos(cfg.ttl));
    let record = match outcome {
        Outcome::Released => return Finish::Write(NewState::empty()),
        Outcome::Unknown => return Finish::Unchanged,
        Outcome::Stored { status, body } => Record::Completed(Completed {
            fingerprint: held.fingerprint,
            status,
            stored_at: now,
            expires_at,
            body,
        }),
        Outcome::TooLarge { status } => Record::TooLarge(TooLarge {
            fingerprint: held.fingerprint,
            status,
            expires_at,
        }),
    };
    Finish::Write(NewState::of(&record))
}
