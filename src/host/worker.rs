//! Per-worker, per-configuration state shared by the root context and its HTTP contexts:
//! the timer queue and the registry of paused requests it can wake.
//!
//! The root context owns the only tick timer, but the paused request's state lives in its
//! HTTP context, which the SDK owns. So each HTTP context keeps its state in an
//! `Rc<RefCell<Stream>>` and registers a `Weak` here while it waits; when its client goes
//! away, `on_done` unregisters it and cancels its timers, so nothing is left behind.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use proxy_wasm::hostcalls;

use crate::pipeline::flow::{RequestFlow, Step};
use crate::pipeline::Plugin;
use crate::problem::is_grpc;
use crate::time::UnixNanos;
use crate::timer_queue::{tick_period_ms, ContextId, TimerPurpose, TimerQueue};

use super::metrics::{HostMetrics, MetricIds};
use super::reply;
use super::store::EnvoyStore;

/// One request's state, shared between its HTTP context and the worker's timers.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub(crate) flow: RequestFlow,
    pub(crate) grpc: bool,
}

impl Stream {
    pub(crate) fn set_grpc(&mut self, content_type: Option<&[u8]>) {
        self.grpc = is_grpc(content_type);
    }
}

pub(crate) struct Shared {
    pub(crate) plugin: Rc<Plugin>,
    pub(crate) metrics: Rc<MetricIds>,
    pub(crate) worker: RefCell<Worker>,
}

#[derive(Default)]
pub(crate) struct Worker {
    timers: TimerQueue,
    waiting: HashMap<ContextId, Weak<RefCell<Stream>>>,
    /// The tick period last asked of the host, to avoid redundant host calls.
    armed_ms: Option<u64>,
    /// Gauge of requests held by this worker (all workers add into one gauge).
    held_gauge: Option<u32>,
}

impl Worker {
    pub(crate) fn hold(
        &mut self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        wake_at: UnixNanos,
        purpose: TimerPurpose,
        now: UnixNanos,
    ) {
        if self.waiting.insert(id, Rc::downgrade(stream)).is_none() {
            self.bump_held(1);
        }
        self.timers.schedule(id, purpose, wake_at);
        self.rearm(now);
    }

    pub(crate) fn forget(&mut self, id: ContextId, now: UnixNanos) {
        self.timers.cancel_all(id);
        if self.waiting.remove(&id).is_some() {
            self.bump_held(-1);
        }
        self.rearm(now);
    }

    pub(crate) fn with_held_gauge(id: u32) -> Self {
        Self {
            held_gauge: Some(id),
            ..Self::default()
        }
    }

    fn bump_held(&self, by: i64) {
        if let Some(id) = self.held_gauge {
            let _ = hostcalls::increment_metric(id, by);
        }
    }

    fn rearm(&mut self, now: UnixNanos) {
        let want = tick_period_ms(self.timers.next_deadline(), now);
        if want != self.armed_ms {
            let period = std::time::Duration::from_millis(want.unwrap_or(0));
            let _ = hostcalls::set_tick_period(period);
            self.armed_ms = want;
        }
    }
}

impl Shared {
    /// Fires every due timer: the stream's flow decides, the result is applied to the
    /// (now effective) stream.
    pub(crate) fn on_tick(&self, now: UnixNanos) {
        let fired = self.worker.borrow_mut().timers.pop_due(now);
        for f in fired {
            let stream = self
                .worker
                .borrow()
                .waiting
                .get(&f.context)
                .and_then(Weak::upgrade);
            let Some(stream) = stream else { continue };
            if hostcalls::set_effective_context(f.context).is_err() {
                self.worker.borrow_mut().forget(f.context, now);
                continue;
            }
            let mut metrics = HostMetrics(&self.metrics);
            let step = stream.borrow_mut().flow.on_timer(
                &self.plugin,
                &EnvoyStore,
                f.purpose,
                now,
                &mut metrics,
            );
            if let Some(step) = step {
                self.apply_later(f.context, &stream, step, now);
            }
        }
        // Always re-arm: the host's periodic tick keeps its old period otherwise.
        let mut worker = self.worker.borrow_mut();
        worker.armed_ms = None;
        worker.rearm(now);
    }

    /// Applies a step for a stream that is paused (from a timer or a callout response).
    pub(crate) fn apply_later(
        &self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        step: Step,
        now: UnixNanos,
    ) {
        match step {
            Step::Continue => {
                self.worker.borrow_mut().forget(id, now);
                let _ = hostcalls::resume_http_request();
            }
            Step::Reply(r) => {
                self.worker.borrow_mut().forget(id, now);
                let grpc = stream.borrow().grpc;
                reply::send(&r, grpc);
            }
            Step::Hold { wake_at, purpose } => self
                .worker
                .borrow_mut()
                .hold(id, stream, wake_at, purpose, now),
        }
    }
}
