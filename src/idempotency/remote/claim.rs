//! One keyed request's record in etcd: the transactions to send, and what their answers mean.
//!
//! The same decisions as the shared-data store, reached with etcd's conditioned Txns: the
//! record's transitions are [`crate::idempotency::machine`]'s pure functions, run on the record
//! etcd returns. A claim is one create-if-absent Txn whose failure branch reads the record, so
//! replay / `409` / `422` cost one round trip; a record at rest (expired lock, expired answer)
//! is taken over with a Txn conditioned on the revision read. The revision of the claim's
//! write is the **fence**: renew and complete are conditioned on the last revision written,
//! so an owner whose lock was retaken is refused (the record is no longer at that revision,
//! and no longer carries its nonce).
//!
//! When a conditioned write fails, the record etcd returns says why: the value we sent (our
//! write was applied by an earlier send whose answer was lost), a record still carrying our
//! nonce (ours, at a revision we did not see: adopt it and write again), or another owner's
//! (fenced). At most one call is outstanding; a completion asked for during a renewal waits
//! for its answer.

use crate::backend::etcd::{create_if_absent, delete_if_revision, outcome, put_if_revision};
use crate::backend::etcd::{KeyValue, TxnOutcome};
use crate::config::IdempotencyConfig;
use crate::idempotency::machine::{
    begin, finish, renew, renew_interval_ns, Begin, Finish, Outcome,
};
use crate::idempotency::record::Record;
use crate::idempotency::replay::Replay;
use crate::idempotency::request::Claimed;
use crate::idempotency::response::StoredResponse;
use crate::idempotency::{replies, Fingerprint};
use crate::time::{duration_nanos, UnixNanos};

use super::calls::{Call, EtcdAnswer, Failure};
use super::lease::{LeaseCache, LeaseFor};
use super::record::{completed, value, StoredRecord};

/// Conditioned writes one step may send before giving up (each lost race reads the winner).
const MAX_WRITES: u32 = 4;
/// Pause between two attempts to write a completion.
pub const COMPLETE_RETRY_NS: u64 = 100_000_000;

/// What the machine sees of the world for one step.
pub struct RemoteEnv<'a> {
    pub cfg: &'a IdempotencyConfig,
    pub leases: &'a mut LeaseCache,
    pub now: UnixNanos,
}

/// What the caller should do next.
#[derive(Debug)]
pub enum Step {
    /// Make this call and hand its answer to [`RemoteKey::on_answer`].
    Send(Call),
    /// The claim is decided (the same decisions as the shared-data store).
    Claimed(Claimed),
    /// The record store could not be reached: `on_backend_error` decides.
    BackendFailed,
    /// The lock was extended; renew again at `next_at`.
    Renewed { next_at: UnixNanos },
    /// A completion could not be written: call [`RemoteKey::retry`] at this time.
    RetryAt(UnixNanos),
    /// The record is written (or there was nothing to write).
    Finished,
    /// The record is no longer this request's (its lock was retaken): nothing written.
    Fenced,
    /// A completion could not be written before the lock would expire: the outcome is unknown.
    GaveUp,
    /// Nothing to do.
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Claim,
    Renew,
    Complete,
}

/// A conditioned write waiting for its answer (or for its lease to be granted).
#[derive(Debug, Clone)]
struct Write {
    purpose: Purpose,
    /// The record's encoding written; empty for a delete.
    value: Vec<u8>,
    /// The encoded answer written after it (completed records only).
    answer: Vec<u8>,
    at_rest_at: UnixNanos,
    /// The revision the write is conditioned on (0: the key must be absent).
    on_revision: i64,
    /// The lease bucket being granted before the write, if any.
    granting: Option<u64>,
    sends: u32,
    resent: bool,
}

/// The record this request holds.
#[derive(Debug, Clone)]
struct Held {
    revision: i64,
    fence: i64,
    record: Vec<u8>,
    locked_until: UnixNanos,
}

