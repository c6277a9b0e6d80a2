//! Per-worker, per-configuration state shared by the root context and its HTTP contexts:
//! the timer queue and the registry of requests it can wake.
//!
//! The root context owns the only tick timer, but the paused request's state lives in its
//! HTTP context, which the SDK owns. So each HTTP context keeps its state in an
//! `Rc<RefCell<Stream>>` and registers a `Weak` here while it has timers; when its client
//! goes away, `on_done` unregisters it and cancels its timers, so nothing is left behind.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use proxy_wasm::types::{BufferType, LogLevel, MapType};

use crate::forward::CalloutRequest;

use crate::pipeline::flow::{Await, RequestFlow, Step};
use crate::pipeline::{Env, Plugin};
use crate::problem::is_grpc;
use crate::random::{RandomSource, SplitMix64};
use crate::time::{UnixNanos, NANOS_PER_SEC};
use crate::timer_queue::{tick_period_ms, ContextId, TimerPurpose, TimerQueue};

use super::abi;
use super::delivery::Queues;
use super::metrics::{HostMetrics, MetricIds};
use super::reply;
use super::store::EnvoyStore;

/// How long a request held for its body may wait for the first body callback before levee
/// concludes that `allow_on_headers_stop_iteration` is missing (documented in the book's operations chapter).
pub(crate) const BODY_GUARD_NS: u64 = 3 * NANOS_PER_SEC;

/// One request's state, shared between its HTTP context and the worker's timers.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub(crate) flow: RequestFlow,
    /// Whether the request is gRPC (its local replies then carry a grpc-status); `None`
    /// until a reply may be needed: requests that levee only lets through never read it.
    grpc: Option<bool>,
}

impl Stream {
    pub(crate) fn new(owner: u64) -> Self {
        Self {
            flow: RequestFlow::new(owner),
            grpc: None,
        }
    }

    pub(crate) fn set_grpc(&mut self, content_type: Option<&[u8]>) {
        self.grpc = Some(is_grpc(content_type));
    }

    /// Whether the request is gRPC, reading its `content-type` now if nobody has yet.
    pub(crate) fn grpc(&mut self) -> bool {
        *self.grpc.get_or_insert_with(|| {
            let content_type =
                abi::get_map_value_bytes(MapType::HttpRequestHeaders, "content-type")
                    .ok()
                    .flatten();
            is_grpc(content_type.as_deref())
        })
    }
}

pub(crate) struct Shared {
    pub(crate) plugin: Rc<Plugin>,
    pub(crate) metrics: Rc<MetricIds>,
    pub(crate) worker: RefCell<Worker>,
    pub(crate) rng: RefCell<SplitMix64>,
    /// A body callback has arrived for a held request on this worker: the plugin config has
    /// `allow_on_headers_stop_iteration`, so no body guard is needed any more.
    pub(crate) body_callbacks_work: Cell<bool>,
    /// The `queue` fallback's queues (this worker's memory) and their deliveries.
    pub(crate) queues: RefCell<Queues>,
    /// The missing-`allow_on_headers_stop_iteration` line was logged (once per worker).
    pub(crate) body_guard_logged: Cell<bool>,
    /// The root context's id (queue deliveries are sent from it, not from a request).
    pub(crate) root_id: u32,
}

/// The timer-queue owner id used for the root's own wake-ups (queue deliveries).
const ROOT_WAKE: ContextId = 0;

#[derive(Default)]
pub(crate) struct Worker {
    timers: TimerQueue,
    streams: HashMap<ContextId, Weak<RefCell<Stream>>>,
    /// Outstanding callouts: token → the request they belong to.
    callouts: HashMap<u32, ContextId>,
    held: HashSet<ContextId>,
    /// The tick period last asked of the host, to avoid redundant host calls.
    armed_ms: Option<u64>,
    /// Gauge of requests held by this worker (all workers add into one gauge).
    held_gauge: Option<u32>,
}

impl Worker {
    pub(crate) fn with_held_gauge(id: u32) -> Self {
        Self {
            held_gauge: Some(id),
            ..Self::default()
        }
    }

    /// Calls the stream back at `at` (it may or may not be paused).
    pub(crate) fn schedule(
        &mut self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        at: UnixNanos,
        purpose: TimerPurpose,
        now: UnixNanos,
    ) {
        self.streams.insert(id, Rc::downgrade(stream));
        self.timers.schedule(id, purpose, at);
        self.rearm(now);
    }

    /// Wakes the root at `at` (queue deliveries), replacing an earlier wake-up.
    pub(crate) fn wake_root_at(&mut self, at: Option<UnixNanos>, now: UnixNanos) {
        self.timers.cancel(ROOT_WAKE, TimerPurpose::Poll);
        if let Some(at) = at {
            self.timers.schedule(ROOT_WAKE, TimerPurpose::Poll, at);
        }
        self.rearm(now);
    }

