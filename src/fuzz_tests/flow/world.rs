//! The simulated Envoy worker: the REAL [`Worker`] behind a [`FakeHost`], with a virtual
//! clock, and what the host was asked to do read back as each request's phase — with the
//! checks on every step.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proptest::prelude::*;

use crate::pipeline::Plugin;
use crate::random::SplitMix64;
use crate::request::fake::FakeRequest;
use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as SEC};
use crate::timer_queue::ContextId;
use crate::worker::fake_host::{Call, FakeHost};
use crate::worker::{Action, Stream, Worker};

use super::{MAX_WAIT_NS, T0};

/// Where an upstream answer came from (for the stale-cache check).
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) user: Option<Vec<u8>>,
    pub(super) vary_user: bool,
}

/// The root context's id; request `i` has context `FIRST_REQUEST + i`.
pub(super) const ROOT: ContextId = 1;
const FIRST_REQUEST: ContextId = 2;

pub(super) fn ctx(i: usize) -> ContextId {
    FIRST_REQUEST + i as ContextId
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::fuzz_tests) enum Phase {
    /// Paused by levee (timer, body, or key wait).
    Held,
    /// A callout is outstanding.
    Calling,
    /// Passed to the router; the upstream answer has not been delivered yet.
    Forwarded,
    /// levee answered it.
    Answered,
    /// The stream ended (`on_done` ran).
    Done,
}

pub(super) struct Sim {
    /// The request's state, owned by its HTTP context (here: by the simulation).
    pub(super) stream: Rc<RefCell<Stream>>,
    pub(super) req: FakeRequest,
    pub(super) body: Vec<u8>,
    /// Body bytes the client has sent so far (Envoy buffers them while levee holds).
    pub(super) sent: usize,
    pub(super) phase: Phase,
    /// The normalised idempotency key (with its scope), when the request is a keyed one.
    pub(super) key: Option<(Vec<u8>, String)>,
    pub(super) executing: bool,
    /// It reached the upstream at least once.
    pub(super) executed: bool,
    /// The cluster and token of its outstanding callout.
    pub(super) cluster: String,
    pub(super) callout: Option<u32>,
    /// Router mode: a fallback holds the upstream's response headers back.
    pub(super) response_paused: bool,
}

/// The simulated worker: the real one, its fake host, the requests, and what the checks
/// remember.
pub(super) struct World<'a> {
    pub(super) plugin: &'a Plugin,
    pub(super) worker: Worker,
    pub(super) host: FakeHost<'a>,
    /// The traffic's randomness (the worker has its own).
    pub(super) rng: SplitMix64,
    pub(super) sims: Vec<Sim>,
    /// Queue deliveries the root context sent and nobody answered yet.
    pub(super) deliveries: Vec<u32>,
    /// The plugin config lacks `allow_on_headers_stop_iteration`: no body callback ever comes
    /// while levee holds a request.
    pub(super) no_body_callbacks: bool,
    pub(super) faults: bool,
    /// Per key: until when its stored answer must be replayed, not executed again.
    pub(super) stored_until: HashMap<(Vec<u8>, String), u64>,
    /// Every upstream answer handed to levee, by the id its body starts with (`resp-<id>;`):
    /// the request it answered, and whether it varied on `x-user`.
    pub(super) answers: Vec<Origin>,
}

/// A [`FakeRequest`] that also lists all its headers, as the host's attributes do (the
/// fake's default `all_headers` is empty, which would hide every `Vary` value and every
/// header a callout or secondary copies).
pub(super) struct Whole<'a>(pub(super) &'a FakeRequest);

impl crate::request::RequestAttributes for Whole<'_> {
    fn method(&self) -> &str {
        self.0.method()
    }
    fn path_and_query(&self) -> &str {
        self.0.path_and_query()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.header(name)
    }
    fn header_lines(&self, name: &str) -> usize {
        self.0.header_lines(name)
    }
    fn source_address(&self) -> Option<&[u8]> {
        self.0.source_address()
    }
    fn route_name(&self) -> Option<&str> {
        self.0.route_name()
    }
    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        self.0.metadata(filter, path)
    }
    fn all_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = vec![
            (":method".to_string(), self.0.method.clone().into_bytes()),
            (":path".to_string(), self.0.path.clone().into_bytes()),
            (":authority".to_string(), b"sim".to_vec()),
        ];
        all.extend(self.0.headers.iter().cloned());
        all
    }
}

pub(super) fn tracing() -> bool {
    std::env::var_os("FUZZ_TRACE").is_some()
}

impl<'a> World<'a> {
    pub(super) fn new(
        plugin: &'a Rc<Plugin>,
        store: &'a crate::store::MemoryStore,
        mut rng: SplitMix64,
        faults: bool,
        no_body_callbacks: bool,
    ) -> Self {
        use crate::random::RandomSource;
        let now = T0 + rng.below(SEC);
        let worker = Worker::new(Rc::clone(plugin), SplitMix64::seeded(rng.next_u64()), ROOT);
        Self {
            plugin,
            worker,
            host: FakeHost::new(store, now),
            rng,
            sims: Vec::new(),
            deliveries: Vec::new(),
            no_body_callbacks,
            faults,
            stored_until: HashMap::new(),
            answers: Vec::new(),
        }
    }