/// One keyed request's record in etcd.
#[derive(Debug)]
pub struct RemoteKey {
    key: Vec<u8>,
    key_echo: String,
    owner: u64,
    fingerprint: Fingerprint,
    held: Option<Held>,
    pending: Option<Write>,
    /// A completion asked for while a renewal was outstanding.
    queued: Option<(Outcome, Option<StoredResponse>)>,
    wait_until: UnixNanos,
}

impl RemoteKey {
    /// A request for the etcd `key` (see [`super::key::record_key`]), whose key echo is
    /// `key_echo`, with nonce `owner` and request `fingerprint`.
    pub fn new(key: Vec<u8>, key_echo: String, owner: u64, fingerprint: Fingerprint) -> Self {
        Self {
            key,
            key_echo,
            owner,
            fingerprint,
            held: None,
            pending: None,
            queued: None,
            wait_until: 0,
        }
    }

    /// The claim's revision, forwarded upstream as `x-levee-fence`, while the key is ours.
    pub fn fence(&self) -> Option<i64> {
        self.held.as_ref().map(|h| h.fence)
    }

    pub fn owns(&self) -> bool {
        self.held.is_some()
    }

    /// Starts (or, after a [`Claimed::Wait`], repeats) the claim.
    pub fn claim(&mut self, env: &mut RemoteEnv<'_>) -> Step {
        let Begin::Execute { new_state, .. } =
            begin(env.cfg, None, self.fingerprint, self.owner, env.now)
        else {
            return Step::BackendFailed;
        };
        let write = Write {
            purpose: Purpose::Claim,
            value: new_state.bytes,
            answer: Vec::new(),
            at_rest_at: new_state.at_rest_at,
            on_revision: 0,
            granting: None,
            sends: 0,
            resent: false,
        };
        self.send(env, write)
    }

    /// The lock renewal is due.
    pub fn renew(&mut self, env: &mut RemoteEnv<'_>) -> Step {
        let Some(held) = &self.held else {
            return Step::Idle;
        };
        if self.pending.is_some() {
            return Step::Renewed {
                next_at: env.now.saturating_add(renew_interval_ns(env.cfg)),
            };
        }
        let Some(ns) = renew(env.cfg, &held.record, self.owner, env.now) else {
            return Step::Fenced;
        };
        let write = Write {
            purpose: Purpose::Renew,
            value: ns.bytes,
            answer: Vec::new(),
            at_rest_at: ns.at_rest_at,
            on_revision: held.revision,
            granting: None,
            sends: 0,
            resent: false,
        };
        self.send(env, write)
    }

    /// Completes the record with `outcome`; `answer` is the captured answer for
    /// [`Outcome::Stored`] (kept inline, or by status only when too large).
    pub fn complete(
        &mut self,
        env: &mut RemoteEnv<'_>,
        outcome: Outcome,
        answer: Option<StoredResponse>,
    ) -> Step {
        let Some(held) = &self.held else {
            return Step::Idle;
        };
        if self.pending.is_some() {
            self.queued = Some((outcome, answer));
            return Step::Idle;
        }
        let (value, answer, at_rest_at) =
            match finish(env.cfg, Some(&held.record), self.owner, outcome, env.now) {
                Finish::Unchanged => {
                    self.held = None;
                    return Step::Finished;
                }
                Finish::NotOwner => {
                    self.held = None;
                    return Step::Fenced;
                }
                Finish::Write(ns) => match Record::decode(&ns.bytes) {
                    Some(Record::Completed(c)) => {
                        let (head, blob) = completed(c, answer.as_ref());
                        (head, blob, ns.at_rest_at)
                    }
                    _ => (ns.bytes, Vec::new(), ns.at_rest_at),
                },
            };
        let write = Write {
            purpose: Purpose::Complete,
            value,
            answer,
            at_rest_at,
            on_revision: held.revision,
            granting: None,
            sends: 0,
            resent: false,
        };
        self.send(env, write)
    }

    /// Sends again the completion a [`Step::RetryAt`] postponed.
    pub fn retry(&mut self, env: &mut RemoteEnv<'_>) -> Step {
        match self.pending.take() {
            Some(write) => self.send(env, write),
            None => Step::Idle,
        }
    }

