//! What every step of a request sees from outside, bundled into one argument.

use crate::metrics::Metrics;
use crate::random::RandomSource;
use crate::store::SharedStore;
use crate::time::UnixNanos;

use super::step::BackgroundCall;
use super::Plugin;

/// What every step of a request sees from outside: the configuration, shared state, the clock
/// reading for this callback, randomness and metrics. Time and randomness stay arguments —
/// bundled, never global — so tests still drive them.
pub struct Env<'a> {
    pub plugin: &'a Plugin,
    pub store: &'a dyn SharedStore,
    pub now: UnixNanos,
    pub rng: &'a mut dyn RandomSource,
    pub metrics: &'a mut dyn Metrics,
    /// Backend calls no request waits for, collected by the host after the step.
    pub background: Vec<BackgroundCall>,
}

impl<'a> Env<'a> {
    pub fn new(
        plugin: &'a Plugin,
        store: &'a dyn SharedStore,
        now: UnixNanos,
        rng: &'a mut dyn RandomSource,
        metrics: &'a mut dyn Metrics,
    ) -> Self {
        Self {
            plugin,
            store,
            now,
            rng,
            metrics,
            background: Vec::new(),
        }
    }

    /// Sends `call` from the root context soon, without pausing anything for it.
    pub fn call_in_background(&mut self, call: BackgroundCall) {
        self.background.push(call);
    }
}
