//! The simulated Envoy worker that drives [`RequestFlow`] the way `src/host` does: one
//! method per callback, timers fired in order on a virtual clock, bodies that arrive at the
//! client's pace, upstream answers, disconnects — and the checks on every step.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use crate::fallback::queue::{QueueFull, QueueId};
use crate::metrics::{Event, GlobalEvent, IdempotencyEvent, Recorder};
use crate::pipeline::flow::{Await, RequestFlow, Step};
use crate::pipeline::{Env, Plugin};
use crate::random::{RandomSource, SplitMix64};
use crate::request::fake::FakeRequest;
use crate::store::MemoryStore;
use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as SEC};
use crate::timer_queue::TimerPurpose;

use super::{
    BODY_GUARD_NS, MAX_WAIT_NS, ROUTER_FALLBACK_MODE_FIXED, SECONDARY_KEEPS_KEY_FIXED,
    SHAPED_BODY_FIXED, T0,
};

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
    pub(super) flow: RequestFlow,
    pub(super) req: FakeRequest,
    pub(super) body: Vec<u8>,
    /// Body bytes the client has sent so far (Envoy buffers them while levee holds).
    pub(super) sent: usize,
    pub(super) phase: Phase,
    /// The normalised idempotency key (with its scope), when the request is a keyed one.
    pub(super) key: Option<(Vec<u8>, String)>,
    pub(super) executing: bool,
    /// The shaper held it (a leaky-bucket delay).
    pub(super) shaped: bool,
    /// It reached the upstream at least once.
    pub(super) executed: bool,
    /// The cluster of its outstanding callout.
    pub(super) cluster: String,
    /// Router mode: a fallback holds the upstream's response headers back.
    pub(super) response_paused: bool,
}

/// The simulated worker: clock, store, timers, requests, and what the checks remember.
pub(super) struct World<'a> {
    pub(super) plugin: &'a Plugin,
    pub(super) store: &'a MemoryStore,
    pub(super) now: u64,
    pub(super) rng: SplitMix64,
    pub(super) metrics: Recorder,
    pub(super) sims: Vec<Sim>,
    pub(super) timers: BTreeSet<(u64, u64, usize, u8)>,
    pub(super) timer_seq: u64,
    /// The worker has seen a body callback (the host's `body_callbacks_work`).
    pub(super) body_callbacks_work: bool,
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

fn purpose_code(p: TimerPurpose) -> u8 {
    match p {
        TimerPurpose::Release => 0,
        TimerPurpose::Backoff => 1,
        TimerPurpose::BodyGuard => 2,
        TimerPurpose::Poll => 3,
        TimerPurpose::Renew => 4,
    }
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
    fn source_address(&self) -> Option<&str> {
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

/// Where an upstream answer came from (for the stale-cache check).
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) user: Option<Vec<u8>>,
    pub(super) vary_user: bool,
}

pub(super) fn purpose_of(code: u8) -> TimerPurpose {
    match code {
        0 => TimerPurpose::Release,
        1 => TimerPurpose::Backoff,
        2 => TimerPurpose::BodyGuard,
        3 => TimerPurpose::Poll,
        _ => TimerPurpose::Renew,
    }
}

pub(super) fn tracing() -> bool {
    std::env::var_os("FUZZ_TRACE").is_some()
}

