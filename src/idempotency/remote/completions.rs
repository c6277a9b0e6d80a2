//! The records a worker holds in etcd: keys its running requests claimed (their lock renewed
//! while they run) and completions that outlive their request (a request's own context may be
//! gone before etcd answers), all written by the worker's root.
//!
//! A request hands over its [`RemoteKey`] once the claim is decided ([`Completions::hold`]),
//! asks for renewals and for its completion by the id it got; the worker makes the calls this
//! table asks for (each under that id), hands their answers back, and calls
//! [`Completions::due`] on its timer so that completions postponed by a failure are sent again
//! — with a growing pause, until the lock would expire, when the key's outcome becomes
//! unknown. A renewal refused by the fencing revision means another owner took the key: the
//! request's completion is refused too.

use std::collections::BTreeMap;

use crate::idempotency::machine::{renew_interval_ns, Outcome};
use crate::idempotency::response::StoredResponse;
use crate::time::UnixNanos;

use super::calls::{Call, EtcdAnswer};
use super::claim::{RemoteEnv, RemoteKey, Step};

/// How one completion ended, for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Written (or nothing to write).
    Written,
    /// The lock had been retaken: refused by the fencing revision.
    Fenced,
    /// Not written before the lock would expire: the outcome is unknown.
    Unknown,
}

#[derive(Debug)]
struct Pending {
    key: RemoteKey,
    /// When to send again (0: a call is outstanding, or nothing to send).
    retry_at: UnixNanos,
    /// The request asked for its completion (else it still runs and renews its lock).
    completing: bool,
    /// A renewal was refused by the fence: the lock is another owner's.
    lost: bool,
    /// When the worker renews the lock itself next (its request is queued; 0: the request's
    /// own timer renews it).
    renew_at: UnixNanos,
}

/// The keys one worker holds or is completing.
#[derive(Debug, Default)]
pub struct Completions {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
}

/// What the worker should do for a held key.
#[derive(Debug, PartialEq, Eq)]
pub enum Todo {
    /// Make `call`; its answer goes to [`Completions::on_answer`] with `id`.
    Send { id: u64, call: Call },
    /// The completion ended.
    Ended(Ended),
    /// A renewal was refused by the fencing revision: another owner took the key while the
    /// request ran (its completion will be refused too).
    LockLost,
    /// A completion could not be written: it is sent again at this time.
    RetryAt(UnixNanos),
    /// Nothing now (waiting for an answer, or the lock was renewed).
    Wait,
}

