//! Router mode's part of forwarding: Envoy's router sends the request, levee only asks the
//! upstream's breaker first and, when the answer's headers come back, tells it how the
//! attempt went.

use crate::breaker::gate::{admit_noting_quiet, record_unless_quiet};
use crate::breaker::{Admission, Ticket};
use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use crate::outcome::{classify_router, AttemptOutcome};
use crate::store::SharedStore;
use crate::time::UnixNanos;

/// A request the router forwards: the breaker's ticket and when it was sent.
#[derive(Debug, Default)]
pub struct RouterForward {
    /// Taken when the answer is recorded (only an upstream with a breaker has one).
    ticket: Option<(Ticket, UnixNanos)>,
    /// The breaker was quiet when it admitted the request (a success changes nothing).
    quiet: bool,
}

impl RouterForward {
    /// Asks the breaker of upstream `index`; `Err` carries how long it stays open.
    pub fn admit(
        upstream: &UpstreamConfig,
        index: usize,
        store: &dyn SharedStore,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> Result<Self, u64> {
        let (admission, quiet) = admit_noting_quiet(upstream, index, store, now, metrics);
        match admission {
            Admission::Allow(ticket) | Admission::Probe { ticket, .. } => Ok(Self {
                ticket: upstream.circuit_breaker.is_some().then_some((ticket, now)),
                quiet,
            }),
            Admission::Reject { retry_after_ns } => Err(retry_after_ns),
        }
    }

    /// The breaker still waits for this request's outcome.
    pub fn awaits_outcome(&self) -> bool {
        self.ticket.is_some()
    }

    /// The answer's headers arrived: classify the attempt and record it in the breaker of
    /// `upstream` (its index and config), if it admitted the request.
    pub fn on_answer(
        &mut self,
        upstream: Option<(usize, &UpstreamConfig)>,
        store: &dyn SharedStore,
        status: u16,
        flags: u64,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> AttemptOutcome {
        let sent_at = self.ticket.map_or(now, |(_, at)| at);
        let outcome = classify_router(status, flags, now.saturating_sub(sent_at));
        if let (Some((index, upstream)), Some((ticket, _))) = (upstream, self.ticket.take()) {
            record_unless_quiet(
                upstream, index, store, ticket, self.quiet, &outcome, now, metrics,
            );
        }
        outcome
    }
}
