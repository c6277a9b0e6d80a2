//! The request body's part of the sequence: a request is held for its body when a layer
//! needs all of it (the idempotency fingerprint, callout mode), bounded by `max_body_bytes`,
//! and answered `500` when Envoy never passes it.

use crate::idempotency::request::KeyedRequest;
use crate::metrics::{Event, GlobalEvent};
use crate::pipeline::Env;
use crate::problem::{problem, ProblemKind};

use super::{Await, RequestFlow, Stage, Step};

impl RequestFlow {
    /// Whether request body chunks should be passed to [`RequestFlow::on_request_body`].
    pub fn wants_body(&self) -> bool {
        // While the shaper holds the request, Envoy may deliver (and then never repeat) the
        // body: read it then too, if a later layer will need it.
        matches!(self.stage, Stage::AwaitBody)
            || (matches!(self.stage, Stage::Shaped) && self.needs_body())
    }

    /// A later layer needs the whole body: the idempotency fingerprint or callout mode.
    pub(super) fn needs_body(&self) -> bool {
        self.key.keyed().is_some_and(KeyedRequest::needs_body) || self.intake.is_some()
    }

    /// Request body bytes already passed in (the host reads only what is new).
    pub fn body_seen(&self) -> u64 {
        self.body_seen
    }

    /// A chunk of the request body arrived while held for it.
    pub fn on_request_body(
        &mut self,
        env: &mut Env<'_>,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Step {
        let plugin = env.plugin;
        self.body_seen = self.body_seen.saturating_add(chunk.len() as u64);
        let idem_max = plugin
            .idempotency
            .as_ref()
            .filter(|_| self.key.keyed().is_some())
            .map(|l| l.config.max_body_bytes);
        let callout_max = self.callout_upstream(plugin).map(|u| u.max_body_bytes);
        let max = idem_max.into_iter().chain(callout_max).min();
        if let Some(max) = max.filter(|max| self.body_seen > *max) {
            let detail = format!("the request body exceeds {max} bytes (max_body_bytes)");
            let reply = problem(ProblemKind::PayloadTooLarge, 413, &detail, &[]);
            return self.answer(env, reply);
        }
        if let Some(k) = self.key.keyed_mut() {
            k.update_fingerprint(chunk);
        }
        if let Some(intake) = self.intake.as_mut() {
            intake.body.extend_from_slice(chunk);
        }
        if !end_of_stream {
            return Step::Await(Await::Body);
        }
        // The whole request is here (`after_rate_limits` sees it so once the shaper lets a
        // held request go).
        self.end_of_stream = true;
        if matches!(self.stage, Stage::Shaped) {
            return Step::Await(Await::Body);
        }
        self.after_body(env)
    }

    /// The body never came: `allow_on_headers_stop_iteration` is missing from the plugin config.
    pub(super) fn body_not_delivered(&mut self, env: &mut Env<'_>) -> Step {
        // The host logs one critical line per worker; this one is per request.
        log::debug!("levee: a request held for its body saw no body callback");
        env.metrics
            .count(Event::Global(GlobalEvent::BodyNotDelivered));
        let reply = problem(
            ProblemKind::BodyNotDelivered,
            500,
            "levee needs the request body, but Envoy did not pass it: set allow_on_headers_stop_iteration: true in the wasm plugin config",
            &[("setting", "allow_on_headers_stop_iteration")],
        );
        self.answer(env, reply)
    }
}
