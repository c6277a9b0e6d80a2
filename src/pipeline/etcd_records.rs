//! The etcd records as one worker uses them: its lease cache, and the completions it writes
//! from the root context after their requests have ended.
//!
//! A request claims through its own backend calls (it waits for them). Once the key is its,
//! the key moves to this worker's table: lock renewals (asked by the request's timer) and the
//! completion are background calls from the root, so their answers arrive even when the
//! request's context is gone — the response has gone to the client before etcd answers. A
//! completion postponed by a failure is sent again on the root's timer ([`retry_due`]), which
//! also renews the locks of keys whose request the queue took over.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::step::{BackgroundCall, RemoteAnswer, RemoteCall};
use super::Env;
use crate::config::{BackendKind, IdempotencyConfig, LeveeConfig};
use crate::idempotency::machine::{renew_interval_ns, Outcome};
use crate::idempotency::response::StoredResponse;

use crate::idempotency::remote::calls::Call;
use crate::idempotency::remote::claim::{RemoteEnv, RemoteKey};
use crate::idempotency::remote::completions::{Completions, Ended, Todo};
use crate::idempotency::remote::lease::LeaseCache;
use crate::idempotency::remote::wire::{etcd_answer, remote_call};
use crate::metrics::{BackendEvent, Event};

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

    /// Keys held or still being completed (tests).
    pub fn writing(&self) -> usize {
        self.completions.borrow().len()
    }

    /// The earliest time the worker must act for its held keys: a postponed completion sent
    /// again, or the lock renewal of a key whose request is queued.
    pub fn next_retry(&self) -> Option<crate::time::UnixNanos> {
        self.completions.borrow().next_retry()
    }
}

/// Hands the key a request just claimed to this worker's table: renewals and the completion
/// go through the id returned (`None` without records in etcd).
pub fn hold_in_background(env: &Env<'_>, key: RemoteKey) -> Option<u64> {
    let records = env.plugin.etcd_records.as_ref()?;
    Some(records.completions.borrow_mut().hold(key))
}

/// The lock renewal of held key `id` is due: sends it from the root. `false` when the key is
/// no longer the request's (renew no more).
pub fn renew_in_background(env: &mut Env<'_>, id: u64) -> bool {
    let plugin = env.plugin;
    let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
        return false;
    };
    if !records.completions.borrow().holds(id) {
        return false;
    }
    let todo = records.step(&layer.config, env.now, |re| {
        records.completions.borrow_mut().renew(re, id)
    });
    follow(env, todo);
    records.completions.borrow().holds(id)
}

/// Held key `id` outlives its request (the queue took the request): the worker renews its
/// lock from now on, until the delivery completes it or the queue gives it up.
pub fn park_in_background(env: &Env<'_>, id: u64) {
    if let (Some(records), Some(layer)) = (&env.plugin.etcd_records, &env.plugin.idempotency) {
        let at = env.now.saturating_add(renew_interval_ns(&layer.config));
        records.completions.borrow_mut().park(id, at);
    }
}

/// Held key `id` is given up (a queued request dropped): it is left to expire, its outcome
/// unknown, as with shared data.
pub fn abandon_in_background(env: &Env<'_>, id: u64) {
    if let Some(records) = &env.plugin.etcd_records {
        records.completions.borrow_mut().abandon(id);
    }
}

/// Writes the ending of held key `id` in the background (after a renewal still outstanding).
pub fn complete_in_background(
    env: &mut Env<'_>,
    id: u64,
    outcome: Outcome,
    answer: Option<StoredResponse>,
) {
    let plugin = env.plugin;
    let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
        return;
    };
    let todo = records.step(&layer.config, env.now, |re| {
        records
            .completions
            .borrow_mut()
            .complete(re, id, outcome, answer)
    });
    follow(env, todo);
}

/// Sends again the completions whose retry time has come, and renews the locks of keys whose
/// request is queued (the worker's root, on its timer).
pub fn retry_due(env: &mut Env<'_>) {
    let plugin = env.plugin;
    let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
        return;
    };
    let todos = records.step(&layer.config, env.now, |re| {
        records.completions.borrow_mut().due(re)
    });
    for todo in todos {
        follow(env, todo);
    }
}

/// The answer to a held key's call (`tag`: its id in the table).
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
    let backend = records.target.backend;
    let what = match todo {
        Todo::Send { id, call } => {
            let remote = records.target.call(&call);
            records.sent.borrow_mut().insert(id, call);
            env.call_in_background(BackgroundCall {
                call: remote,
                tag: id,
                on_answer: completion_answered,
            });
            return;
        }
        Todo::Wait | Todo::Ended(Ended::Written) => return,
        Todo::RetryAt(_) => BackendEvent::CompletionRetried,
        Todo::LockLost => {
            log::warn!("levee idempotency: a lock renewal was refused by the fencing revision: another request took the key while this one ran, its completion will be refused");
            BackendEvent::RenewalFenced
        }
        Todo::Ended(Ended::Fenced) => {
            log::warn!("levee idempotency: a completion was refused by the fencing revision: another request holds the key now");
            BackendEvent::CompletionFenced
        }
        Todo::Ended(Ended::Unknown) => {
            log::warn!("levee idempotency: a completion could not be written to etcd before the lock would expire: the key's outcome is unknown");
            BackendEvent::CompletionUnknown
        }
    };
    env.metrics.count(Event::Backend { backend, what });
}
