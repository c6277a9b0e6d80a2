//! One Envoy worker's side of levee, as plain Rust: the requests it holds, their timers, the
//! callouts they wait for, the `queue` fallback's queues, and the one mapping from a
//! pipeline [`Step`] to what the host does (resume, answer, pause, send a callout).
//!
//! It talks to Envoy only through the [`Host`] trait, so native tests and the flow fuzzer
//! drive this very code through a fake host; `src/host` only adapts proxy-wasm's callbacks
//! and ABI to it. There is one [`Worker`] per worker VM and plugin configuration, shared by
//! the root context (ticks, callouts sent from a tick) and every HTTP context.

mod attributes;
mod callbacks;
mod configure;
#[cfg(test)]
pub(crate) mod fake_host;
mod host;
mod metric_ids;
mod queues;
mod registry;
mod remote;
mod stream;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::pipeline::flow::{Await, BackgroundCall, Step};
use crate::pipeline::{Enqueue, Env, Plugin};
use crate::random::{RandomSource, SplitMix64};
use crate::time::{UnixNanos, NANOS_PER_SEC};
use crate::timer_queue::{ContextId, TimerPurpose};

pub use attributes::{LazyAttributes, RequestReads};
pub use configure::{configure, reconcile_breakers, summary};
pub use host::{Action, Callout, DispatchRefused, GrpcCall, Host};
pub use metric_ids::{MetricIds, MetricKind, NO_METRIC};
pub use stream::Stream;

use queues::Queues;
use registry::Registry;

/// How long a request held for its body may wait for the first body callback before levee
/// concludes that `allow_on_headers_stop_iteration` is missing (documented in the book's
/// operations chapter).
pub const BODY_GUARD_NS: u64 = 3 * NANOS_PER_SEC;

/// Logged once per worker when the body guard fires.
const NO_BODY_CALLBACKS: &str = "levee: requests held for their body get no body callbacks: set allow_on_headers_stop_iteration: true in the wasm plugin config (they are answered 500 after 3 s)";

/// Where a step is applied: inside the request's own callback (its return value continues
/// or pauses it) or later, from a tick or a callout answer (the host is asked to resume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    InCallback,
    Later,
}

/// Per-worker, per-configuration state shared by the root context and its HTTP contexts.
pub struct Worker {
    pub plugin: Rc<Plugin>,
    registry: RefCell<Registry>,
    rng: RefCell<SplitMix64>,
    /// A body callback has arrived for a held request on this worker: the plugin config has
    /// `allow_on_headers_stop_iteration`, so no body guard is needed any more.
    body_callbacks_work: Cell<bool>,
    /// The `queue` fallback's queues (this worker's memory) and their deliveries.
    queues: RefCell<Queues>,
    /// The missing-`allow_on_headers_stop_iteration` line was logged (once per worker).
    body_guard_logged: Cell<bool>,
    /// The root context's id (queue deliveries are sent from it, not from a request).
    root_id: ContextId,
    /// Backend calls no request waits for, sent from the root context at its next tick.
    background: RefCell<Vec<BackgroundCall>>,
}

impl Worker {
    pub fn new(plugin: Rc<Plugin>, rng: SplitMix64, root_id: ContextId) -> Self {
        Self {
            queues: RefCell::new(Queues::for_plugin(&plugin)),
            plugin,
            registry: RefCell::new(Registry::default()),
            rng: RefCell::new(rng),
            body_callbacks_work: Cell::new(false),
            body_guard_logged: Cell::new(false),
            root_id,
            background: RefCell::new(Vec::new()),
        }
    }

    /// A fresh owner id for a new request's [`Stream`].
    pub fn next_owner_id(&self) -> u64 {
        self.rng.borrow_mut().next_u64()
    }

