//! What the rate limit service last said about a key, as the numbers behind the rate-limit
//! headers: the service's limit, what is left mesh-wide plus what this Envoy holds unspent,
//! and when the service's window ends.

use super::pool::Pool;
use crate::ratelimit::{Decision, Evaluation};
use crate::time::{UnixNanos, NANOS_PER_SEC};

/// The numbers behind the rate-limit headers, as the service stated them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceView {
    pub limit: u32,
    /// Left in the window mesh-wide, plus what this Envoy holds unspent.
    pub remaining: u32,
    pub reset_at: UnixNanos,
}

impl ServiceView {
    /// The view as an [`Evaluation`], so the usual header code writes the headers.
    pub fn evaluation(&self, now: UnixNanos, rejected: bool) -> Evaluation {
        Evaluation {
            decision: Decision::admit_if(!rejected),
            new_state: None,
            at_rest_at: self.reset_at,
            limit: u64::from(self.limit),
            remaining: if rejected {
                0
            } else {
                u64::from(self.remaining)
            },
            reset_at: self.reset_at,
            retry_after_ns: self.reset_at.saturating_sub(now).max(NANOS_PER_SEC),
        }
    }
}

/// Headers' numbers from a pool: the service's last word plus the units held here.
pub(super) fn view_of(p: &Pool) -> Option<ServiceView> {
    (p.service_limit > 0).then(|| ServiceView {
        limit: p.service_limit,
        remaining: p
            .service_remaining
            .saturating_add(p.units)
            .min(p.service_limit),
        reset_at: p.window_end,
    })
}
