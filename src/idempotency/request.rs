//! One request's journey through the idempotency layer: its key is checked when the headers
//! arrive, claimed once the body is here (execute, replay, wait, or refuse), renewed while the
//! request lives, and completed — stored, released or left to expire — by how the request
//! ended. Every step returns what the request should do; the request sequencer acts on it.
//!
//! ```text
//!   Unclaimed ──claim: execute──▶ Held ──complete / queued──▶ Done
//!      │ ▲ claim: conflict, wait        │ answer captured while it passes
//!      └─┘                              └─ (stored when its body is complete)
//! ```

use crate::config::{OnConcurrent, OnInternalError};
use crate::metrics::{Event, GlobalEvent, IdempotencyEvent};
use crate::outcome::{AttemptOutcome, UpstreamResult};
use crate::problem::LocalReply;
use crate::store::hash::KeyHash;
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos, NANOS_PER_MILLI};

use super::capture::Capture;
pub use super::key_env::KeyEnv;
use super::layer::{HeldKey, IdempotencyLayer};
use super::machine::{renew_interval_ns, Begin, Outcome};
use super::outcome::{classify, ending, event_of, secondary_ending, AnswerParts, OutcomeKind};
use super::replay::{Replay, KEY_ECHO_HEADER};
use super::replies;
use super::response::StoredResponse;
use super::{Fingerprint, FingerprintBuilder, IdempotencyKey};

mod backend;

/// How often a request waiting for another one's key (`on_concurrent: wait`) looks again.
pub const WAIT_POLL_NS: u64 = 50 * NANOS_PER_MILLI;

/// An answer as the record keeps it: status, headers, body.
pub type AnswerCopy = (u16, Vec<(String, String)>, Vec<u8>);

/// Where the request stands with its key's record.
#[derive(Debug)]
enum Hold {
    /// Not claimed yet; `wait_until` is when waiting for another holder ends (0: not waiting).
    Unclaimed { wait_until: UnixNanos },
    /// Claimed: the record in `slot` is this request's until it completes it.
    Held { slot: u32, capture: Capture },
    /// Completed (or handed to the queue, whose delivery completes it).
    Done,
}

/// A request that carries a valid key.
#[derive(Debug)]
pub struct KeyedRequest {
    key: IdempotencyKey,
    hash: KeyHash,
    owner: u64,
    fingerprint: Option<FingerprintBuilder>,
    /// The fingerprint once the body is complete (kept for re-claims while waiting).
    finished_fingerprint: Option<Fingerprint>,
    hold: Hold,
    /// The upstream may have seen the request (router forward, a callout or the secondary
    /// cluster sent): a client that leaves then leaves the outcome unknown.
    forwarded: bool,
    /// A failed forward's ending, recorded once the fallback chain decides (a queued request
    /// is completed by its delivery instead).
    pending: Option<(UpstreamResult, Option<AnswerCopy>)>,
    /// Records in a backend: the scoped key (the same on every Envoy), and the ending the
    /// request reached, for the caller to write to the backend.
    remote: Option<Box<backend::RemoteEnding>>,
}

/// What claiming the key decided.
#[derive(Debug)]
pub enum Claimed {
    /// The key is this request's: forward it, and renew the lock at `renew_at`.
    Execute { renew_at: UnixNanos },
    /// A completed request's answer, replayed as it is.
    Replay(LocalReply),
    /// Refused (conflict, mismatch, completed without an answer, internal error).
    Refuse(LocalReply),
    /// Another request holds the key: look again at `wake_at`.
    Wait { wake_at: UnixNanos },
    /// The record could not be reached and `on_internal_error` allows: forward unkeyed.
    Unkeyed,
}

impl KeyedRequest {
    /// A request with a valid `key` (hashed to `hash`), owned by request `owner`;
    /// `fingerprint` when the key is bound to the request's method, path and body.
    pub fn new(
        key: IdempotencyKey,
        hash: KeyHash,
        owner: u64,
        fingerprint: Option<FingerprintBuilder>,
    ) -> Self {
        Self {
            key,
            hash,
            owner,
            fingerprint,
            finished_fingerprint: None,
            hold: Hold::Unclaimed { wait_until: 0 },
            forwarded: false,
            pending: None,
            remote: None,
        }
    }

    /// The header that echoes this request's key on its answer.
    pub fn echo(&self) -> (String, String) {
        (KEY_ECHO_HEADER.into(), self.key.header_value())
    }

    pub fn owns(&self) -> bool {
        matches!(self.hold, Hold::Held { .. })
    }

    /// The key is bound to the body too: the body must be read before the claim.
    pub fn needs_body(&self) -> bool {
        self.fingerprint.is_some()
    }