    /// Runs `f` with the environment a pipeline step sees, then takes the background calls
    /// it asked for (sent at the root's next tick).
    fn with_env<R>(
        &self,
        host: &mut impl Host,
        now: UnixNanos,
        f: impl FnOnce(&mut Env<'_>) -> R,
    ) -> R {
        let (result, calls) = {
            let (store, metrics) = host.env_parts();
            let mut rng = self.rng.borrow_mut();
            let mut env = Env::new(&self.plugin, store, now, &mut *rng, metrics);
            let result = f(&mut env);
            (result, std::mem::take(&mut env.background))
        };
        if !calls.is_empty() {
            self.background.borrow_mut().extend(calls);
            self.wake_root(host, now);
        }
        result
    }

    /// The earliest timer deadline of this worker (tests drive the clock with it).
    pub fn next_deadline(&self) -> Option<UnixNanos> {
        self.registry.borrow().next_deadline()
    }

    /// The latest timer deadline (tests check that no wait is absurdly long).
    pub fn last_deadline(&self) -> Option<UnixNanos> {
        self.registry.borrow().last_deadline()
    }

    /// Whether levee holds request `id` paused (tests check that a held request always has
    /// something to wake it: a timer, a callout, a body still to come).
    pub fn holds(&self, id: ContextId) -> bool {
        self.registry.borrow().is_held(id)
    }

    /// Whether a callout of request `id` is outstanding.
    pub fn awaits_callout(&self, id: ContextId) -> bool {
        self.registry.borrow().has_callout(id)
    }

    /// Whether request `id` has a timer.
    pub fn has_timer(&self, id: ContextId) -> bool {
        self.registry.borrow().has_timer(id)
    }

    /// Fires every due timer: the stream's flow decides, the result is applied to the
    /// (now effective) stream. Then sends due queue deliveries.
    pub fn on_tick(&self, host: &mut impl Host) {
        let now = host.now();
        let fired = self.registry.borrow_mut().pop_due(now);
        for f in fired {
            let stream = self.registry.borrow().stream(f.context);
            let Some(stream) = stream else { continue };
            if !host.set_effective_context(f.context) {
                self.registry.borrow_mut().forget(host, f.context, now);
                continue;
            }
            let step = self.with_env(host, now, |env| {
                stream.borrow_mut().flow.on_timer(env, f.purpose)
            });
            if f.purpose == TimerPurpose::BodyGuard
                && matches!(step, Some(Step::Reply(_)))
                && !self.body_guard_logged.replace(true)
            {
                host.log_critical(NO_BODY_CALLBACKS);
            }
            if let Some(step) = step {
                self.apply(host, f.context, &stream, step, now, Moment::Later);
            }
            self.schedule_flow_timer(host, f.context, &stream, now);
        }
        self.deliver_queued(host, now);
        self.registry.borrow_mut().rearm_after_tick(host, now);
    }

    /// Sends due queue deliveries, etcd completions due again and background calls from the
    /// root context, and schedules the next wake-up.
    fn deliver_queued(&self, host: &mut impl Host, now: UnixNanos) {
        {
            let mut queues = self.queues.borrow_mut();
            if queues.next_wake().is_some_and(|w| w <= now) {
                host.set_effective_context(self.root_id);
                let mut rng = self.rng.borrow_mut();
                queues.deliver_due(host, &self.plugin, &mut *rng, now);
            }
        }
        self.write_queued_endings(host, now);
        if self
            .plugin
            .etcd_records
            .as_ref()
            .and_then(|r| r.next_retry())
            .is_some_and(|at| at <= now)
        {
            self.with_env(host, now, crate::pipeline::etcd_records::retry_due);
        }
        self.send_background(host, now);
        self.wake_root(host, now);
    }

    /// Puts a request on its upstream's queue and continues its flow with the result.
    fn enqueue(
        &self,
        host: &mut impl Host,
        stream: &Rc<RefCell<Stream>>,
        e: Enqueue,
        now: UnixNanos,
    ) -> Step {
        let result = {
            let mut rng = self.rng.borrow_mut();
            self.queues.borrow_mut().enqueue(e, &mut *rng, now)
        };
        let step = self.with_env(host, now, |env| {
            stream.borrow_mut().flow.on_enqueued(env, result)
        });
        // After the flow: a key held in etcd, handed to the worker, is renewed on its timer.
        self.wake_root(host, now);
        step
    }

    /// Schedules the timer the flow asked for without pausing (lock renewal), if any.
    fn schedule_flow_timer(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        now: UnixNanos,
    ) {
        let timer = stream.borrow_mut().flow.take_timer();
        if let Some((at, purpose)) = timer {
            self.registry
                .borrow_mut()
                .schedule(host, id, stream, at, purpose, now);
        }
    }

    /// The one mapping from a pipeline step to what the host does. Inside the request's
    /// callback, the returned [`Action`] continues or pauses it; later, the host is asked to
    /// resume it instead.
    fn apply(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        step: Step,
        now: UnixNanos,
        moment: Moment,
    ) -> Action {
        match step {
            Step::Continue => {
                self.registry.borrow_mut().unhold(host, id);
                let headers = stream.borrow_mut().flow.take_request_headers();
                for (name, value) in &headers {
                    host.set_request_header(name, value);
                }
                if moment == Moment::Later {
                    host.resume_request();
                }
                Action::Continue
            }
            Step::Reply(r) => {
                self.registry.borrow_mut().unhold(host, id);
                let grpc = stream.borrow_mut().grpc(host);
                host.send_local_reply(&r, grpc);
                Action::Pause
            }
            Step::Await(Await::Timer { wake_at, purpose }) => {
                let mut registry = self.registry.borrow_mut();
                registry.hold(host, id, stream);
                registry.schedule(host, id, stream, wake_at, purpose, now);
                Action::Pause
            }
            Step::Await(Await::Body) => {
                let mut registry = self.registry.borrow_mut();
                registry.hold(host, id, stream);
                if !self.body_callbacks_work.get() {
                    let at = now.saturating_add(BODY_GUARD_NS);
                    registry.schedule(host, id, stream, at, TimerPurpose::BodyGuard, now);
                }
                Action::Pause
            }
            Step::Await(Await::Callout(req)) => {
                self.dispatch(host, id, stream, req, now);
                Action::Pause
            }
            Step::Await(Await::Remote(call)) => {
                self.registry.borrow_mut().hold(host, id, stream);
                match self.call_remote(host, id, stream, call, now) {
                    Some(next) => self.apply(host, id, stream, next, now, moment),
                    None => Action::Pause,
                }
            }
            Step::Await(Await::Enqueue(e)) => {
                let next = self.enqueue(host, stream, e, now);
                self.apply(host, id, stream, next, now, moment)
            }
        }
    }

    /// Sends a callout for a held stream; a refused dispatch is fed back as a reset.
    fn dispatch(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        req: crate::forward::CalloutRequest,
        now: UnixNanos,
    ) {
        self.registry.borrow_mut().hold(host, id, stream);
        // Values are borrowed as they are (valid UTF-8 in practice); only others are copied.
        let values: Vec<std::borrow::Cow<'_, str>> = req
            .headers
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v))
            .collect();
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .zip(&values)
            .map(|((k, _), v)| (k.as_str(), v.as_ref()))
            .collect();
        let call = Callout {
            cluster: &req.cluster,
            headers,
            body: (!req.body.is_empty()).then_some(req.body.as_slice()),
            timeout: std::time::Duration::from_millis(req.timeout_ms()),
        };
        match host.dispatch_callout(call) {
            Some(token) => self.registry.borrow_mut().add_callout(token, id),
            None => {
                let step = self.with_env(host, now, |env| {
                    stream.borrow_mut().flow.on_dispatch_failed(env)
                });
                if let Some(step) = step {
                    self.apply(host, id, stream, step, now, Moment::Later);
                }
            }
        }
    }

    /// A callout finished (delivered to the HTTP context that sent it, or to the root when it
    /// was sent from a timer): read its answer, then continue the request it belongs to.
    pub fn on_callout_response(
        &self,
        host: &mut impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let now = host.now();
        let headers = (num_headers > 0).then(|| host.callout_headers()).flatten();
        let body = host.callout_body(body_size);
        let handled = {
            let mut rng = self.rng.borrow_mut();
            self.queues.borrow_mut().on_response(
                host,
                &self.plugin,
                &mut *rng,
                token,
                queues::CalloutReply {
                    headers: headers.as_deref(),
                    body: &body,
                },
                now,
            )
        };
        if handled {
            self.write_queued_endings(host, now);
            self.wake_root(host, now);
            return;
        }
        let id = self.registry.borrow_mut().take_callout(token);
        let Some(id) = id else { return };
        let stream = self.registry.borrow().stream(id);
        let Some(stream) = stream else { return };
        if !host.set_effective_context(id) {
            self.registry.borrow_mut().forget(host, id, now);
            return;
        }
        let step = self.with_env(host, now, |env| {
            stream
                .borrow_mut()
                .flow
                .on_callout_response(env, headers, body)
        });
        if let Some(step) = step {
            self.apply(host, id, &stream, step, now, Moment::Later);
        }
        self.schedule_flow_timer(host, id, &stream, now);
    }
}
