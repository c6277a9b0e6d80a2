//! The CLOSED → OPEN → HALF_OPEN → CLOSED state machine, as pure functions over state bytes.
//!
//! [`admit`] runs before an attempt and [`record`] after it. Both take the shared state bytes
//! and `now`, and return a verdict plus the bytes to write back (`None`: nothing changed, skip
//! the write). They never read a clock or the store, so the caller's read-compute-CAS loop can
//! run them again after a conflict; only the run whose write succeeded counts, including the
//! [`Transition`] it reports.
//!
//! Writes are kept rare: a CLOSED breaker admits without writing, and a success writes only
//! when it resets a failure streak — unless `failure_rate` is configured, whose window must
//! count every call.
//!
//! **Epochs.** Every transition bumps the state's epoch, and every admission carries the epoch
//! it was granted in ([`Ticket`]). [`record`] ignores a ticket from another epoch: a slow call
//! admitted while CLOSED that fails after the breaker went OPEN → HALF_OPEN must not count as a
//! failed probe, and a probe answering after its half-open period ended must not count at all.
//!
//! **Probe leases.** In HALF_OPEN at most `half_open_max_in_flight` probes hold a lease
//! ([`MAX_LEASES`] at most). A lease is given up by [`record`], or, if its request vanished,
//! expires at `lease_until` and is reclaimed by the next [`admit`] that needs the slot. Pass the
//! attempt timeout (plus a little slack for callback latency) as `lease_ns`: a probe's result
//! counts only while its lease is still held.

use crate::config::BreakerConfig;
use crate::outcome::{matches, AttemptOutcome};
use crate::time::{duration_nanos, UnixNanos};

use super::state::{HeldLease, Phase, State, MAX_LEASES};

/// Proof of admission, handed back to [`record`] with the attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The breaker epoch the attempt was admitted in.
    pub epoch: u32,
    /// The probe lease id, for a HALF_OPEN probe.
    pub probe: Option<u32>,
}

/// The epoch of [`Ticket::UNREAD_CLOSED`].
const UNREAD_EPOCH: u32 = u32::MAX - 1;

impl Ticket {
    /// The ticket of an attempt admitted without reading the state, because the breaker was
    /// known to be CLOSED with no failure streak (its unsettled gauge read 0, see
    /// [`crate::breaker::gate`]): [`record`] takes it for the current epoch while CLOSED.
    pub const UNREAD_CLOSED: Ticket = Ticket {
        epoch: UNREAD_EPOCH,
        probe: None,
    };
}

/// Whether an attempt may go to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// CLOSED: go ahead.
    Allow(Ticket),
    /// HALF_OPEN: go ahead as a probe; the slot is held until `lease_until`.
    Probe {
        ticket: Ticket,
        lease_until: UnixNanos,
    },
    /// OPEN (or HALF_OPEN with every probe slot taken): do not call the upstream.
    /// `retry_after_ns` is the time left open, or until the earliest probe lease expires.
    Reject { retry_after_ns: u64 },
}

impl Admission {
    /// The ticket to pass to [`record`], unless rejected.
    pub fn ticket(&self) -> Option<Ticket> {
        match self {
            Self::Allow(t) | Self::Probe { ticket: t, .. } => Some(*t),
            Self::Reject { .. } => None,
        }
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `failure_threshold` consecutive failures.
    ConsecutiveFailures,
    /// The failure rate over the window reached `failure_rate.threshold`.
    FailureRate,
    /// `reset_timeout` passed while OPEN.
    ResetTimeoutElapsed,
    /// A HALF_OPEN probe failed.
    ProbeFailed,
    /// `half_open_successes` probes in a row succeeded.
    ProbesSucceeded,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRate => "failure_rate",
            Self::ResetTimeoutElapsed => "reset_timeout_elapsed",
            Self::ProbeFailed => "probe_failed",
            Self::ProbesSucceeded => "probes_succeeded",
        }
    }
}

/// A state change, for the info log and the transitions metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Phase,
    pub to: Phase,
    pub cause: Cause,
}