    /// Marks the stream as paused by levee (for the held-requests gauge).
    pub(crate) fn hold(&mut self, id: ContextId, stream: &Rc<RefCell<Stream>>) {
        self.streams.insert(id, Rc::downgrade(stream));
        if self.held.insert(id) {
            self.bump_held(1);
        }
    }

    pub(crate) fn unhold(&mut self, id: ContextId) {
        if self.held.remove(&id) {
            self.bump_held(-1);
        }
    }

    /// The stream is gone: cancel its timers and forget it.
    /// Whether the worker holds anything for stream `id` (timers, callouts, the held gauge).
    pub(crate) fn knows(&self, id: ContextId) -> bool {
        self.streams.contains_key(&id) || self.held.contains(&id)
    }

    pub(crate) fn forget(&mut self, id: ContextId, now: UnixNanos) {
        self.timers.cancel_all(id);
        if !self.callouts.is_empty() {
            self.callouts.retain(|_, owner| *owner != id);
        }
        self.streams.remove(&id);
        self.unhold(id);
        self.rearm(now);
    }

    fn bump_held(&self, by: i64) {
        if let Some(id) = self.held_gauge {
            let _ = abi::increment_metric(id, by);
        }
    }

    fn rearm(&mut self, now: UnixNanos) {
        let want = tick_period_ms(self.timers.next_deadline(), now);
        if want != self.armed_ms {
            let period = std::time::Duration::from_millis(want.unwrap_or(0));
            let _ = abi::set_tick_period(period);
            self.armed_ms = want;
        }
    }
}

impl Shared {
    pub(crate) fn next_owner_id(&self) -> u64 {
        self.rng.borrow_mut().next_u64()
    }

