//! Delivering queued requests: when, how often, and when to give up.
//!
//! Delivery is **at least once**. A queued request is sent again until the upstream gives a
//! final answer, so a delivery whose answer was lost (reset, timeout, or Envoy never called
//! back within the lease) is repeated — which is why every delivery carries the item's
//! idempotency key (see [`super::queue`]).
//!
//! The caller drives it from its timer: [`RequestQueue::next_due`](super::queue::RequestQueue::next_due) hands out items whose
//! time has come, each with a [`DeliveryTicket`] and a lease (`lease_ns`: after that the item
//! is due again even if no answer came back); the caller asks its breaker, sends, and reports
//! with [`RequestQueue::on_delivery_result`](super::queue::RequestQueue::on_delivery_result):
//! - [`DeliveryOutcome::Delivered`]: the upstream gave a final answer (any status but 5xx,
//!   408, 425, 429): the item is done;
//! - [`DeliveryOutcome::Failed`]: retried after the next [`Backoff`] delay (the upstream's
//!   `retry` settings, else [`DEFAULT_BASE_DELAY`]…[`DEFAULT_MAX_DELAY`] with full jitter),
//!   or later if the upstream said `Retry-After`;
//! - [`DeliveryOutcome::NotSent`]: the breaker did not allow a call; rescheduled without
//!   counting an attempt or advancing the backoff.
//!
//! An item still undelivered `max_age_ns` after it was accepted ([`DEFAULT_MAX_AGE`] = 24 h)
//! is given up ([`Due::GiveUp`] / [`Settled::GaveUp`]) so that a poison request cannot hold
//! its place forever; the caller logs it at warn and counts it.

use std::fmt;
use std::time::Duration;

use crate::config::{Jitter, UpstreamConfig};
use crate::retry::backoff::Backoff;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_SEC};

/// Retry delays when the upstream has no `retry` block: from 1 s …
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);
/// … doubling up to 60 s, with full jitter.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
/// An undelivered item is given up this long after it was accepted.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How deliveries are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Template, cloned per item.
    pub backoff: Backoff,
    /// An item handed out is due again after this long if no result came back.
    pub lease_ns: u64,
    /// An item is given up this long after it was accepted.
    pub max_age_ns: u64,
}

impl DeliveryPolicy {
    /// The upstream's `retry` delays (or the defaults), a lease of twice the attempt timeout
    /// plus a second, and [`DEFAULT_MAX_AGE`].
    pub fn for_upstream(up: &UpstreamConfig) -> Self {
        let backoff = match &up.retry {
            Some(r) => Backoff::from_config(r),
            None => Backoff::new(Jitter::Full, DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY),
        };
        Self {
            backoff,
            lease_ns: duration_nanos(up.timeout)
                .saturating_mul(2)
                .saturating_add(NANOS_PER_SEC),
            max_age_ns: duration_nanos(DEFAULT_MAX_AGE),
        }
    }
}

/// A queued item's id: random, shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One delivery handed out by [`RequestQueue::next_due`](super::queue::RequestQueue::next_due).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTicket {
    pub id: QueueId,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// What [`RequestQueue::next_due`](super::queue::RequestQueue::next_due) has for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Send [`RequestQueue::request`](super::queue::RequestQueue::request) with [`RequestQueue::call_headers`](super::queue::RequestQueue::call_headers) now.
    Deliver(DeliveryTicket),
    /// Undelivered after `max_age`: dropped.
    GiveUp { id: QueueId, attempts: u32 },
}

/// How a delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The upstream gave a final answer.
    Delivered { status: u16 },
    /// No answer, or one that asks for a retry.
    Failed { retry_after_ns: Option<u64> },
    /// Not sent (the breaker refused): try again at `retry_at`, no attempt counted.
    NotSent { retry_at: UnixNanos },
}

impl DeliveryOutcome {
    /// From a callout's status (`None`: reset, no headers) and any `Retry-After` delay.
    pub fn from_status(status: Option<u16>, retry_after_ns: Option<u64>) -> Self {
        match status {
            Some(s) if !(s >= 500 || matches!(s, 408 | 425 | 429)) => Self::Delivered { status: s },
            _ => Self::Failed { retry_after_ns },
        }
    }
}

/// What [`RequestQueue::on_delivery_result`](super::queue::RequestQueue::on_delivery_result) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered {
        attempts: u32,
    },
    RetryAt(UnixNanos),
    GaveUp {
        attempts: u32,
    },
    /// The ticket is not current (the item is gone or was handed out again): ignored.
    Stale,
}
