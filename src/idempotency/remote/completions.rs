//! Completions that outlive their request: the records of requests whose stream has ended,
//! written to etcd by the worker's root (a request's own context is gone before etcd answers).
//!
//! A request hands over its [`RemoteKey`] with the first step of its completion; the worker
//! makes the calls this table asks for (each under an id), hands their answers back, and calls
//! [`Completions::due`] on its tick so that completions postponed by a failure are sent again —
//! until the lock would expire, when the key's outcome becomes unknown.

use std::collections::BTreeMap;

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
    /// When to send again (0: a call is outstanding).
    retry_at: UnixNanos,
}

/// The completions one worker is writing.
#[derive(Debug, Default)]
pub struct Completions {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
}

/// What the worker should do for a completion.
#[derive(Debug, PartialEq, Eq)]
pub enum Todo {
    /// Make `call`; its answer goes to [`Completions::on_answer`] with `id`.
    Send { id: u64, call: Call },
    /// The completion ended.
    Ended(Ended),
    /// Nothing now (waiting for an answer or a retry time).
    Wait,
}

impl Completions {
    /// Takes over `key` whose completion's first step is `step`.
    pub fn adopt(&mut self, key: RemoteKey, step: Step) -> Todo {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.pending.insert(id, Pending { key, retry_at: 0 });
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

    /// Completions whose retry time has come: the calls to make now.
    pub fn due(&mut self, env: &mut RemoteEnv<'_>) -> Vec<Todo> {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retry_at != 0 && p.retry_at <= env.now)
            .map(|(&id, _)| id)
            .collect();
        let mut todo = Vec::new();
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

    fn follow(&mut self, id: u64, step: Step) -> Todo {
        let ended = match step {
            Step::Send(call) => return Todo::Send { id, call },
            Step::RetryAt(at) => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.retry_at = at.max(1);
                }
                return Todo::Wait;
            }
            Step::Fenced => Ended::Fenced,
            Step::GaveUp => Ended::Unknown,
            _ => Ended::Written,
        };
        self.pending.remove(&id);
        Todo::Ended(ended)
    }

    /// Completions still being written.
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
        assert_eq!(run(&mut etcd, &mut done, &mut env, todo), Todo::Wait);
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
