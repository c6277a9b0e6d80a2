//! What the root context shares with its HTTP contexts, in a file of its own so that both
//! contexts depend on it and neither on the other's.

use crate::worker::{MetricIds, Worker};

/// The worker and the metric ids its host adapter counts into.
pub(crate) struct Shared {
    pub(crate) worker: Worker,
    pub(crate) metrics: MetricIds,
}
