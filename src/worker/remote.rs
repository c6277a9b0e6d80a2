//! Backend calls: the worker's side of [`Await::Remote`] — the backend's breaker, the gRPC
//! dispatch, and the answer routed back to the request that asked, like HTTP callouts.
//!
//! A call never leaves a request waiting on something that cannot answer: an open breaker or
//! a dispatch Envoy refuses (unknown cluster) is answered at once with UNAVAILABLE, and a
//! request whose client went away has its tokens forgotten (Envoy cancels its calls).
//!
//! A request's call resumes that request. A background call (one no request waits for, asked
//! with [`crate::pipeline::Env::call_in_background`]) is sent from the root context at its next
//! tick, so its answer arrives whether or not the request that asked still lives, and goes to
//! the handler the call names.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::breaker::backend::{admit_call, record_call};
use crate::breaker::Admission;
use crate::metrics::{BackendEvent, Event};
use crate::pipeline::flow::{Answer, BackgroundCall, RemoteAnswer, RemoteCall, Step};
use crate::problem::GRPC_RESOURCE_EXHAUSTED;
use crate::time::{UnixNanos, NANOS_PER_MILLI};
use crate::timer_queue::ContextId;

use super::host::{GrpcCall, Host};
use super::registry::{Owner, PendingCall};
use super::stream::Stream;
use super::{Moment, Worker};

/// How a finished call is counted.
fn result_of(answer: &RemoteAnswer, timeout_ns: u64) -> BackendEvent {
    if answer.is_ok() {
        BackendEvent::CallOk
    } else if is_verdict(answer.status) {
        BackendEvent::CallRefused
    } else if answer.status == GRPC_RESOURCE_EXHAUSTED {
        // etcd's "database space exceeded" (or "too many requests"). Counted apart, and not a
        // failure for the breaker: the backend answered at once, and a full etcd still serves
        // the reads that let stored answers replay.
        BackendEvent::CallExhausted
    } else if answer.elapsed_ns >= timeout_ns {
        BackendEvent::CallTimeout
    } else {
        BackendEvent::CallError
    }
}

/// A status by which the backend answered the request itself (a bad argument, a failed
/// precondition such as etcd's "lease already exists"): the backend is reachable, so its
/// breaker does not count it as a failure.
fn is_verdict(status: u32) -> bool {
    // INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE.
    matches!(status, 3 | 5 | 6 | 9 | 11)
}

impl Worker {
    /// Sends `call` for held request `id` (`None`: sent, the answer resumes it later), or
    /// answers it at once (open breaker, refused dispatch) with what the request does next.
    pub(super) fn call_remote(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        call: RemoteCall,
        now: UnixNanos,
    ) -> Option<Step> {
        let answer = self.send(host, Owner::Request(id), call, now)?;
        self.answer_remote(host, stream, answer, now)
    }

    /// Sends the background calls asked for so far (from the root context, at its tick);
    /// one answered at once goes to its handler now.
    pub(super) fn send_background(&self, host: &mut impl Host, now: UnixNanos) {
        let calls = std::mem::take(&mut *self.background.borrow_mut());
        if calls.is_empty() {
            return;
        }
        host.set_effective_context(self.root_id);
        for BackgroundCall {
            call,
            tag,
            on_answer,
        } in calls
        {
            let owner = Owner::Root { tag, on_answer };
            if let Some(answer) = self.send(host, owner, call, now) {
                self.with_env(host, now, |env| on_answer(env, tag, answer));
            }
        }
    }

    /// The root's next wake-up: the earliest queue delivery or postponed etcd completion, or
    /// now for background calls.
    pub(super) fn wake_root(&self, host: &mut impl Host, now: UnixNanos) {
        let records = self.plugin.etcd_records.as_ref();
        let queued = match (
            self.queues.borrow().next_wake(),
            records.and_then(|r| r.next_retry()),
        ) {
            (Some(q), Some(r)) => Some(q.min(r)),
            (q, r) => q.or(r),
        };
        let background = (!self.background.borrow().is_empty()).then_some(now);
        let wake = match (queued, background) {
            (Some(q), Some(b)) => Some(q.min(b)),
            (q, b) => q.or(b),
        };
        self.registry.borrow_mut().wake_root_at(host, wake, now);
    }

