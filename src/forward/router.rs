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
    /// When the request was admitted.
    sent_at: UnixNanos,
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
                sent_at: now,
            }),
            Admission::Reject { retry_after_ns } => Err(retry_after_ns),
        }
    }

    /// The time [`RouterForward::on_answer`] may take for "now" when recording this answer
    /// needs no fresh clock: no breaker waits for it, or a breaker that was quiet at admission
    /// (and has no slow-call rule) sees a success, which it only counts. `None`: read the clock.
    pub fn clock_free(
        &self,
        upstream: Option<&UpstreamConfig>,
        status: u16,
        flags: u64,
    ) -> Option<UnixNanos> {
        let Some((ticket, sent_at)) = self.ticket else {
            return Some(self.sent_at);
        };
        let cfg = upstream?.circuit_breaker.as_ref()?;
        let success = !crate::breaker::is_failure(cfg, &classify_router(status, flags, 0));
        (self.quiet && ticket.probe.is_none() && cfg.slow_call.is_none() && success)
            .then_some(sent_at)
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