/// The result of [`admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admit {
    pub admission: Admission,
    pub transition: Option<Transition>,
    /// Bytes to CAS back; `None` when unchanged.
    pub new_state: Option<Vec<u8>>,
    /// The breaker was *quiet*: CLOSED, no failure streak and no failure-rate rule, so a
    /// success recorded for this admission would change nothing in its state.
    pub quiet: bool,
}

/// The result of [`record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub transition: Option<Transition>,
    /// Bytes to CAS back; `None` when unchanged (e.g. a stale ticket).
    pub new_state: Option<Vec<u8>>,
}

/// The breaker as the gauge and the `503` answer see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { retry_after_ns: u64 },
    HalfOpen,
}

impl BreakerState {
    pub fn phase(self) -> Phase {
        match self {
            Self::Closed => Phase::Closed,
            Self::Open { .. } => Phase::Open,
            Self::HalfOpen => Phase::HalfOpen,
        }
    }

    /// 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u8 {
        self.phase().gauge()
    }
}

/// Whether an outcome counts as a breaker failure: it is in `failure_on`, or it is an answer
/// slower than `slow_call` (whatever its status).
pub fn is_failure(cfg: &BreakerConfig, outcome: &AttemptOutcome) -> bool {
    if cfg.failure_on.iter().any(|c| matches(c, outcome)) {
        return true;
    }
    match (cfg.slow_call, outcome) {
        (Some(slow), AttemptOutcome::Response { elapsed_ns, .. }) => {
            *elapsed_ns >= duration_nanos(slow)
        }
        _ => false,
    }
}

/// The logical state at `now`: an OPEN breaker whose `reset_timeout` passed is HALF_OPEN.
pub fn state_of(cfg: &BreakerConfig, state: &[u8], now: UnixNanos) -> BreakerState {
    let s = State::decode(cfg, state);
    match s.phase {
        Phase::Closed => BreakerState::Closed,
        Phase::HalfOpen => BreakerState::HalfOpen,
        Phase::Open => match open_time_left(cfg, &s, now) {
            0 => BreakerState::HalfOpen,
            left => BreakerState::Open {
                retry_after_ns: left,
            },
        },
    }
}

/// Asks whether an attempt may go to the upstream at `now`. `lease_ns` is how long a probe
/// slot is held if its result never comes back.
pub fn admit(cfg: &BreakerConfig, state: &[u8], now: UnixNanos, lease_ns: u64) -> Admit {
    let mut s = State::decode(cfg, state);
    let mut transition = None;
    match s.phase {
        Phase::Closed => {
            let admission = Admission::Allow(Ticket {
                epoch: s.epoch,
                probe: None,
            });
            return Admit {
                admission,
                transition,
                new_state: None,
                quiet: cfg.failure_rate.is_none() && s.consecutive_failures == 0,
            };
        }
        Phase::Open => {
            let left = open_time_left(cfg, &s, now);
            if left > 0 {
                let admission = Admission::Reject {
                    retry_after_ns: left,
                };
                return Admit {
                    admission,
                    transition,
                    new_state: None,
                    quiet: false,
                };
            }
            s.enter(Phase::HalfOpen, now);
            transition = Some(Transition {
                from: Phase::Open,
                to: Phase::HalfOpen,
                cause: Cause::ResetTimeoutElapsed,
            });
        }
        Phase::HalfOpen => {}
    }

    let held = s.leases.len();
    s.leases.retain(|l| l.until > now);
    let mut changed = transition.is_some() || s.leases.len() != held;
    let admission = if s.leases.len() < max_in_flight(cfg) {
        let id = s.next_lease_id;
        s.next_lease_id = id.wrapping_add(1);
        let until = now.saturating_add(lease_ns.max(1));
        s.leases.push(HeldLease { id, until });
        changed = true;
        Admission::Probe {
            ticket: Ticket {
                epoch: s.epoch,
                probe: Some(id),
            },
            lease_until: until,
        }
    } else {
        let earliest = s.leases.iter().map(|l| l.until).min().unwrap_or(now);
        Admission::Reject {
            retry_after_ns: earliest.saturating_sub(now).max(1),
        }
    };
    Admit {
        admission,
        transition,
        new_state: changed.then(|| s.encode()),
        quiet: false,
    }
}