    /// Fires every due timer: the stream's flow decides, the result is applied to the
    /// (now effective) stream.
    pub(crate) fn on_tick(&self, now: UnixNanos) {
        let fired = self.worker.borrow_mut().timers.pop_due(now);
        for f in fired {
            let stream = self
                .worker
                .borrow()
                .streams
                .get(&f.context)
                .and_then(Weak::upgrade);
            let Some(stream) = stream else { continue };
            if abi::set_effective_context(f.context).is_err() {
                self.worker.borrow_mut().forget(f.context, now);
                continue;
            }
            let mut metrics = HostMetrics(&self.metrics);
            let mut rng = self.rng.borrow_mut();
            let mut env = Env::new(&self.plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
            let step = stream.borrow_mut().flow.on_timer(&mut env, f.purpose);
            drop(rng);
            if let Some(step) = step {
                self.apply_later(f.context, &stream, step, now);
            }
            self.schedule_flow_timer(f.context, &stream, now);
        }
        self.deliver_queued(now);
        // Always re-arm: the host's periodic tick keeps its old period otherwise.
        let mut worker = self.worker.borrow_mut();
        worker.armed_ms = None;
        worker.rearm(now);
    }

    /// Sends due queue deliveries from the root context and schedules the next wake-up.
    fn deliver_queued(&self, now: UnixNanos) {
        let mut queues = self.queues.borrow_mut();
        if queues.next_wake().is_some_and(|w| w <= now) {
            let _ = abi::set_effective_context(self.root_id);
            let mut metrics = HostMetrics(&self.metrics);
            let mut rng = self.rng.borrow_mut();
            queues.deliver_due(&mut Env::new(
                &self.plugin,
                &EnvoyStore,
                now,
                &mut *rng,
                &mut metrics,
            ));
        }
        let wake = queues.next_wake();
        self.worker.borrow_mut().wake_root_at(wake, now);
    }

    /// Puts a request on its upstream's queue and continues its flow with the result.
    pub(crate) fn enqueue(
        &self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        e: crate::pipeline::Enqueue,
        now: UnixNanos,
    ) -> Step {
        let result = {
            let mut rng = self.rng.borrow_mut();
            self.queues.borrow_mut().enqueue(e, &mut *rng, now)
        };
        let wake = self.queues.borrow().next_wake();
        self.worker.borrow_mut().wake_root_at(wake, now);
        let _ = id;
        let mut metrics = HostMetrics(&self.metrics);
        let mut rng = self.rng.borrow_mut();
        let mut env = Env::new(&self.plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
        stream.borrow_mut().flow.on_enqueued(&mut env, result)
    }

    /// Schedules the timer the flow asked for without pausing (lock renewal), if any.
    pub(crate) fn schedule_flow_timer(
        &self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        now: UnixNanos,
    ) {
        let timer = stream.borrow_mut().flow.take_timer();
        if let Some((at, purpose)) = timer {
            self.worker
                .borrow_mut()
                .schedule(id, stream, at, purpose, now);
        }
    }

    /// Applies a step to a paused stream (from a timer). Returns nothing: the host call
    /// (resume or reply) is made here.
    pub(crate) fn apply_later(
        &self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        step: Step,
        now: UnixNanos,
    ) {
        match step {
            Step::Continue => {
                self.worker.borrow_mut().unhold(id);
                let _ = abi::resume_http_request();
            }
            Step::Reply(r) => {
                self.worker.borrow_mut().unhold(id);
                if r.details == "levee_body_not_delivered" && !self.body_guard_logged.replace(true)
                {
                    super::log(
                        LogLevel::Critical,
                        "levee: requests held for their body get no body callbacks: set allow_on_headers_stop_iteration: true in the wasm plugin config (they are answered 500 after 3 s)",
                    );
                }
                let grpc = stream.borrow_mut().grpc();
                reply::send(&r, grpc);
            }
            Step::Await(Await::Timer { .. } | Await::Body) => {
                self.pause(id, stream, step, now);
            }
            Step::Await(Await::Callout(req)) => self.dispatch(id, stream, req, now),
            Step::Await(Await::Enqueue(e)) => {
                let next = self.enqueue(id, stream, e, now);
                self.apply_later(id, stream, next, now);
            }
        }
    }

    /// Sends a callout for a held stream; a refused dispatch is fed back as a reset.
    pub(crate) fn dispatch(
        &self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        req: CalloutRequest,
        now: UnixNanos,
    ) {
        self.worker.borrow_mut().hold(id, stream);
        // Values are borrowed as they are (valid UTF-8 in practice); only others are copied.
        let values: Vec<std::borrow::Cow<'_, str>> = req
            .headers
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v))
            .collect();
        let pairs: Vec<(&str, &str)> = req
            .headers
            .iter()
            .zip(&values)
            .map(|((k, _), v)| (k.as_str(), v.as_ref()))
            .collect();
        let timeout = std::time::Duration::from_millis(req.timeout_ms());
        let body = (!req.body.is_empty()).then_some(req.body.as_slice());
        match abi::dispatch_http_call(&req.cluster, pairs, body, vec![], timeout) {
            Ok(token) => {
                self.worker.borrow_mut().callouts.insert(token, id);
            }
            Err(_) => {
                let mut metrics = HostMetrics(&self.metrics);
                let mut rng = self.rng.borrow_mut();
                let mut env = Env::new(&self.plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
                let step = stream.borrow_mut().flow.on_dispatch_failed(&mut env);
                drop(rng);
                if let Some(step) = step {
                    self.apply_later(id, stream, step, now);
                }
            }
        }
    }

    /// A callout finished (delivered to the HTTP context that sent it, or to the root when it
    /// was sent from a timer): read its answer, then continue the request it belongs to.
    pub(crate) fn on_callout_response(
        &self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        now: UnixNanos,
    ) {
        let headers = (num_headers > 0)
            .then(|| abi::get_map_bytes(MapType::HttpCallResponseHeaders).ok())
            .flatten();
        let body = abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        {
            let mut metrics = HostMetrics(&self.metrics);
            let mut rng = self.rng.borrow_mut();
            let mut env = Env::new(&self.plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
            let handled =
                self.queues
                    .borrow_mut()
                    .on_response(&mut env, token, headers.as_deref(), &body);
            if handled {
                drop(rng);
                let wake = self.queues.borrow().next_wake();
                self.worker.borrow_mut().wake_root_at(wake, now);
                return;
            }
        }
        let id = self.worker.borrow_mut().callouts.remove(&token);
        let Some(id) = id else { return };
        let stream = self
            .worker
            .borrow()
            .streams
            .get(&id)
            .and_then(Weak::upgrade);
        let Some(stream) = stream else { return };
        if abi::set_effective_context(id).is_err() {
            self.worker.borrow_mut().forget(id, now);
            return;
        }
        let mut metrics = HostMetrics(&self.metrics);
        let mut rng = self.rng.borrow_mut();
        let mut env = Env::new(&self.plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
        let step = stream
            .borrow_mut()
            .flow
            .on_callout_response(&mut env, headers, body);
        drop(rng);
        if let Some(step) = step {
            self.apply_later(id, &stream, step, now);
        }
        self.schedule_flow_timer(id, &stream, now);
    }

    /// Keeps a stream paused: registers it as held and schedules what the step asks for.
    pub(crate) fn pause(
        &self,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        step: Step,
        now: UnixNanos,
    ) {
        let mut worker = self.worker.borrow_mut();
        worker.hold(id, stream);
        match step {
            Step::Await(Await::Timer { wake_at, purpose }) => {
                worker.schedule(id, stream, wake_at, purpose, now)
            }
            Step::Await(Await::Body) if !self.body_callbacks_work.get() => worker.schedule(
                id,
                stream,
                now.saturating_add(BODY_GUARD_NS),
                TimerPurpose::BodyGuard,
                now,
            ),
            _ => {}
        }
    }
}
