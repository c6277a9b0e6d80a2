//! The etcd records as one worker uses them: its lease cache, and the completions it writes
//! from the root context after their requests have ended.
//!
//! A request claims through its own backend calls (it waits for them). Its completion is
//! written with background calls instead: the response has gone to the client and the
//! request's context may be gone before etcd answers. A completion postponed by a failure is
//! sent again when the worker next writes or claims a record (there is no timer of its own).

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::step::{BackgroundCall, RemoteAnswer, RemoteCall};
use super::Env;
use crate::config::{BackendKind, IdempotencyConfig, LeveeConfig};
use crate::idempotency::machine::Outcome;
use crate::idempotency::response::StoredResponse;

use crate::idempotency::remote::calls::Call;
use crate::idempotency::remote::claim::{RemoteEnv, RemoteKey};
use crate::idempotency::remote::completions::{Completions, Todo};
use crate::idempotency::remote::lease::LeaseCache;
use crate::idempotency::remote::wire::{etcd_answer, remote_call};

/// Where one configuration's records live.
#[derive(Debug, Clone)]
pub struct EtcdTarget {
    /// Index into the config's `backends`.
    pub backend: usize,
    pub prefix: String,
    pub timeout_ms: u64,
}

impl EtcdTarget {
    /// The etcd backend `config.idempotency.backend` names, if any.
    pub fn of(config: &LeveeConfig) -> Option<Self> {
        let backend = config.idempotency.as_ref()?.backend?;
        match &config.backends.get(backend)?.kind {
            BackendKind::Etcd(e) => Some(Self {
                backend,
                prefix: e.prefix.clone(),
                timeout_ms: u64::try_from(e.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            BackendKind::Rls(_) => None,
        }
    }

    /// `call` as a backend call to this etcd.
    pub fn call(&self, call: &Call) -> RemoteCall {
        remote_call(self.backend, self.timeout_ms, call)
    }
}

/// One worker's state for records in etcd.
#[derive(Debug)]
pub struct EtcdRecords {
    pub target: EtcdTarget,
    leases: RefCell<LeaseCache>,
    completions: RefCell<Completions>,
    /// The call each outstanding completion sent (its answer is read against it).
    sent: RefCell<BTreeMap<u64, Call>>,
}

impl EtcdRecords {
    pub fn new(target: EtcdTarget) -> Self {
        Self {
            target,
            leases: RefCell::new(LeaseCache::default()),
            completions: RefCell::new(Completions::default()),
            sent: RefCell::new(BTreeMap::new()),
        }
    }

    /// Runs one step of a request's record machine with this worker's leases.
    pub fn step<R>(
        &self,
        cfg: &IdempotencyConfig,
        now: u64,
        f: impl FnOnce(&mut RemoteEnv<'_>) -> R,
    ) -> R {
        let mut leases = self.leases.borrow_mut();
        let mut env = RemoteEnv {
            cfg,
            leases: &mut leases,
            now,
        };
        f(&mut env)
    }

    /// Completions still being written (tests).
    pub fn writing(&self) -> usize {
        self.completions.borrow().len()
    }
}

/// Writes the ending of request `key` in the background, and sends again completions whose
/// retry time has come.
pub fn complete_in_background(
    env: &mut Env<'_>,
    mut key: RemoteKey,
    outcome: Outcome,
    answer: Option<StoredResponse>,
) {
    let plugin = env.plugin;
    let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
        return;
    };
    let now = env.now;
    let first = records.step(&layer.config, now, |re| key.complete(re, outcome, answer));
    let todo = records.completions.borrow_mut().adopt(key, first);
    let mut todos = vec![todo];
    todos.extend(records.step(&layer.config, now, |re| {
        records.completions.borrow_mut().due(re)
    }));
    for todo in todos {
        follow(env, todo);
    }
}

/// The answer to a completion's call (`tag`: its id in the table).
fn completion_answered(env: &mut Env<'_>, tag: u64, answer: RemoteAnswer) {
    let plugin = env.plugin;
    let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
        return;
    };
    let Some(call) = records.sent.borrow_mut().remove(&tag) else {
        return;
    };
    let etcd = etcd_answer(&call, &answer);
    let todo = records.step(&layer.config, env.now, |re| {
        records.completions.borrow_mut().on_answer(re, tag, etcd)
    });
    follow(env, todo);
}

fn follow(env: &mut Env<'_>, todo: Todo) {
    let plugin = env.plugin;
    let Some(records) = &plugin.etcd_records else {
        return;
    };
    match todo {
        Todo::Send { id, call } => {
            let remote = records.target.call(&call);
            records.sent.borrow_mut().insert(id, call);
            env.call_in_background(BackgroundCall {
                call: remote,
                tag: id,
                on_answer: completion_answered,
            });
        }
        Todo::Ended(ended) => {
            if ended != crate::idempotency::remote::completions::Ended::Written {
                log::info!("levee idempotency: a record in etcd was not completed ({ended:?})");
            }
        }
        Todo::Wait => {}
    }
}
