//! Reading etcd's answer to a conditioned write: applied (the new revision), or refused —
//! then the record etcd returned says whether the write was ours after all, the key is still
//! ours at a revision we did not see, another owner holds it (fenced), or, for a claim, what
//! the shared-data store would decide (replay, `409`, `422`, wait, take over a record at rest).

use crate::backend::etcd::KeyValue;
use crate::config::OnConcurrent;
use crate::idempotency::machine::{begin, renew_interval_ns, Begin};
use crate::idempotency::record::Record;
use crate::idempotency::replay::Replay;
use crate::idempotency::replies;
use crate::idempotency::request::{Claimed, WAIT_POLL_NS};
use crate::metrics::IdempotencyEvent;
use crate::time::duration_nanos;

use super::super::record::StoredRecord;
use super::{
    Held, Purpose, RemoteEnv, RemoteKey, Step, Write, COMPLETE_RETRY_MAX_NS, COMPLETE_RETRY_NS,
};

impl RemoteKey {
    pub(super) fn applied(
        &mut self,
        env: &mut RemoteEnv<'_>,
        write: &Write,
        revision: i64,
    ) -> Step {
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

    pub(super) fn conflict(
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
                    Replay::Answer(a) => {
                        self.counted = Some(IdempotencyEvent::Replayed);
                        Claimed::Replay(replies::replayed(a))
                    }
                    Replay::Gone { status } => {
                        self.counted = Some(IdempotencyEvent::Conflict);
                        Claimed::Refuse(replies::completed(status))
                    }
                })
            }
            Begin::CompletedTooLarge { status } => {
                self.counted = Some(IdempotencyEvent::Conflict);
                Step::Claimed(Claimed::Refuse(replies::completed(status)))
            }
            Begin::Mismatch => {
                self.counted = Some(IdempotencyEvent::Mismatch);
                Step::Claimed(Claimed::Refuse(replies::mismatch()))
            }
            Begin::Conflict { retry_after_ns } => Step::Claimed(self.busy(env, retry_after_ns)),
        }
    }

    fn busy(&mut self, env: &mut RemoteEnv<'_>, retry_after_ns: u64) -> Claimed {
        if self.wait_until == 0 {
            // Counted once per request, whether it is refused or waits.
            self.counted = Some(IdempotencyEvent::Conflict);
        }
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

    pub(super) fn failed(&mut self, env: &mut RemoteEnv<'_>, write: Write) -> Step {
        match write.purpose {
            Purpose::Claim => Step::BackendFailed,
            Purpose::Renew => {
                let step = Step::Renewed {
                    next_at: env.now.saturating_add(renew_interval_ns(env.cfg)),
                };
                self.after(env, step)
            }
            Purpose::Complete => {
                // Sent again with a growing pause, the last time just before the lock would
                // expire; after that the key is left to expire as "unknown".
                let locked_until = self.held.as_ref().map_or(0, |h| h.locked_until);
                let last = locked_until.saturating_sub(COMPLETE_RETRY_NS / 2);
                if env.now >= last {
                    self.held = None;
                    return Step::GaveUp;
                }
                let pause = COMPLETE_RETRY_NS
                    .saturating_mul(1 << write.retries.min(5))
                    .min(COMPLETE_RETRY_MAX_NS);
                let mut write = write;
                write.sends = 0;
                write.retries = write.retries.saturating_add(1);
                self.pending = Some(write);
                Step::RetryAt(env.now.saturating_add(pause).min(last))
            }
        }
    }
}