    /// Sends `call` for `owner` (`None`: sent) or returns the answer it gets at once.
    fn send(
        &self,
        host: &mut impl Host,
        owner: Owner,
        call: RemoteCall,
        now: UnixNanos,
    ) -> Option<RemoteAnswer> {
        let Some(backend) = self.plugin.config.backends.get(call.backend) else {
            // Validated configs never name a missing backend; answer rather than hang.
            return Some(RemoteAnswer::unavailable());
        };
        let timeout = Duration::from_millis(call.timeout_ms);
        let admitted = self.with_env(host, now, |env| {
            admit_call(
                &backend.name,
                call.backend,
                timeout,
                env.store,
                now,
                env.metrics,
            )
        });
        let ticket = match admitted.admission {
            Admission::Allow(t) | Admission::Probe { ticket: t, .. } => t,
            Admission::Reject { .. } => {
                self.count(host, call.backend, BackendEvent::CallRejectedOpen, now);
                return Some(RemoteAnswer::unavailable());
            }
        };
        let sent = host.dispatch_grpc_call(GrpcCall {
            cluster: backend.cluster(),
            service: call.service,
            method: call.method,
            message: &call.message,
            timeout,
        });
        let pending = PendingCall {
            owner,
            backend: call.backend,
            sent_at: now,
            timeout_ns: call.timeout_ms.saturating_mul(NANOS_PER_MILLI),
            ticket,
            quiet: admitted.quiet,
        };
        match sent {
            Ok(token) => {
                self.registry.borrow_mut().add_grpc_call(token, pending);
                None
            }
            Err(_) => {
                log::warn!(
                    "levee: dispatch_grpc_call to cluster \"{}\" refused by Envoy (is the cluster defined?)",
                    backend.cluster()
                );
                let answer = RemoteAnswer::unavailable();
                self.finish(host, pending, &answer, now);
                Some(answer)
            }
        }
    }

    /// A gRPC answer arrived (on the request's context, or the root's): measure it, feed the
    /// backend's breaker and metrics, then resume the request it belongs to.
    pub fn on_grpc_response(&self, host: &mut impl Host, token: u32, status: u32, size: usize) {
        let Some(pending) = self.registry.borrow_mut().take_grpc_call(token) else {
            return; // its request went away meanwhile
        };
        let now = host.now();
        let message = if status == RemoteAnswer::OK && size > 0 {
            host.grpc_response_body(size)
        } else {
            Vec::new()
        };
        let answer = RemoteAnswer {
            status,
            message,
            elapsed_ns: now.saturating_sub(pending.sent_at),
        };
        self.finish(host, pending, &answer, now);
        let id = match pending.owner {
            Owner::Request(id) => id,
            Owner::Root { tag, on_answer } => {
                self.with_env(host, now, |env| on_answer(env, tag, answer));
                // The handler may have postponed something to a later wake-up (a completion
                // etcd refused is sent again on the root's timer).
                self.wake_root(host, now);
                return;
            }
        };
        let stream = self.registry.borrow().stream(id);
        let Some(stream) = stream else { return };
        if !host.set_effective_context(id) {
            self.registry.borrow_mut().forget(host, id, now);
            return;
        }
        if let Some(step) = self.answer_remote(host, &stream, answer, now) {
            self.apply(host, id, &stream, step, now, Moment::Later);
        }
        self.schedule_flow_timer(host, id, &stream, now);
    }

    /// Counts a finished call and records it with the backend's breaker.
    fn finish(&self, host: &mut impl Host, p: PendingCall, answer: &RemoteAnswer, now: UnixNanos) {
        let result = result_of(answer, p.timeout_ns);
        let Some(backend) = self.plugin.config.backends.get(p.backend) else {
            return;
        };
        self.count(host, p.backend, result, now);
        let failed = !matches!(
            result,
            BackendEvent::CallOk | BackendEvent::CallRefused | BackendEvent::CallExhausted
        );
        self.with_env(host, now, |env| {
            env.metrics
                .backend_latency(p.backend, answer.elapsed_ns / NANOS_PER_MILLI);
            record_call(
                &backend.name,
                p.backend,
                p.ticket,
                p.quiet,
                failed,
                env.store,
                now,
                env.metrics,
            );
        });
    }

    fn count(&self, host: &mut impl Host, backend: usize, what: BackendEvent, now: UnixNanos) {
        self.with_env(host, now, |env| {
            env.metrics.count(Event::Backend { backend, what })
        });
    }

    /// Hands `answer` to the request's flow.
    fn answer_remote(
        &self,
        host: &mut impl Host,
        stream: &Rc<RefCell<Stream>>,
        answer: RemoteAnswer,
        now: UnixNanos,
    ) -> Option<Step> {
        self.with_env(host, now, |env| {
            stream.borrow_mut().flow.resume(env, Answer::Remote(answer))
        })
    }

    /// Whether a gRPC call of request `id` is outstanding.
    pub fn awaits_remote(&self, id: ContextId) -> bool {
        self.registry.borrow().has_grpc_call(id)
    }
}