    pub(super) fn trace(&self, i: usize, what: &str) {
        if tracing() {
            let s = &self.sims[i];
            println!(
                "{:>6} ms  #{i:<3} {} {} key={:?}: {what}",
                (self.host.now - T0) / MS,
                s.req.method,
                s.req.path,
                s.key.as_ref().map(|k| (&k.1, k.0.len()))
            );
        }
    }

    pub(super) fn has_timer(&self, i: usize) -> bool {
        self.worker.has_timer(ctx(i))
    }

    /// After a request's own callback: what the host was asked, then what the returned
    /// action means for a request that nothing else moved.
    pub(super) fn after_callback(&mut self, i: usize, action: Action) -> Result<(), TestCaseError> {
        if self.settle()?.contains(&i) {
            return Ok(());
        }
        match action {
            Action::Continue if self.sims[i].phase == Phase::Held => {
                self.sims[i].phase = Phase::Forwarded;
                self.start_execution(i)?;
            }
            Action::Continue => {}
            Action::Pause => self.sims[i].phase = self.waiting_phase(i),
        }
        Ok(())
    }

    /// A held request waits on its callout or on something else.
    pub(super) fn waiting_phase(&self, i: usize) -> Phase {
        if self.worker.awaits_callout(ctx(i)) {
            Phase::Calling
        } else {
            Phase::Held
        }
    }

    /// Reads back every host call since the last settle: replies, resumes and callouts move
    /// their request's phase (and are checked). Returns the requests that moved.
    pub(super) fn settle(&mut self) -> Result<Vec<usize>, TestCaseError> {
        let mut moved = Vec::new();
        for (id, call) in self.host.take_calls() {
            if id == ROOT {
                if let Call::Dispatch {
                    token, timeout_ms, ..
                } = call
                {
                    prop_assert!(timeout_ms > 0, "a delivery without a timeout");
                    self.deliveries.push(token);
                }
                continue;
            }
            let i = (id - FIRST_REQUEST) as usize;
            prop_assert!(i < self.sims.len(), "a host call on unknown context {id}");
            match call {
                Call::Resume => self.resumed(i)?,
                Call::Reply { reply, .. } => {
                    self.trace(i, &format!("Reply {} {}", reply.status, reply.details));
                    self.check_reply(i, reply.status, reply.details, &reply.headers)?;
                    if reply.details == "levee_fallback_stale_cache" {
                        self.check_stale_copy(i, &reply.body)?;
                    }
                    self.sims[i].phase = Phase::Answered;
                    let stored_kind = reply.details == "levee_callout";
                    self.end_execution(i, Some(reply.status), stored_kind);
                }
                Call::Dispatch {
                    token,
                    cluster,
                    headers,
                    timeout_ms,
                } => {
                    self.trace(i, &format!("Dispatch to {cluster}"));
                    prop_assert!(timeout_ms > 0, "an attempt without a timeout");
                    prop_assert!(headers.iter().any(|(n, _)| n == ":path"));
                    self.sims[i].phase = Phase::Calling;
                    self.sims[i].callout = Some(token);
                    self.start_execution(i)?;
                    self.sims[i].cluster = cluster;
                }
                Call::DispatchRefused
                | Call::SetResponseHeader(..)
                | Call::AddResponseHeader(..)
                | Call::SetRequestHeader(..)
                | Call::Log(_) => continue,
                Call::Grpc { .. } | Call::GrpcRefused => {
                    // The fuzzed configs name no backend: nothing may call one.
                    return Err(TestCaseError::fail(format!(
                        "a backend call from request {i}"
                    )));
                }
            }
            moved.push(i);
        }
        self.check_timers()?;
        Ok(moved)
    }

    fn resumed(&mut self, i: usize) -> Result<(), TestCaseError> {
        self.trace(i, "Resume");
        // The host resumes the *request* (`resume_http_request`): a paused response would
        // never move on and the client would hang.
        prop_assert!(
            !self.sims[i].response_paused,
            "request {i}: resumed while its response is paused: the client hangs"
        );
        self.sims[i].phase = Phase::Forwarded;
        self.start_execution(i)
    }

    /// No wake-up in the past, none absurdly far away.
    fn check_timers(&self) -> Result<(), TestCaseError> {
        let now = self.host.now;
        if let Some(first) = self.worker.next_deadline() {
            prop_assert!(first >= now.saturating_sub(1), "a wake-up in the past");
        }
        if let Some(last) = self.worker.last_deadline() {
            prop_assert!(
                last <= now + MAX_WAIT_NS,
                "a timer {} s away",
                (last - now) / SEC
            );
        }
        Ok(())
    }
}