/// Records the result of an attempt admitted with `ticket`. `failed` is normally
/// [`is_failure`] of the attempt's outcome.
pub fn record(
    cfg: &BreakerConfig,
    state: &[u8],
    ticket: Ticket,
    failed: bool,
    now: UnixNanos,
) -> Recorded {
    let unchanged = Recorded {
        transition: None,
        new_state: None,
    };
    let mut s = State::decode(cfg, state);
    let unread_closed = ticket == Ticket::UNREAD_CLOSED && s.phase == Phase::Closed;
    if ticket.epoch != s.epoch && !unread_closed {
        return unchanged;
    }
    let before = s.clone();
    let transition = match (s.phase, ticket.probe) {
        (Phase::Closed, None) => record_closed(cfg, &mut s, failed, now),
        (Phase::HalfOpen, Some(id)) => {
            let Some(i) = s.leases.iter().position(|l| l.id == id) else {
                return unchanged; // the lease expired and its slot was given to another probe
            };
            s.leases.swap_remove(i);
            record_probe(cfg, &mut s, failed, now)
        }
        _ => return unchanged,
    };
    let new_state = (s != before).then(|| s.encode());
    Recorded {
        transition,
        new_state,
    }
}

fn record_closed(
    cfg: &BreakerConfig,
    s: &mut State,
    failed: bool,
    now: UnixNanos,
) -> Option<Transition> {
    s.consecutive_failures = if failed {
        s.consecutive_failures.saturating_add(1)
    } else {
        0
    };
    let by_count = cfg.failure_threshold > 0 && s.consecutive_failures >= cfg.failure_threshold;
    let by_rate = cfg.failure_rate.as_ref().is_some_and(|rate| {
        s.window.add(now, 1, u32::from(failed));
        let (calls, failures) = s.window.totals();
        calls > 0
            && calls >= u64::from(rate.minimum_calls)
            && failures as f64 / calls as f64 >= rate.threshold
    });
    let cause = if by_count {
        Cause::ConsecutiveFailures
    } else if by_rate {
        Cause::FailureRate
    } else {
        return None;
    };
    s.enter(Phase::Open, now);
    Some(Transition {
        from: Phase::Closed,
        to: Phase::Open,
        cause,
    })
}

fn record_probe(
    cfg: &BreakerConfig,
    s: &mut State,
    failed: bool,
    now: UnixNanos,
) -> Option<Transition> {
    if failed {
        s.enter(Phase::Open, now);
        return Some(Transition {
            from: Phase::HalfOpen,
            to: Phase::Open,
            cause: Cause::ProbeFailed,
        });
    }
    s.half_open_successes = s.half_open_successes.saturating_add(1);
    if s.half_open_successes < cfg.half_open_successes.max(1) {
        return None;
    }
    s.enter(Phase::Closed, now);
    Some(Transition {
        from: Phase::HalfOpen,
        to: Phase::Closed,
        cause: Cause::ProbesSucceeded,
    })
}

/// Nanoseconds until an OPEN breaker may probe (0: now). A clock that stepped back before the
/// opening counts as "just opened".
fn open_time_left(cfg: &BreakerConfig, s: &State, now: UnixNanos) -> u64 {
    let elapsed = now.saturating_sub(s.since);
    duration_nanos(cfg.reset_timeout).saturating_sub(elapsed)
}

/// `half_open_max_in_flight`, within `1..=MAX_LEASES` (0 would leave HALF_OPEN stuck).
fn max_in_flight(cfg: &BreakerConfig) -> usize {
    usize::try_from(cfg.half_open_max_in_flight)
        .unwrap_or(MAX_LEASES)
        .clamp(1, MAX_LEASES)
}
