//! A keyed request whose record lives in etcd (`idempotency.backend`): the claim as backend
//! calls the request waits for, the fence forwarded upstream, and the ending written in the
//! background once the request reached one.
//!
//! The claim's decisions are the shared-data store's ([`Claimed`]), so everything after the
//! claim — forwarding, capturing the answer, releasing — is the same code. When etcd cannot be
//! reached, `on_backend_error` decides: `deny` answers `503` with `Retry-After` and forwards
//! nothing, `allow` forwards the request without a record; both are counted per backend.

use crate::config::IdempotencyOnBackendError;
use crate::idempotency::remote::{
    etcd_answer, on_backend_error, record_key, RemoteKey, Step as Machine, FENCE_HEADER,
};
use crate::idempotency::request::Claimed;
use crate::metrics::{BackendEvent, Event};

use super::{Await, RemoteAnswer, RequestFlow, Stage, Step};
use crate::pipeline::etcd_records::complete_in_background;
use crate::pipeline::Env;

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
            self.remote = Some(Box::new(rk));
        }
        let Some(rk) = self.remote.as_mut() else {
            return self.forward(env);
        };
        let step = records.step(&layer.config, env.now, |re| rk.claim(re));
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
        let (Some(call), Some(rk)) = (self.remote_call.take(), self.remote.as_mut()) else {
            return None;
        };
        let etcd = etcd_answer(&call, &answer);
        let step = records.step(&layer.config, env.now, |re| rk.on_answer(re, etcd));
        Some(self.follow_remote(env, step))
    }

    fn follow_remote(&mut self, env: &mut Env<'_>, step: Machine) -> Step {
        let plugin = env.plugin;
        let (Some(records), Some(layer)) = (&plugin.etcd_records, &plugin.idempotency) else {
            return self.forward(env);
        };
        match step {
            Machine::Send(call) => {
                let remote = records.target.call(&call);
                self.remote_call = Some(call);
                self.stage = Stage::Claiming;
                Step::Await(Await::Remote(remote))
            }
            Machine::Claimed(Claimed::Execute { .. }) => {
                if let Some(fence) = self.remote.as_ref().and_then(|rk| rk.fence()) {
                    self.forward_fence(&fence.to_string());
                }
                if let Some(k) = self.key.keyed_mut() {
                    k.held_in_backend();
                }
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
        if let Some(rk) = self.remote.take() {
            complete_in_background(env, *rk, ending.0, ending.1);
        }
    }

    /// Request headers to add or replace before the request goes on (the fence).
    pub fn take_request_headers(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.request_headers)
    }
}
