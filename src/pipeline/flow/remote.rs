//! A keyed request whose record lives in etcd (`idempotency.backend`): the claim as backend
//! calls the request waits for, the fence forwarded upstream (router, callout attempts, the
//! secondary cluster, the queue), and then the key handed to the worker's table: its lock
//! renewed from the request's timer, its ending written in the background once the request
//! reached one — or, when the queue takes the request, renewed by the worker until the
//! delivery completes it.
//!
//! The claim's decisions are the shared-data store's ([`Claimed`]), so everything after the
//! claim — forwarding, capturing the answer, releasing — is the same code. When etcd cannot be
//! reached, `on_backend_error` decides: `deny` answers `503` with `Retry-After` and forwards
//! nothing, `allow` forwards the request without a record; both are counted per backend.

use crate::config::IdempotencyOnBackendError;
use crate::idempotency::machine::renew_interval_ns;
use crate::idempotency::remote::{
    etcd_answer, on_backend_error, record_key, Call, RemoteKey, Step as Machine, FENCE_HEADER,
};
use crate::idempotency::request::Claimed;
use crate::metrics::{BackendEvent, Event};
use crate::time::UnixNanos;

use super::{Await, RemoteAnswer, RequestFlow, Stage, Step};
use crate::fallback::deliveries::QueuedKey;
use crate::idempotency::request::KeyedRequest;
use crate::pipeline::etcd_records::{
    complete_in_background, hold_in_background, park_in_background, renew_in_background,
};
use crate::pipeline::Env;

/// The key's record in etcd, as this request sees it.
#[derive(Debug)]
pub(super) enum RemoteRecord {
    /// Being claimed by this request's own calls (`call`: the one awaiting its answer).
    Claiming {
        key: Box<RemoteKey>,
        call: Option<Call>,
    },
    /// The request's: held in the worker's table under this id, renewed and completed there.
    Held(u64),
}

impl RequestFlow {
    /// Whether this request's key is claimed in etcd rather than in shared data.
    pub(super) fn claims_remotely(&self, env: &Env<'_>) -> bool {
        env.plugin.etcd_records.is_some() && self.key.keyed().is_some()
    }