    fn send(&mut self, env: &mut RemoteEnv<'_>, mut write: Write) -> Step {
        if write.sends >= MAX_WRITES {
            return self.failed(env, write);
        }
        let lease = if write.value.is_empty() {
            0
        } else {
            match env.leases.lease_for(write.at_rest_at, env.now) {
                LeaseFor::Ready(id) => id,
                LeaseFor::Grant { end, request } => {
                    write.granting = Some(end);
                    self.pending = Some(write);
                    return Step::Send(Call::Grant(request));
                }
            }
        };
        write.sends += 1;
        let stored = self.stored_value(&write);
        let txn = match (write.on_revision, write.value.is_empty()) {
            (0, _) => create_if_absent(&self.key, &stored, lease),
            (rev, true) => delete_if_revision(&self.key, rev),
            (rev, false) => put_if_revision(&self.key, rev, &stored, lease),
        };
        self.pending = Some(write);
        Step::Send(Call::Txn(txn))
    }

    /// The etcd value `write` puts (empty for a delete).
    fn stored_value(&self, write: &Write) -> Vec<u8> {
        if write.value.is_empty() {
            return Vec::new();
        }
        value(&write.value, self.owner, &write.answer)
    }

    /// The answer to the call last returned in a [`Step::Send`].
    pub fn on_answer(&mut self, env: &mut RemoteEnv<'_>, answer: EtcdAnswer) -> Step {
        let Some(mut write) = self.pending.take() else {
            return Step::Idle;
        };
        if let Some(end) = write.granting.take() {
            return match answer {
                EtcdAnswer::Granted => {
                    env.leases.granted(end);
                    self.send(env, write)
                }
                _ => self.failed(env, write),
            };
        }
        let response = match answer {
            EtcdAnswer::Txn(r) => r,
            EtcdAnswer::Failed(Failure::FateUnknown)
                if write.purpose == Purpose::Claim && !write.resent =>
            {
                write.resent = true;
                return self.send(env, write);
            }
            EtcdAnswer::Granted | EtcdAnswer::Failed(_) => return self.failed(env, write),
        };
        let step = match outcome(&response) {
            TxnOutcome::Applied { revision } => self.applied(env, &write, revision),
            TxnOutcome::Conflict { current } => self.conflict(env, write, current),
        };
        self.after(env, step)
    }

    /// Runs a completion queued behind a renewal once that renewal is answered.
    fn after(&mut self, env: &mut RemoteEnv<'_>, step: Step) -> Step {
        if self.pending.is_none() {
            if let Some((outcome, answer)) = self.queued.take() {
                return self.complete(env, outcome, answer);
            }
        }
        step
    }

    fn applied(&mut self, env: &mut RemoteEnv<'_>, write: &Write, revision: i64) -> Step {
        match write.purpose {
            Purpose::Claim => {
                self.held = Some(Held {
                    revision,
                    fence: revision,
                    record: write.value.clone(),
                    locked_until: write.at_rest_at,
                });
                Step::Claimed(Claimed::Execute {
                    renew_at: env.now.saturating_add(renew_interval_ns(env.cfg)),
                })
            }
            Purpose::Renew => {
                if let Some(held) = self.held.as_mut() {
                    held.revision = revision;
                    held.record = write.value.clone();
                    held.locked_until = write.at_rest_at;
                }
                Step::Renewed {
                    next_at: env.now.saturating_add(renew_interval_ns(env.cfg)),
                }
            }
            Purpose::Complete => {
                self.held = None;
                Step::Finished
            }
        }
    }

