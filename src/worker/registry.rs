//! What one worker remembers about its requests between callbacks: their timers, which of
//! them levee holds paused, and which request each outstanding callout belongs to.
//!
//! The root context owns the only tick timer, but a paused request's state lives in its
//! HTTP context, which the host owns. So each request keeps its state in an
//! `Rc<RefCell<Stream>>` and is registered here by a `Weak` while it has timers or callouts;
//! when its client goes away, [`Registry::forget`] cancels its timers, so nothing is left
//! behind.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use crate::time::UnixNanos;
use crate::timer_queue::{tick_period_ms, ContextId, Fired, TimerPurpose, TimerQueue};

use super::host::Host;
use super::stream::Stream;

/// The timer-queue owner id used for the root's own wake-ups (queue deliveries).
pub(super) const ROOT_WAKE: ContextId = 0;

/// Who a gRPC call's answer goes to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    /// The request that awaits it.
    Request(ContextId),
    /// A background call: its handler, with its tag.
    Root {
        tag: u64,
        on_answer: crate::pipeline::flow::OnBackgroundAnswer,
    },
}

/// A gRPC call in flight: whose it is, and what its answer is measured against.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingCall {
    pub(super) owner: Owner,
    pub(super) backend: usize,
    pub(super) sent_at: UnixNanos,
    pub(super) timeout_ns: u64,
    pub(super) ticket: crate::breaker::Ticket,
    /// The breaker was quiet at admission (a success needs no shared-data write).
    pub(super) quiet: bool,
}

#[derive(Debug, Default)]
pub(super) struct Registry {
    timers: TimerQueue,
    streams: HashMap<ContextId, Weak<RefCell<Stream>>>,
    /// Outstanding callouts: token → the request they belong to.
    callouts: HashMap<u32, ContextId>,
    held: HashSet<ContextId>,
    /// Outstanding gRPC calls: token → what the answer needs (their own token space).
    grpc_calls: HashMap<u32, PendingCall>,
    /// The tick period last asked of the host, to avoid redundant host calls.
    armed_ms: Option<u64>,
}

impl Registry {
    /// Calls the stream back at `at` (it may or may not be paused).
    pub(super) fn schedule(
        &mut self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        at: UnixNanos,
        purpose: TimerPurpose,
        now: UnixNanos,
    ) {
        self.streams.insert(id, Rc::downgrade(stream));
        self.timers.schedule(id, purpose, at);
        self.rearm(host, now);
    }

    /// Wakes the root at `at` (queue deliveries), replacing an earlier wake-up.
    pub(super) fn wake_root_at(
        &mut self,
        host: &mut impl Host,
        at: Option<UnixNanos>,
        now: UnixNanos,
    ) {
        self.timers.cancel(ROOT_WAKE, TimerPurpose::Poll);
        if let Some(at) = at {
            self.timers.schedule(ROOT_WAKE, TimerPurpose::Poll, at);
        }
        self.rearm(host, now);
    }

    /// Marks the stream as paused by levee (for the held-requests gauge).
    pub(super) fn hold(
        &mut self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
    ) {
        self.streams.insert(id, Rc::downgrade(stream));
        if self.held.insert(id) {
            host.add_held_requests(1);
        }
    }

    pub(super) fn unhold(&mut self, host: &mut impl Host, id: ContextId) {
        // Most requests were never held: skip hashing the id into an empty set.
        if !self.held.is_empty() && self.held.remove(&id) {
            host.add_held_requests(-1);
        }
    }

    /// Whether anything is kept for stream `id` (timers, callouts, the held gauge).
    pub(super) fn knows(&self, id: ContextId) -> bool {
        self.streams.contains_key(&id) || self.held.contains(&id)
    }

    /// The stream is gone: cancel its timers and forget it.
    pub(super) fn forget(&mut self, host: &mut impl Host, id: ContextId, now: UnixNanos) {
        self.timers.cancel_all(id);
        if !self.callouts.is_empty() {
            self.callouts.retain(|_, owner| *owner != id);
        }
        if !self.grpc_calls.is_empty() {
            self.grpc_calls
                .retain(|_, call| !matches!(call.owner, Owner::Request(o) if o == id));
        }
        self.streams.remove(&id);
        self.unhold(host, id);
        self.rearm(host, now);
    }

    pub(super) fn add_callout(&mut self, token: u32, id: ContextId) {
        self.callouts.insert(token, id);
    }

    /// The request a callout belongs to, forgetting the callout.
    pub(super) fn take_callout(&mut self, token: u32) -> Option<ContextId> {
        self.callouts.remove(&token)
    }

    pub(super) fn add_grpc_call(&mut self, token: u32, call: PendingCall) {
        self.grpc_calls.insert(token, call);
    }

    /// The gRPC call `token` belongs to, forgetting it.
    pub(super) fn take_grpc_call(&mut self, token: u32) -> Option<PendingCall> {
        self.grpc_calls.remove(&token)
    }

    pub(super) fn has_grpc_call(&self, id: ContextId) -> bool {
        self.grpc_calls
            .values()
            .any(|c| matches!(c.owner, Owner::Request(o) if o == id))
    }

    pub(super) fn stream(&self, id: ContextId) -> Option<Rc<RefCell<Stream>>> {
        self.streams.get(&id).and_then(Weak::upgrade)
    }

    pub(super) fn pop_due(&mut self, now: UnixNanos) -> Vec<Fired> {
        self.timers.pop_due(now)
    }

    pub(super) fn next_deadline(&self) -> Option<UnixNanos> {
        self.timers.next_deadline()
    }

    pub(super) fn last_deadline(&self) -> Option<UnixNanos> {
        self.timers.last_deadline()
    }

    pub(super) fn is_held(&self, id: ContextId) -> bool {
        self.held.contains(&id)
    }

    pub(super) fn has_callout(&self, id: ContextId) -> bool {
        self.callouts.values().any(|owner| *owner == id)
    }

    pub(super) fn has_timer(&self, id: ContextId) -> bool {
        self.timers.has_owner(id)
    }

    /// Asks the host again for a tick at the earliest deadline: after a tick, the host keeps
    /// its old period otherwise.
    pub(super) fn rearm_after_tick(&mut self, host: &mut impl Host, now: UnixNanos) {
        self.armed_ms = None;
        self.rearm(host, now);
    }

    fn rearm(&mut self, host: &mut impl Host, now: UnixNanos) {
        let want = tick_period_ms(self.timers.next_deadline(), now);
        if want != self.armed_ms {
            host.set_tick_period(want);
            self.armed_ms = want;
        }
    }
}