    pub fn update_fingerprint(&mut self, chunk: &[u8]) {
        if let Some(fp) = self.fingerprint.as_mut() {
            fp.update(chunk);
        }
    }

    /// The record this request holds, for the queue that takes the request over.
    pub fn held(&self) -> Option<HeldKey> {
        match self.hold {
            Hold::Held { slot, .. } => Some(HeldKey {
                hash: self.hash,
                slot,
                owner: self.owner,
            }),
            _ => None,
        }
    }

    /// The upstream may act on the request from now on.
    pub fn mark_forwarded(&mut self) {
        self.forwarded = true;
    }

    /// Claims the key: execute, replay, wait, or refuse.
    pub fn claim(&mut self, ke: &mut KeyEnv<'_>) -> Claimed {
        let (layer, now) = (ke.layer, ke.now);
        if let Some(builder) = self.fingerprint.take() {
            self.finished_fingerprint = Some(builder.finish());
        }
        let fingerprint = self.finished_fingerprint.unwrap_or(Fingerprint([0; 16]));
        let claim = match layer.claim(ke.store, self.hash, fingerprint, self.owner, now) {
            Ok(c) => c,
            Err(e) => {
                ke.metrics.count(Event::Global(GlobalEvent::InternalError));
                log::warn!("levee idempotency: cannot claim a key ({e:?})");
                if layer.config.on_internal_error == OnInternalError::Allow {
                    return Claimed::Unkeyed;
                }
                return Claimed::Refuse(replies::internal());
            }
        };
        if claim.evicted {
            ke.count(IdempotencyEvent::Evicted);
        }
        match claim.begin {
            Begin::Execute { .. } => {
                self.hold = Hold::Held {
                    slot: claim.slot,
                    capture: Capture::default(),
                };
                Claimed::Execute {
                    renew_at: now.saturating_add(renew_interval_ns(&layer.config)),
                }
            }
            Begin::Replay { record } => {
                match layer.replay(ke.store, &record, &self.key.header_value()) {
                    Replay::Answer(stored) => {
                        ke.count(IdempotencyEvent::Replayed);
                        Claimed::Replay(replies::replayed(stored))
                    }
                    Replay::Gone { status } => Claimed::Refuse(ke.completed_conflict(status)),
                }
            }
            Begin::CompletedTooLarge { status } => Claimed::Refuse(ke.completed_conflict(status)),
            Begin::Mismatch => {
                ke.count(IdempotencyEvent::Mismatch);
                Claimed::Refuse(replies::mismatch())
            }
            Begin::Conflict { retry_after_ns } => self.conflict(ke, retry_after_ns),
        }
    }

    fn conflict(&mut self, ke: &mut KeyEnv<'_>, retry_after_ns: u64) -> Claimed {
        let now = ke.now;
        let mut wait_until = match self.hold {
            Hold::Unclaimed { wait_until } => wait_until,
            _ => 0,
        };
        if wait_until == 0 {
            ke.count(IdempotencyEvent::Conflict);
        }
        if ke.layer.config.on_concurrent == OnConcurrent::Wait {
            if wait_until == 0 {
                wait_until = now.saturating_add(duration_nanos(ke.layer.config.lock_timeout));
                self.hold = Hold::Unclaimed { wait_until };
            }
            if now < wait_until {
                return Claimed::Wait {
                    wake_at: now.saturating_add(WAIT_POLL_NS),
                };
            }
        }
        Claimed::Refuse(replies::in_flight(retry_after_ns))
    }

    /// The lock renewal is due: the next one's time, or `None` when the lock is not ours.
    pub fn renew(
        &mut self,
        layer: &IdempotencyLayer,
        store: &dyn SharedStore,
        now: UnixNanos,
    ) -> Option<UnixNanos> {
        if !self.owns() || !layer.renew(store, self.hash, self.owner, now) {
            return None;
        }
        Some(now.saturating_add(renew_interval_ns(&layer.config)))
    }

    /// Completes the record this request holds with `outcome` (and the captured answer).
    pub fn complete(&mut self, ke: &mut KeyEnv<'_>, outcome: Outcome) {
        let Some(held) = self.held() else { return };
        let capture = match std::mem::replace(&mut self.hold, Hold::Done) {
            Hold::Held { mut capture, .. } => capture.take(),
            _ => None,
        };
        let event = event_of(outcome);
        ke.count(event);
        if event == IdempotencyEvent::TooLarge {
            log::warn!("levee idempotency: an answer over max_body_bytes was passed through; only its status is kept");
        }
        if let Some(remote) = self.remote.as_mut() {
            remote.ended = Some((outcome, capture));
            return;
        }
        let done = ke
            .layer
            .complete(ke.store, held, outcome, capture.as_ref(), ke.now);
        if done.is_err() {
            ke.metrics.count(Event::Global(GlobalEvent::InternalError));
        }
    }