impl World<'_> {
    pub(super) fn trace(&self, i: usize, what: &str) {
        if tracing() {
            let s = &self.sims[i];
            println!(
                "{:>6} ms  #{i:<3} {} {} key={:?}: {what}",
                (self.now - T0) / MS,
                s.req.method,
                s.req.path,
                s.key.as_ref().map(|k| (&k.1, k.0.len()))
            );
        }
    }

    pub(super) fn schedule(
        &mut self,
        i: usize,
        at: u64,
        purpose: TimerPurpose,
    ) -> Result<(), TestCaseError> {
        prop_assert!(
            at <= self.now + MAX_WAIT_NS,
            "a timer {} s away",
            (at - self.now) / SEC
        );
        self.timer_seq += 1;
        self.timers
            .insert((at, self.timer_seq, i, purpose_code(purpose)));
        Ok(())
    }

    pub(super) fn has_timer(&self, i: usize) -> bool {
        self.timers.iter().any(|t| t.2 == i)
    }

    /// What the host does with a step (`apply_now` / `apply_later`), plus the checks.
    pub(super) fn apply(&mut self, i: usize, step: Step) -> Result<(), TestCaseError> {
        if tracing() {
            let shown = match &step {
                Step::Reply(r) => format!("Reply {} {}", r.status, r.details),
                Step::Await(Await::Callout(_)) => "Dispatch".to_string(),
                other => format!("{other:?}"),
            };
            self.trace(i, &shown);
        }
        if let Some((at, purpose)) = self.sims[i].flow.take_timer() {
            self.schedule(i, at, purpose)?;
        }
        match step {
            Step::Continue if self.sims[i].response_paused => {
                // The host resumes the *request* (`resume_http_request`); the paused response
                // never moves on and the client hangs.
                prop_assert!(
                    !ROUTER_FALLBACK_MODE_FIXED,
                    "request {i}: Continue while its response is paused: the client hangs"
                );
                self.trace(
                    i,
                    "the known response-phase hang (see ROUTER_FALLBACK_MODE_FIXED)",
                );
                self.sims[i].phase = Phase::Answered;
                self.sims[i].executing = false;
            }
            Step::Continue => {
                self.sims[i].phase = Phase::Forwarded;
                self.start_execution(i)?;
            }
            Step::Reply(r) => {
                self.check_reply(i, r.status, r.details, &r.headers)?;
                if r.details == "levee_fallback_stale_cache" {
                    self.check_stale_copy(i, &r.body)?;
                }
                self.sims[i].phase = Phase::Answered;
                self.end_execution(i, Some(r.status), r.details == "levee_callout");
            }
            Step::Await(Await::Timer { wake_at, purpose }) => {
                if purpose == TimerPurpose::Release {
                    self.sims[i].shaped = true;
                }
                prop_assert!(
                    wake_at >= self.now.saturating_sub(1),
                    "a wake-up in the past"
                );
                self.sims[i].phase = Phase::Held;
                self.schedule(i, wake_at, purpose)?;
            }
            Step::Await(Await::Body) => {
                self.sims[i].phase = Phase::Held;
                if !self.body_callbacks_work {
                    self.schedule(i, self.now + BODY_GUARD_NS, TimerPurpose::BodyGuard)?;
                }
                // Envoy already holds whatever the client sent; if levee wants it now, the
                // host hands it over only at the next body callback — which comes only if
                // more body is on its way (`check_not_hung` watches for that).
            }
            Step::Await(Await::Enqueue(e)) => {
                prop_assert!(e.upstream < self.plugin.config.upstreams.len());
                // The host's queue takes it, or is full.
                let result = if self.rng.below(3) == 0 {
                    Err(QueueFull::Items { max: 4 })
                } else {
                    Ok(QueueId(self.rng.next_u64()))
                };
                let step = {
                    let (sims, metrics) = (&mut self.sims, &mut self.metrics);
                    sims[i].flow.on_enqueued(
                        &mut Env::new(self.plugin, self.store, self.now, &mut self.rng, metrics),
                        result,
                    )
                };
                return self.apply(i, step);
            }
            Step::Await(Await::Callout(req)) => {
                prop_assert!(req.timeout_ns > 0, "an attempt without a timeout");
                prop_assert!(req.headers.iter().any(|(n, _)| n == ":path"));
                self.sims[i].phase = Phase::Calling;
                self.sims[i].cluster = req.cluster.clone();
                if req.cluster == "c2" && !SECONDARY_KEEPS_KEY_FIXED {
                    // The known issue: the secondary executes with the key released.
                    self.sims[i].executing = false;
                    self.sims[i].executed = true;
                } else {
                    self.start_execution(i)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_reply(
        &mut self,
        i: usize,
        status: u16,
        details: &str,
        headers: &[(String, String)],
    ) -> Result<(), TestCaseError> {
        let keyed = self.sims[i].key.is_some();
        let echo = headers.iter().any(|(n, _)| n == "x-idempotency-key");
        let allowed = match details {
            "levee_rate_limited" => status == 429,
            "levee_circuit_open" => status == 503,
            "levee_idempotency_bad_key" => status == 400,
            "levee_idempotency_conflict" | "levee_idempotency_completed" => {
                prop_assert!(echo, "a {details} without X-Idempotency-Key");
                status == 409
            }
            "levee_idempotency_mismatch" => {
                prop_assert!(echo, "a 422 without X-Idempotency-Key");
                status == 422
            }
            "levee_idempotent_replay" => {
                prop_assert!(echo && keyed, "a replay without X-Idempotency-Key");
                true
            }
            "levee_payload_too_large" => status == 413,
            "levee_body_not_delivered" => {
                let known = self.sims[i].shaped && !SHAPED_BODY_FIXED;
                // As documented: on a worker that has not seen a body callback yet, a client
                // that sends no body byte within the guard's wait is indistinguishable from
                // a missing `allow_on_headers_stop_iteration`.
                let slow_client = self.sims[i].sent == 0;
                prop_assert!(
                    self.no_body_callbacks || known || slow_client,
                    "body-not-delivered although the body came"
                );
                status == 500
            }
            "levee_internal_error" => {
                let full_possible = self.plugin.config.limits.max_tracked_keys < 64;
                prop_assert!(
                    self.faults || full_possible,
                    "an internal error without any store fault"
                );
                status == 503
            }
            "levee_upstream_timeout" => status == 504,
            "levee_upstream_reset"
            | "levee_upstream_connect_failure"
            | "levee_upstream_failure" => status == 502 || status == 504,
            "levee_callout" => (100..=999).contains(&status),
            "levee_fallback_static" => status == 203,
            "levee_fallback_queued" => status == 202,
            "levee_fallback_secondary" | "levee_fallback_stale_cache" => {
                (100..=999).contains(&status)
            }
            other => {
                prop_assert!(false, "a reply with unknown details {other:?}");
                false
            }
        };
        prop_assert!(allowed, "{details} answered {status}");
        Ok(())
    }

    /// A stale copy answers only the request it was stored for: same method and path, and
    /// the same `x-user` when the answer varied on it.
    pub(super) fn check_stale_copy(&self, i: usize, body: &[u8]) -> Result<(), TestCaseError> {
        let text = String::from_utf8_lossy(body);
        let id = text
            .strip_prefix("resp-")
            .and_then(|t| t.split(';').next())
            .and_then(|n| n.parse::<usize>().ok());
        let origin = id.and_then(|id| self.answers.get(id));
        prop_assert!(
            origin.is_some(),
            "a stale copy that no upstream answered: {text:.40}"
        );
        if tracing() {
            println!(
                "        stale copy {id:?} from {origin:?}; answering {:?}",
                self.sims[i].req
            );
        }
        if let Some(o) = origin {
            use crate::request::RequestAttributes;
            let req = &self.sims[i].req;
            prop_assert_eq!(&o.method, &req.method, "a stale copy for another method");
            prop_assert_eq!(&o.path, &req.path, "a stale copy for another path");
            if o.vary_user {
                prop_assert_eq!(
                    o.user.as_deref(),
                    req.header("x-user"),
                    "a stale copy for another x-user (Vary)"
                );
            }
        }
        Ok(())
    }

    /// An upstream answer's body of `len` bytes, tagged with a new id for request `i`.
    pub(super) fn answer_body(
        &mut self,
        i: usize,
        headers: &[(String, String)],
        len: usize,
    ) -> Vec<u8> {
        use crate::request::RequestAttributes;
        let req = &self.sims[i].req;
        let vary_user = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("vary") && v.to_ascii_lowercase().contains("x-user")
        });
        self.answers.push(Origin {
            method: req.method.clone(),
            path: req.path.clone(),
            user: req.header("x-user").map(<[u8]>::to_vec),
            vary_user,
        });
        let mut body = format!("resp-{};", self.answers.len() - 1).into_bytes();
        body.resize(body.len().max(len), b'.');
        body
    }

    pub(super) fn start_execution(&mut self, i: usize) -> Result<(), TestCaseError> {
        self.sims[i].executed = true;
        let Some(key) = self.sims[i].key.clone() else {
            return Ok(());
        };
        if self.sims[i].executing {
            return Ok(()); // a retry of the same execution
        }
        // A full idempotency table (small tables) is an internal error; with
        // `on_internal_error: allow` the request then runs unprotected, as documented.
        let internal = self
            .metrics
            .count_of(Event::Global(GlobalEvent::InternalError))
            > 0;
        if !self.faults && !internal {
            let twice = self
                .sims
                .iter()
                .any(|s| s.executing && s.key.as_ref() == Some(&key));
            prop_assert!(!twice, "two executions of key {:?} at once", key.1);
            // A full bucket evicts its oldest completed record (documented; never an
            // in-flight one, which the check above proves): that key may then execute again.
            let evicted = self
                .metrics
                .count_of(Event::Idempotency(IdempotencyEvent::Evicted))
                > 0;
            if let Some(&until) = self.stored_until.get(&key).filter(|_| !evicted) {
                prop_assert!(
                    self.now >= until,
                    "key {:?} executed again while its answer is stored",
                    key.1
                );
            }
        }
        self.sims[i].executing = true;
        Ok(())
    }

    /// The execution ended; remember a stored answer (`status`, when the client got it).
    pub(super) fn end_execution(&mut self, i: usize, status: Option<u16>, stored_kind: bool) {
        let s = &mut self.sims[i];
        if !std::mem::take(&mut s.executing) {
            return;
        }
        let (Some(key), Some(status), Some(layer)) =
            (s.key.clone(), status, &self.plugin.idempotency)
        else {
            return;
        };
        let released = layer.config.release_on.contains(&status) || matches!(status, 502 | 504);
        if stored_kind && !released {
            let ttl = crate::time::duration_nanos(layer.config.ttl);
            // Stored at the last instant the answer was seen; a hair's margin for rounding.
            self.stored_until.insert(key, self.now + ttl - MS);
        }
    }
}

impl World<'_> {
    /// The header the configuration reads idempotency keys from.
    pub(super) fn key_header(plugin: &Plugin) -> String {
        plugin
            .idempotency
            .as_ref()
            .map_or("idempotency-key".to_string(), |l| {
                l.config.header.to_ascii_lowercase()
            })
    }

    /// Long after the chaos, every idempotency key and every limit is usable again: a keyed
    /// POST per key reaches the upstream (no stuck lock, no stuck breaker, no stuck limit).
    pub(super) fn follow_up(&mut self) -> Result<(), TestCaseError> {
        for k in 0..6 {
            self.advance(self.now + 10 * SEC)?;
            let key_header = Self::key_header(self.plugin);
            let key = format!("k{k}");
            let req = FakeRequest::new("POST", "/svc/a")
                .source("10.0.0.1:1234")
                .header("x-user", "alice")
                .header(&key_header, &key);
            let i = self.sims.len();
            self.open(req, b"amount=10".to_vec(), Some(key.as_bytes()))?;
            self.drain()?;
            let s = &self.sims[i];
            prop_assert!(
                s.executed,
                "a follow-up POST with key {key} did not reach the upstream"
            );
        }
        Ok(())
    }
}