impl Completions {
    /// Takes over `key`, which a running request holds: its renewals and its completion go
    /// through the id returned.
    pub fn hold(&mut self, key: RemoteKey) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let pending = Pending {
            key,
            retry_at: 0,
            completing: false,
            lost: false,
            renew_at: 0,
        };
        self.pending.insert(id, pending);
        id
    }

    /// Takes over `key` whose completion's first step is `step`.
    pub fn adopt(&mut self, key: RemoteKey, step: Step) -> Todo {
        let id = self.hold(key);
        if let Some(p) = self.pending.get_mut(&id) {
            p.completing = true;
        }
        self.follow(id, step)
    }

    /// Whether the key `id` is still the request's (not completed, not lost to another owner).
    pub fn holds(&self, id: u64) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|p| !p.completing && !p.lost && p.key.owns())
    }

    /// Key `id` outlives its request (queued): renew its lock from `at` on, in [`Self::due`].
    pub fn park(&mut self, id: u64, at: UnixNanos) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.renew_at = at.max(1);
        }
    }

    /// Forgets key `id` without completing it: its lock expires, its outcome unknown.
    pub fn abandon(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// The lock renewal of `id` is due.
    pub fn renew(&mut self, env: &mut RemoteEnv<'_>, id: u64) -> Todo {
        let Some(p) = self.pending.get_mut(&id).filter(|p| !p.completing) else {
            return Todo::Wait;
        };
        let step = p.key.renew(env);
        self.follow(id, step)
    }

    /// Completes `id` with `outcome` (and the captured answer); one asked for during a
    /// renewal is sent once the renewal is answered.
    pub fn complete(
        &mut self,
        env: &mut RemoteEnv<'_>,
        id: u64,
        outcome: Outcome,
        answer: Option<StoredResponse>,
    ) -> Todo {
        let Some(p) = self.pending.get_mut(&id).filter(|p| !p.completing) else {
            return Todo::Wait;
        };
        p.completing = true;
        p.renew_at = 0;
        let step = p.key.complete(env, outcome, answer);
        self.follow(id, step)
    }

    /// The answer to the call sent for `id`.
    pub fn on_answer(&mut self, env: &mut RemoteEnv<'_>, id: u64, answer: EtcdAnswer) -> Todo {
        let Some(p) = self.pending.get_mut(&id) else {
            return Todo::Wait;
        };
        let step = p.key.on_answer(env, answer);
        self.follow(id, step)
    }

    /// Completions whose retry time has come, and renewals of parked keys that are due: the
    /// calls to make now.
    pub fn due(&mut self, env: &mut RemoteEnv<'_>) -> Vec<Todo> {
        let mut todo = self.renewals_due(env);
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retry_at != 0 && p.retry_at <= env.now)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            p.retry_at = 0;
            let step = p.key.retry(env);
            todo.push(self.follow(id, step));
        }
        todo
    }

    fn renewals_due(&mut self, env: &mut RemoteEnv<'_>) -> Vec<Todo> {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.renew_at != 0 && p.renew_at <= env.now && !p.completing)
            .map(|(&id, _)| id)
            .collect();
        let mut todo = Vec::new();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            p.renew_at = env.now.saturating_add(renew_interval_ns(env.cfg));
            let step = p.key.renew(env);
            let next = self.follow(id, step);
            if next == Todo::LockLost {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.renew_at = 0;
                }
            }
            todo.push(next);
        }
        todo
    }

    /// The earliest time the worker must act: a postponed completion sent again, or a parked
    /// key's renewal.
    pub fn next_retry(&self) -> Option<UnixNanos> {
        self.pending
            .values()
            .flat_map(|p| [p.retry_at, p.renew_at])
            .filter(|&at| at != 0)
            .min()
    }

    fn follow(&mut self, id: u64, step: Step) -> Todo {
        let Some(p) = self.pending.get_mut(&id) else {
            return Todo::Wait;
        };
        let ended = match step {
            Step::Send(call) => return Todo::Send { id, call },
            Step::RetryAt(at) => {
                p.retry_at = at.max(1);
                return Todo::RetryAt(p.retry_at);
            }
            Step::Fenced if !p.completing => {
                p.lost = true;
                return Todo::LockLost;
            }
            Step::Fenced => Ended::Fenced,
            Step::GaveUp => Ended::Unknown,
            // A completion queued behind a renewal, or a renewal made.
            Step::Idle | Step::Renewed { .. } if !p.completing || p.key.owns() => {
                return Todo::Wait
            }
            // The completion of a key lost to another owner: refused.
            Step::Idle => Ended::Fenced,
            _ if !p.completing => return Todo::Wait,
            _ => Ended::Written,
        };
        self.pending.remove(&id);
        Todo::Ended(ended)
    }

    /// Keys held or being completed.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::machine::Outcome;
    use crate::idempotency::remote::fake_etcd::FakeEtcd;
    use crate::idempotency::remote::lease::LeaseCache;
    use crate::idempotency::request::Claimed;
    use crate::idempotency::response::StoredResponse;
    use crate::idempotency::tests::{cfg, SEC};
    use crate::idempotency::Fingerprint;

    const T0: u64 = 1_800_000_000 * SEC;

    fn run(
        etcd: &mut FakeEtcd,
        done: &mut Completions,
        env: &mut RemoteEnv<'_>,
        mut todo: Todo,
    ) -> Todo {
        while let Todo::Send { id, call } = todo {
            let answer = etcd.call(&call);
            todo = done.on_answer(env, id, answer);
        }
        todo
    }

    #[test]
    fn a_completion_handed_over_is_written_retried_and_ends() {
        let (cfg, mut leases, mut etcd) = (cfg(), LeaseCache::default(), FakeEtcd::default());
        let mut done = Completions::default();
        let mut env = RemoteEnv {
            cfg: &cfg,
            leases: &mut leases,
            now: T0,
        };
        let mut key = RemoteKey::new(b"k".to_vec(), "k".into(), 1, Fingerprint([1; 16]));
        let mut step = key.claim(&mut env);
        while let Step::Send(call) = &step {
            let answer = etcd.call(call);
            step = key.on_answer(&mut env, answer);
        }
        assert!(matches!(step, Step::Claimed(Claimed::Execute { .. })));
        etcd.down = true;
        let answer = StoredResponse {
            status: 200,
            headers: vec![],
            body: b"ok".to_vec(),
        };
        let first = key.complete(
            &mut env,
            Outcome::Stored {
                status: 200,
                body: None,
            },
            Some(answer),
        );
        let todo = done.adopt(key, first);
        let retry_at = T0 + super::super::claim::COMPLETE_RETRY_NS;
        assert_eq!(
            run(&mut etcd, &mut done, &mut env, todo),
            Todo::RetryAt(retry_at)
        );
        assert_eq!(done.next_retry(), Some(retry_at));
        assert_eq!(done.len(), 1);
        assert!(done.due(&mut env).is_empty(), "not due yet");
        etcd.down = false;
        env.now = T0 + SEC;
        let todos = done.due(&mut env);
        assert_eq!(todos.len(), 1);
        let todo = todos.into_iter().next().expect("one");
        assert_eq!(
            run(&mut etcd, &mut done, &mut env, todo),
            Todo::Ended(Ended::Written)
        );
        assert!(done.is_empty());
    }
}
