//! What the keyed-request machine sees of the world while it acts for one request: its layer,
//! the shared store, the time, and where it counts what happened.

use crate::metrics::{Event, IdempotencyEvent, Metrics};
use crate::problem::LocalReply;
use crate::store::SharedStore;
use crate::time::UnixNanos;

use super::layer::IdempotencyLayer;
use super::replies;

/// What the layer sees of the world while it acts for one request.
pub struct KeyEnv<'a> {
    pub layer: &'a IdempotencyLayer,
    pub store: &'a dyn SharedStore,
    pub now: UnixNanos,
    pub metrics: &'a mut dyn Metrics,
}

impl KeyEnv<'_> {
    pub(super) fn count(&mut self, event: IdempotencyEvent) {
        self.metrics.count(Event::Idempotency(event));
    }

    /// The `409` for a key whose answer is gone or was too large to keep (counted a conflict).
    pub(super) fn completed_conflict(&mut self, status: u16) -> LocalReply {
        self.count(IdempotencyEvent::Conflict);
        replies::completed(status)
    }
}
