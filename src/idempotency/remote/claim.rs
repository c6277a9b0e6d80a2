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
//!
//! While etcd's database is full it refuses every transaction that may write, the claim
//! included, but still serves reads: a claim refused that way reads the record once, and
//! replays, answers `409` or `422` from it as it would have; only a key that would need a new
//! record is left to `on_backend_error`.

use crate::backend::etcd::TxnOutcome;
use crate::backend::etcd::{
    create_if_absent, delete_if_revision, first_kv, outcome, put_if_revision, read,
};
use crate::config::IdempotencyConfig;
use crate::idempotency::machine::{
    begin, finish, renew, renew_interval_ns, Begin, Finish, Outcome,
};
use crate::idempotency::record::Record;
use crate::idempotency::request::Claimed;
use crate::idempotency::response::StoredResponse;
use crate::idempotency::Fingerprint;
use crate::metrics::IdempotencyEvent;
use crate::time::UnixNanos;

use super::calls::{Call, EtcdAnswer, Failure};
use super::lease::{LeaseCache, LeaseFor};
use super::record::{completed, value};

mod answers;

/// Conditioned writes one step may send before giving up (each lost race reads the winner).
const MAX_WRITES: u32 = 4;
/// First pause between two attempts to write a completion; it doubles after each failure,
/// up to [`COMPLETE_RETRY_MAX_NS`].
pub const COMPLETE_RETRY_NS: u64 = 100_000_000;
/// The longest pause between two attempts to write a completion.
pub const COMPLETE_RETRY_MAX_NS: u64 = 2_000_000_000;

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
    /// Times a completion was postponed (the pause before the next doubles each time).
    retries: u32,
    /// etcd refused the claim for lack of space and the record was read instead: decide from
    /// it, write nothing.
    read_only: bool,
}

impl Write {
    /// A write not sent yet: no lease being granted, no sends, no retries.
    fn new(
        purpose: Purpose,
        value: Vec<u8>,
        answer: Vec<u8>,
        at_rest_at: UnixNanos,
        on_revision: i64,
    ) -> Self {
        Self {
            purpose,
            value,
            answer,
            at_rest_at,
            on_revision,
            granting: None,
            sends: 0,
            resent: false,
            retries: 0,
            read_only: false,
        }
    }
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
    /// What the last claim decision counts as (replay, mismatch, conflict), for the caller's
    /// metrics: the same events as the shared-data store counts.
    counted: Option<IdempotencyEvent>,
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
            counted: None,
        }
    }

    /// The event the last claim decision counts as, taken once.
    pub fn take_counted(&mut self) -> Option<IdempotencyEvent> {
        self.counted.take()
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
        let write = Write::new(
            Purpose::Claim,
            new_state.bytes,
            Vec::new(),
            new_state.at_rest_at,
            0,
        );
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
        let write = Write::new(
            Purpose::Renew,
            ns.bytes,
            Vec::new(),
            ns.at_rest_at,
            held.revision,
        );
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
        let write = Write::new(Purpose::Complete, value, answer, at_rest_at, held.revision);
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
        if write.sends >= MAX_WRITES || write.read_only {
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
                EtcdAnswer::Failed(Failure::Exhausted) => self.read_instead(env, write),
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
            EtcdAnswer::Failed(Failure::Exhausted) => return self.read_instead(env, write),
            EtcdAnswer::Granted | EtcdAnswer::Failed(_) => return self.failed(env, write),
        };
        if write.read_only {
            // What the claim would have found: decided as a refused claim, without a write.
            let current = first_kv(&response);
            let step = self.conflict(env, write, current);
            return self.after(env, step);
        }
        let step = match outcome(&response) {
            TxnOutcome::Applied { revision } => self.applied(env, &write, revision),
            TxnOutcome::Conflict { current } => self.conflict(env, write, current),
        };
        self.after(env, step)
    }

    /// etcd refused `write` for lack of space: a claim reads the record once instead (etcd
    /// serves reads while it refuses writes); anything else has failed.
    fn read_instead(&mut self, env: &mut RemoteEnv<'_>, mut write: Write) -> Step {
        if write.purpose != Purpose::Claim || write.read_only {
            return self.failed(env, write);
        }
        write.read_only = true;
        self.pending = Some(write);
        Step::Send(Call::Txn(read(&self.key)))
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
}