    /// Starts (or, after a wait, repeats) the claim in etcd.
    pub(super) fn claim_remote(&mut self, env: &mut Env<'_>) -> Step {
        let plugin = env.plugin;
        let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
            return self.forward(env);
        };
        if self.remote.is_none() {
            let owner = self.owner;
            let Some((scoped, key, fingerprint)) =
                self.key.keyed_mut().and_then(|k| k.backend_claim())
            else {
                return self.forward(env);
            };
            let etcd_key = record_key(&records.target.prefix, scoped, key.as_bytes());
            let rk = RemoteKey::new(etcd_key, key.header_value(), owner, fingerprint);
            let (key, call) = (Box::new(rk), None);
            self.remote = Some(RemoteRecord::Claiming { key, call });
        }
        let Some(RemoteRecord::Claiming { key, .. }) = self.remote.as_mut() else {
            return self.forward(env);
        };
        let step = records.step(&layer.config, env.now, |re| key.claim(re));
        self.follow_remote(env, step)
    }

    /// The answer to the claim's call.
    pub(super) fn remote_claim_answered(
        &mut self,
        env: &mut Env<'_>,
        answer: RemoteAnswer,
    ) -> Option<Step> {
        if !matches!(self.stage, Stage::Claiming) {
            return None;
        }
        let plugin = env.plugin;
        let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
            return None;
        };
        let Some(RemoteRecord::Claiming { key, call }) = self.remote.as_mut() else {
            return None;
        };
        let etcd = etcd_answer(&call.take()?, &answer);
        let step = records.step(&layer.config, env.now, |re| key.on_answer(re, etcd));
        Some(self.follow_remote(env, step))
    }

    fn follow_remote(&mut self, env: &mut Env<'_>, step: Machine) -> Step {
        let plugin = env.plugin;
        let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
            return self.forward(env);
        };
        if let Some(RemoteRecord::Claiming { key, .. }) = self.remote.as_mut() {
            if let Some(event) = key.take_counted() {
                env.metrics.count(Event::Idempotency(event));
            }
        }
        match step {
            Machine::Send(sent) => {
                let remote = records.target.call(&sent);
                if let Some(RemoteRecord::Claiming { call, .. }) = self.remote.as_mut() {
                    *call = Some(sent);
                }
                self.stage = Stage::Claiming;
                Step::Await(Await::Remote(remote))
            }
            Machine::Claimed(Claimed::Execute { renew_at }) => {
                let Some(RemoteRecord::Claiming { key, .. }) = self.remote.take() else {
                    return self.forward(env);
                };
                if let Some(fence) = key.fence() {
                    self.forward_fence(&fence.to_string());
                }
                self.remote = hold_in_background(env, *key).map(RemoteRecord::Held);
                if let Some(k) = self.key.keyed_mut() {
                    k.held_in_backend();
                }
                // The lock is renewed while the request runs, as in shared data.
                self.timer = Some((renew_at, crate::timer_queue::TimerPurpose::Renew));
                self.forward(env)
            }
            Machine::Claimed(claimed) => self.claimed(env, claimed),
            _ => {
                let policy = layer.config.on_backend_error;
                let what = match policy {
                    IdempotencyOnBackendError::Deny => BackendEvent::DecisionDeny,
                    IdempotencyOnBackendError::Allow => BackendEvent::DecisionAllow,
                };
                let backend = records.target.backend;
                env.metrics.count(Event::Backend { backend, what });
                log::warn!("levee idempotency: the record store cannot be reached ({policy:?})");
                self.remote = None;
                self.claimed(env, on_backend_error(policy))
            }
        }
    }

    /// Every copy of the request that may reach an upstream carries the fence: the router's
    /// (request headers set before it goes on), callout mode's buffered request, and the copy
    /// kept for the secondary cluster and the queue.
    fn forward_fence(&mut self, fence: &str) {
        if let Some(intake) = self.intake.as_mut() {
            intake.head.set_header(FENCE_HEADER, fence.as_bytes());
        } else {
            let header = (FENCE_HEADER.to_string(), fence.to_string());
            self.request_headers.push(header);
        }
        if let Some(kept) = self.kept.as_mut() {
            kept.saved.set_header(FENCE_HEADER, fence.as_bytes());
        }
    }

    /// Writes the ending the request reached (stored, released, unknown) to etcd in the
    /// background; the request's own context may end before etcd answers.
    pub(super) fn write_remote_ending(&mut self, env: &mut Env<'_>) {
        let Some(ending) = self.key.keyed_mut().and_then(|k| k.take_backend_ending()) else {
            return;
        };
        if let Some(RemoteRecord::Held(id)) = self.remote.take() {
            complete_in_background(env, id, ending.0, ending.1);
        }
    }

    /// The record the queue's delivery completes: this request's key, in etcd or shared data.
    pub(super) fn queued_key(&self) -> Option<QueuedKey> {
        match self.remote {
            Some(RemoteRecord::Held(id)) => Some(QueuedKey::Remote(id)),
            Some(RemoteRecord::Claiming { .. }) => None,
            None => self
                .key
                .keyed()
                .and_then(KeyedRequest::held)
                .map(QueuedKey::Shared),
        }
    }

    /// The queue took the request: a key held in etcd is renewed by the worker from now on,
    /// and completed by the delivery.
    pub(super) fn hand_key_to_queue(&mut self, env: &mut Env<'_>) {
        if let Some(RemoteRecord::Held(id)) = self.remote.take() {
            park_in_background(env, id);
        }
    }

    /// The lock renewal is due (shared data or etcd): the next one's time, or `None` when
    /// the lock is no longer this request's.
    pub(super) fn renew_lock(&mut self, env: &mut Env<'_>) -> Option<UnixNanos> {
        let layer = env.plugin.idempotency.as_ref()?;
        let k = self.key.keyed_mut().filter(|k| k.owns())?;
        match self.remote {
            Some(RemoteRecord::Held(id)) => renew_in_background(env, id)
                .then(|| env.now.saturating_add(renew_interval_ns(&layer.config))),
            Some(RemoteRecord::Claiming { .. }) => None,
            None => k.renew(layer, env.store, env.now),
        }
    }

    /// Request headers to add or replace before the request goes on (the fence).
    pub fn take_request_headers(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.request_headers)
    }
}
