//! The answer's way back in router mode, and the end of the stream: the breaker learns how
//! the attempt went, the idempotency record and the stale cache capture the answer as it
//! passes, and a failure may still be replaced by a fallback that needs no waiting.

use crate::config::Forward;
use crate::fallback::kept::KeptRequest;
use crate::idempotency::outcome::AnswerParts;
use crate::idempotency::request::KeyedRequest;
use crate::outcome::is_failure;
use crate::pipeline::step::UpstreamAnswer;
use crate::pipeline::Env;

use super::{key_env, routed, RequestFlow, Stage, Step};

impl RequestFlow {
    /// The upstream's response headers arrived: feed the breaker and the idempotency record,
    /// and return the headers levee adds.
    pub fn on_response_headers(
        &mut self,
        env: &mut Env<'_>,
        answer: UpstreamAnswer,
    ) -> (Vec<(String, String)>, Option<Step>) {
        let plugin = env.plugin;
        let upstream = routed(plugin, self.upstream);
        let Stage::Forwarded(router) = &mut self.stage else {
            return (std::mem::take(&mut self.response_headers), None);
        };
        let (status, end_of_stream) = (answer.status, answer.end_of_stream);
        let outcome = router.on_answer(
            upstream,
            env.store,
            status,
            answer.flags,
            env.now,
            env.metrics,
        );
        if let Some(kept) = self.kept.as_mut().filter(|_| !end_of_stream) {
            kept.capture_if_cacheable(status, &answer.headers);
        }
        // The upstream saw the request: its answer decides the idempotency record, whatever a
        // fallback then shows the client.
        if let Some(k) = self.key.keyed_mut() {
            self.response_headers.push(k.echo());
            if let Some(mut ke) = key_env(env) {
                k.on_response_headers(&mut ke, &outcome, status, answer.headers, end_of_stream);
            }
        }
        let has_fallbacks = upstream.is_some_and(|(_, u)| !u.fallback.is_empty());
        if has_fallbacks && is_failure(&outcome) {
            let step = self.run_fallbacks(env, Forward::Router, false, None);
            if step != Step::Continue {
                // The upstream's body will not pass: keep "completed with its status" only.
                if let Some(kept) = self.kept.as_mut() {
                    kept.drop_capture();
                }
                if let (Some(k), Some(mut ke)) = (self.key.keyed_mut(), key_env(env)) {
                    k.finish_without_body(&mut ke, status);
                }
                self.write_remote_ending(env);
                return (Vec::new(), Some(step));
            }
        }
        self.write_remote_ending(env);
        (std::mem::take(&mut self.response_headers), None)
    }

    /// The headers levee adds to an answer it has nothing to learn from (the router did not
    /// forward this request for levee: no breaker, record or cache waits for it), or `None`
    /// when [`RequestFlow::on_response_headers`] must see the answer.
    pub fn response_headers_unobserved(&mut self) -> Option<Vec<(String, String)>> {
        (!matches!(self.stage, Stage::Forwarded(_)))
            .then(|| std::mem::take(&mut self.response_headers))
    }

    /// The time [`RequestFlow::on_response_headers`] may take for "now" when `answer` needs no
    /// fresh clock: a router-mode answer with no idempotency record, no stale-cache copy and no
    /// fallbacks, whose breaker needs no time either ([`crate::forward::router::RouterForward::clock_free`]).
    /// `None`: read the clock.
    pub fn clock_free_answer(
        &self,
        plugin: &crate::pipeline::Plugin,
        answer: &UpstreamAnswer,
    ) -> Option<crate::time::UnixNanos> {
        let Stage::Forwarded(router) = &self.stage else {
            return None;
        };
        let upstream = routed(plugin, self.upstream);
        if self.key.keyed().is_some()
            || self.kept.is_some()
            || upstream.is_some_and(|(_, u)| !u.fallback.is_empty())
        {
            return None;
        }
        router.clock_free(upstream.map(|(_, u)| u), answer.status, answer.flags)
    }

    /// Whether the response callback needs the upstream's status, flags and headers.
    pub fn wants_response_headers(&self) -> bool {
        let Stage::Forwarded(router) = &self.stage else {
            return false;
        };
        router.awaits_outcome() || self.key.owns() || self.kept.is_some()
    }

    /// Whether the response callback needs every response header (to store or cache the
    /// answer), not just the status.
    pub fn wants_response_header_list(&self) -> bool {
        self.key.owns() || self.kept.is_some()
    }

    /// Whether response body chunks should be passed to [`RequestFlow::on_response_body`].
    pub fn wants_response_body(&self) -> bool {
        self.key.keyed().is_some_and(KeyedRequest::capturing)
            || self.kept.as_deref().is_some_and(KeptRequest::capturing)
    }

    /// A chunk of the upstream's response body (router mode), observed without holding it.
    pub fn on_response_body(&mut self, env: &mut Env<'_>, chunk: &[u8], end_of_stream: bool) {
        let plugin = env.plugin;
        if let Some(k) = self.key.keyed_mut() {
            let max = plugin
                .idempotency
                .as_ref()
                .map_or(0, |l| l.config.max_body_bytes);
            k.capture_chunk(chunk, max);
        }
        if let Some(kept) = self.kept.as_mut() {
            let max = routed(plugin, self.upstream)
                .and_then(|(_, u)| u.cache.as_ref())
                .map_or(0, |c| c.max_body_bytes);
            kept.capture_chunk(chunk, max);
        }
        if end_of_stream {
            if let (Some(k), Some(mut ke)) = (self.key.keyed_mut(), key_env(env)) {
                k.finish_capture(&mut ke);
            }
            if let Some(c) = self.kept.as_deref_mut().and_then(KeptRequest::take_capture) {
                self.keep_in_cache(env, (c.status, &c.headers, &c.body));
            }
            self.write_remote_ending(env);
        }
    }

    /// An upstream answer went to the client (callout mode, or router mode once its body is
    /// complete): keep it for the stale cache if the rules allow.
    pub(super) fn keep_in_cache(&self, env: &Env<'_>, answer: AnswerParts<'_>) {
        let plugin = env.plugin;
        let (Some((index, upstream)), Some(kept)) = (routed(plugin, self.upstream), &self.kept)
        else {
            return;
        };
        let (Some(Some(cache)), Some(cfg)) = (plugin.caches.get(index), &upstream.cache) else {
            return;
        };
        let hasher = &plugin.hasher;
        kept.keep_in_cache(
            cache,
            cfg.max_body_bytes,
            hasher,
            env.store,
            answer,
            env.now,
        );
    }

    /// Whether [`RequestFlow::on_done`] has anything to do: an idempotency key still held,
    /// or a callout loop to stop.
    pub fn has_loose_ends(&self) -> bool {
        self.key.owns() || matches!(&self.stage, Stage::Callout(f) if f.is_active())
    }

    /// The stream ended (completed, reset, or the client went away).
    pub fn on_done(&mut self, env: &mut Env<'_>) {
        if let Stage::Callout(forward) = &mut self.stage {
            forward.cancel();
        }
        if let (Some(k), Some(mut ke)) = (self.key.keyed_mut(), key_env(env)) {
            k.on_done(&mut ke);
        }
        self.write_remote_ending(env);
    }
}