    fn conflict(
        &mut self,
        env: &mut RemoteEnv<'_>,
        mut write: Write,
        current: Option<KeyValue>,
    ) -> Step {
        let current_value = current.as_ref().map(|kv| kv.value.as_slice());
        // Our own write, applied by a send whose answer was lost.
        if let Some(kv) = &current {
            if !write.value.is_empty() && kv.value == self.stored_value(&write) {
                return self.applied(env, &write, kv.mod_revision);
            }
        }
        let stored = current_value.and_then(StoredRecord::decode);
        let ours = matches!(&stored, Some(StoredRecord { record: Record::InFlight(r), .. }) if r.owner == self.owner);
        match (write.purpose, current) {
            (Purpose::Complete, None) if write.value.is_empty() => {
                self.held = None;
                Step::Finished
            }
            (Purpose::Claim, Some(kv)) if ours => {
                // Our claim, applied by the first send (the nonce is ours).
                write.value = stored.map(|s| s.record.encode()).unwrap_or_default();
                self.applied(env, &write, kv.mod_revision)
            }
            (_, Some(kv)) if ours => {
                // Still ours, at a revision we did not see: write again on it.
                if let Some(held) = self.held.as_mut() {
                    held.revision = kv.mod_revision;
                    held.record = stored.map(|s| s.record.encode()).unwrap_or_default();
                }
                write.on_revision = kv.mod_revision;
                self.send(env, write)
            }
            (Purpose::Claim, None) => {
                write.on_revision = 0;
                self.send(env, write)
            }
            (Purpose::Claim, Some(kv)) => self.decide(env, write, &kv, stored),
            (Purpose::Renew | Purpose::Complete, _) => {
                self.held = None;
                self.queued = None;
                Step::Fenced
            }
        }
    }

    /// Another record is there: replay, refuse, wait, or take it over if it is at rest.
    fn decide(
        &mut self,
        env: &mut RemoteEnv<'_>,
        mut write: Write,
        kv: &KeyValue,
        stored: Option<StoredRecord>,
    ) -> Step {
        let head = stored.as_ref().map(|s| s.record.encode());
        match begin(
            env.cfg,
            head.as_deref(),
            self.fingerprint,
            self.owner,
            env.now,
        ) {
            Begin::Execute { new_state, .. } => {
                write.value = new_state.bytes;
                write.at_rest_at = new_state.at_rest_at;
                write.on_revision = kv.mod_revision;
                self.send(env, write)
            }
            Begin::Replay { record } => {
                let replay = stored.map_or(
                    Replay::Gone {
                        status: record.status,
                    },
                    |s| s.replay(&record, &self.key_echo),
                );
                Step::Claimed(match replay {
                    Replay::Answer(a) => Claimed::Replay(replies::replayed(a)),
                    Replay::Gone { status } => Claimed::Refuse(replies::completed(status)),
                })
            }
            Begin::CompletedTooLarge { status } => {
                Step::Claimed(Claimed::Refuse(replies::completed(status)))
            }
            Begin::Mismatch => Step::Claimed(Claimed::Refuse(replies::mismatch())),
            Begin::Conflict { retry_after_ns } => Step::Claimed(self.busy(env, retry_after_ns)),
        }
    }

    fn busy(&mut self, env: &mut RemoteEnv<'_>, retry_after_ns: u64) -> Claimed {
        use crate::config::OnConcurrent;
        use crate::idempotency::request::WAIT_POLL_NS;
        if env.cfg.on_concurrent == OnConcurrent::Wait {
            if self.wait_until == 0 {
                self.wait_until = env.now.saturating_add(duration_nanos(env.cfg.lock_timeout));
            }
            if env.now < self.wait_until {
                return Claimed::Wait {
                    wake_at: env.now.saturating_add(WAIT_POLL_NS),
                };
            }
        }
        Claimed::Refuse(replies::in_flight(retry_after_ns))
    }

    /// Whether this request saw the key busy before (its first `409`/wait is counted once).
    pub fn was_waiting(&self) -> bool {
        self.wait_until != 0
    }

    fn failed(&mut self, env: &mut RemoteEnv<'_>, write: Write) -> Step {
        match write.purpose {
            Purpose::Claim => Step::BackendFailed,
            Purpose::Renew => {
                let step = Step::Renewed {
                    next_at: env.now.saturating_add(renew_interval_ns(env.cfg)),
                };
                self.after(env, step)
            }
            Purpose::Complete => {
                let locked_until = self.held.as_ref().map_or(0, |h| h.locked_until);
                let at = env.now.saturating_add(COMPLETE_RETRY_NS);
                if at >= locked_until {
                    self.held = None;
                    return Step::GaveUp;
                }
                let mut write = write;
                write.sends = 0;
                self.pending = Some(write);
                Step::RetryAt(at)
            }
        }
    }
}