    /// The request ends without reaching the upstream: the record is given back.
    pub fn release_unforwarded(&mut self, ke: &mut KeyEnv<'_>) {
        if !self.forwarded {
            self.complete(ke, Outcome::Released);
        }
    }

    /// Records how a request ended, with its answer when it had one.
    pub fn record(
        &mut self,
        ke: &mut KeyEnv<'_>,
        result: UpstreamResult,
        answer: Option<AnswerParts<'_>>,
    ) {
        if !self.owns() {
            return;
        }
        let (outcome, answer) = ending(&ke.layer.config, result, answer);
        if let Some(answer) = answer {
            self.start_capture(answer);
        }
        self.complete(ke, outcome);
    }

    /// Keeps a failed forward's ending until the fallback chain decides.
    pub fn defer(&mut self, result: UpstreamResult, answer: Option<AnswerCopy>) {
        self.pending = Some((result, answer));
    }

    /// Records the ending kept by [`Self::defer`], if any.
    pub fn flush(&mut self, ke: &mut KeyEnv<'_>) {
        if let Some((result, answer)) = self.pending.take() {
            let parts = answer
                .as_ref()
                .map(|(st, h, b)| (*st, h.as_slice(), b.as_slice()));
            self.record(ke, result, parts);
        }
    }

    /// The secondary cluster failed too. Nothing happened at the primary (released): the
    /// secondary's failure decides — a reset or timeout there may have acted (unknown).
    pub fn secondary_failed(&mut self, layer: &IdempotencyLayer, status: Option<u16>, len: u64) {
        let primary = self.pending.as_ref().map(|(r, _)| *r);
        if let Some(result) = secondary_ending(&layer.config, primary, status, len) {
            self.pending = Some((result, None));
        }
    }

    /// The queue took the request: its delivered answer, not the `202`, completes the record.
    pub fn queued(&mut self) {
        self.hold = Hold::Done;
        self.pending = None;
    }

    /// The upstream's response headers (router mode): release, leave unknown, or start
    /// capturing the answer for storage.
    pub fn on_response_headers(
        &mut self,
        ke: &mut KeyEnv<'_>,
        outcome: &AttemptOutcome,
        status: u16,
        headers: Vec<(String, String)>,
        end_of_stream: bool,
    ) {
        if !self.owns() {
            return;
        }
        match classify(&ke.layer.config, UpstreamResult::of_attempt(*outcome, 0)) {
            OutcomeKind::Released => self.complete(ke, Outcome::Released),
            OutcomeKind::Unknown => self.complete(ke, Outcome::Unknown),
            OutcomeKind::Stored | OutcomeKind::TooLarge => {
                self.start_capture(StoredResponse {
                    status,
                    headers,
                    body: Vec::new(),
                });
                if end_of_stream {
                    self.finish_capture(ke);
                }
            }
        }
    }

    fn start_capture(&mut self, answer: StoredResponse) {
        if let Some(capture) = self.capture() {
            capture.start(answer);
        }
    }

    fn capture(&mut self) -> Option<&mut Capture> {
        match &mut self.hold {
            Hold::Held { capture, .. } => Some(capture),
            _ => None,
        }
    }

    /// Whether the upstream's answer is being captured.
    pub fn capturing(&self) -> bool {
        matches!(&self.hold, Hold::Held { capture, .. } if capture.is_active())
    }

    /// A chunk of the captured answer's body; past `max` bytes only the status is kept.
    pub fn capture_chunk(&mut self, chunk: &[u8], max: u64) {
        if let Some(capture) = self.capture() {
            capture.chunk(chunk, max);
        }
    }

    /// The captured answer is complete: store it (or its status, when it was too large).
    pub fn finish_capture(&mut self, ke: &mut KeyEnv<'_>) {
        if let Some(outcome) = self.capture().and_then(|c| c.outcome()) {
            self.complete(ke, outcome);
        }
    }

    /// A fallback replaced the upstream's answer before its body passed: a record that was
    /// capturing it keeps "completed with `status`" (a later same-key request gets `409`,
    /// never a second execution).
    pub fn finish_without_body(&mut self, ke: &mut KeyEnv<'_>, status: u16) {
        if self.capture().and_then(Capture::take).is_some() {
            self.complete(ke, Outcome::Stored { status, body: None });
        }
    }

    /// The stream ended: a record still held is released, or left to expire when the
    /// upstream may have acted.
    pub fn on_done(&mut self, ke: &mut KeyEnv<'_>) {
        if !self.owns() {
            return;
        }
        let outcome = if self.forwarded {
            Outcome::Unknown
        } else {
            Outcome::Released
        };
        self.complete(ke, outcome);
    }
}
