//! The fallback chain's part of [`RequestFlow`]: walking `upstreams.*.fallback` when the
//! breaker is open or the final attempt failed, and keeping the stale-cache copies that the
//! `stale_cache` entry serves.

use crate::config::{FallbackKind, Forward};
use crate::fallback::cacheable::{cache_key, check_body, check_headers, VaryValues};
use crate::fallback::chain::{allowed, applies_to, static_reply, Situation};
use crate::fallback::headers::{mark, stale_headers};
use crate::fallback::queue::{accepted_reply, QueueFull, QueueId, QueuedRequest};
use crate::fallback::MARK_SECONDARY;
use crate::forward::CalloutRequest;
use crate::hop_by_hop::end_to_end as without_connection_headers;
use crate::idempotency::outcome::{classify, OutcomeKind, UpstreamResult};
use crate::idempotency::response::StoredResponse;
use crate::metrics::{Event, FallbackEvent};
use crate::problem::LocalReply;
use crate::request::RequestAttributes;
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos};

use super::flow::{RequestFlow, Stage, Step};
use super::saved_request::SavedRequest;
use super::Env;
use super::Plugin;
use crate::idempotency::layer::HeldKey;

/// A walk through the fallback chain in progress.
#[derive(Debug)]
pub(super) struct FallbackRun {
    situation: Situation,
    /// The next entry to try.
    next: usize,
    /// What to answer when no entry can (`None`: let the upstream's own answer through).
    default: Option<LocalReply>,
    /// A secondary-cluster callout is in flight.
    secondary_pending: bool,
    /// Router mode, failure seen in the response: only answers that need no waiting (stale
    /// cache, static) can replace it — a local reply sent later from a timer or a callout
    /// answer does not replace a response Envoy has started encoding.
    response_phase: bool,
}

/// A request to put on the upstream's queue (the host owns the queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    pub upstream: usize,
    pub request: QueuedRequest,
    /// The idempotency record the delivered answer completes.
    pub key: Option<HeldKey>,
}

fn to_reply(resp: StoredResponse, details: &'static str) -> LocalReply {
    LocalReply {
        status: resp.status,
        headers: resp.headers,
        body: resp.body,
        details,
        grpc_status: None,
    }
}

impl RequestFlow {
    /// Keeps what the fallbacks and the cache need once the request callback is over.
    pub(super) fn keep_for_fallbacks(
        &mut self,
        plugin: &Plugin,
        req: &dyn RequestAttributes,
        end_of_stream: bool,
    ) {
        let Some(index) = self.upstream else { return };
        let Some(upstream) = plugin.config.upstreams.get(index) else {
            return;
        };
        if upstream.fallback.is_empty() && upstream.cache.is_none() {
            return;
        }
        self.saved = Some(SavedRequest::of(req, !end_of_stream));
        if let (Some(cache), Some(Some(_))) = (&upstream.cache, plugin.caches.get(index)) {
            let mut key = Vec::new();
            cache_key(req, &cache.key, &plugin.config.client_ip, &mut key);
            self.cache_key = Some(key);
        }
    }

    /// Starts the chain. `default` is the answer when nothing in it can answer.
    pub(super) fn run_fallbacks(
        &mut self,
        env: &mut Env<'_>,
        breaker_open: bool,
        default: Option<LocalReply>,
    ) -> Step {
        // The mode this request really took: a request that callout mode does not take (gRPC,
        // upgrade, CONNECT) went through the router even if its upstream says `callout`.
        let mode = if self.callout.is_some() {
            Forward::Callout
        } else {
            Forward::Router
        };
        let has_body = self.saved.as_ref().is_some_and(|s| s.has_body);
        let situation = if breaker_open {
            Situation::breaker_open(mode)
        } else {
            Situation::failed(mode, has_body)
        };
        self.fallback = Some(FallbackRun {
            situation,
            next: 0,
            default,
            secondary_pending: false,
            response_phase: !breaker_open && mode == Forward::Router,
        });
        self.next_fallback(env)
    }

    /// Tries the chain's entries from where it stopped.
    pub(super) fn next_fallback(&mut self, env: &mut Env<'_>) -> Step {
        let Env {
            plugin, store, now, ..
        } = *env;
        let Some(index) = self.upstream else {
            return self.fallback_exhausted(env, None);
        };
        let Some(upstream) = plugin.config.upstreams.get(index) else {
            return self.fallback_exhausted(env, None);
        };
        let Some(run) = self.fallback.as_mut() else {
            return Step::Continue;
        };
        let situation = run.situation;
        let response_phase = run.response_phase;
        let has_body = self.saved.as_ref().is_some_and(|s| s.has_body);
        while let Some(entry) = upstream.fallback.get(run.next) {
            run.next += 1;
            if !applies_to(entry, &self.method) || !allowed(&entry.kind, situation) {
                continue;
            }
            // Router mode never buffers the body, so it cannot resend one; and a reply sent
            // later cannot replace a response Envoy has started encoding.
            let resends = matches!(
                entry.kind,
                FallbackKind::Cluster { .. } | FallbackKind::Queue { .. }
            );
            if resends && (response_phase || (situation.mode == Forward::Router && has_body)) {
                continue;
            }
            match &entry.kind {
                FallbackKind::StaleCache { max_stale } => {
                    let (Some(Some(cache)), Some(key), Some(saved)) =
                        (plugin.caches.get(index), &self.cache_key, &self.saved)
                    else {
                        continue;
                    };
                    let hit = cache.lookup_stale(
                        store,
                        &plugin.hasher,
                        key,
                        |n| saved.header(n),
                        duration_nanos(*max_stale),
                        now,
                    );
                    if let Some((resp, age)) = hit {
                        log::warn!("levee: upstream \"{}\" unavailable; serving a stale copy ({age} s old)", upstream.name);
                        env.metrics.count(Event::Fallback {
                            upstream: index,
                            what: FallbackEvent::StaleCache,
                        });
                        let headers = stale_headers(&resp.headers, age);
                        let reply = LocalReply {
                            status: resp.status,
                            headers,
                            body: resp.body,
                            details: "levee_fallback_stale_cache",
                            grpc_status: None,
                        };
                        return self.fallback_answer(env, reply);
                    }
                }
                FallbackKind::Static { .. } => {
                    if let Some(resp) = static_reply(&entry.kind) {
                        log::warn!(
                            "levee: upstream \"{}\" unavailable; serving the static fallback",
                            upstream.name
                        );
                        env.metrics.count(Event::Fallback {
                            upstream: index,
                            what: FallbackEvent::Static,
                        });
                        return self.fallback_answer(env, to_reply(resp, "levee_fallback_static"));
                    }
                }
                FallbackKind::Cluster { cluster } => {
                    let Some(saved) = &self.saved else { continue };
                    let mut headers: Vec<(String, Vec<u8>)> = vec![
                        (":method".into(), saved.method.clone().into_bytes()),
                        (":path".into(), saved.path.clone().into_bytes()),
                        (
                            ":authority".into(),
                            upstream
                                .authority
                                .clone()
                                .unwrap_or_else(|| saved.authority.clone())
                                .into_bytes(),
                        ),
                    ];
                    let end_to_end = without_connection_headers(&saved.header_strings(), &[]);
                    headers.extend(end_to_end.into_iter().map(|(k, v)| (k, v.into_bytes())));
                    run.secondary_pending = true;
                    self.stage = Stage::Callout;
                    // The secondary may act on the request: from now on its key is not
                    // released if the client goes away (the outcome is unknown).
                    self.forwarded = true;
                    let body = std::mem::take(&mut self.fallback_body);
                    return Step::Dispatch(CalloutRequest {
                        cluster: cluster.clone(),
                        headers: std::rc::Rc::new(headers),
                        body: std::rc::Rc::new(body),
                        timeout_ns: duration_nanos(upstream.timeout),
                    });
                }
                FallbackKind::Queue { .. } => {
                    let Some(saved) = &self.saved else { continue };
                    let request = QueuedRequest {
                        method: saved.method.clone(),
                        path: saved.path.clone(),
                        authority: upstream
                            .authority
                            .clone()
                            .unwrap_or_else(|| saved.authority.clone()),
                        headers: saved.header_strings(),
                        body: self.fallback_body.clone(),
                    };
                    let key = self.keyed.as_ref().and_then(|k| {
                        k.slot.map(|slot| HeldKey {
                            hash: k.hash,
                            slot,
                            owner: k.owner,
                        })
                    });
                    return Step::Enqueue(Enqueue {
                        upstream: index,
                        request,
                        key,
                    });
                }
            }
        }
        env.metrics.count(Event::Fallback {
            upstream: index,
            what: FallbackEvent::Exhausted,
        });
        let default = self.fallback.as_mut().and_then(|r| r.default.take());
        self.fallback_exhausted(env, default)
    }

    fn fallback_exhausted(&mut self, env: &mut Env<'_>, default: Option<LocalReply>) -> Step {
        self.fallback = None;
        match default {
            Some(reply) => self.fallback_answer(env, reply),
            None => Step::Continue,
        }
    }

    fn fallback_answer(&mut self, env: &mut Env<'_>, reply: LocalReply) -> Step {
        self.fallback = None;
        self.flush_pending_result(env);
        self.finish_reply(reply)
    }

    /// Whether a callout answer belongs to the secondary-cluster fallback.
    pub(super) fn secondary_pending(&self) -> bool {
        self.fallback.as_ref().is_some_and(|r| r.secondary_pending)
    }

    /// The secondary cluster answered (or did not): serve it, or go on down the chain.
    pub(super) fn on_secondary_response(
        &mut self,
        env: &mut Env<'_>,
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: Vec<u8>,
    ) -> Step {
        let Env { plugin, .. } = *env;
        if let Some(run) = self.fallback.as_mut() {
            run.secondary_pending = false;
        }
        let headers: Vec<(String, String)> = headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok());
        match status {
            Some(status) if (100..500).contains(&status) => {
                if let Some(index) = self.upstream {
                    env.metrics.count(Event::Fallback {
                        upstream: index,
                        what: FallbackEvent::Secondary,
                    });
                    let name = plugin
                        .config
                        .upstreams
                        .get(index)
                        .map_or("", |u| u.name.as_str());
                    log::warn!(
                        "levee: upstream \"{name}\" unavailable; answered by the secondary cluster"
                    );
                }
                let mut headers = without_connection_headers(&headers, &["content-length"]);
                headers.retain(|(k, _)| !k.starts_with(':'));
                mark(&mut headers, MARK_SECONDARY);
                // The secondary executed the request: its answer completes the key's record.
                let result = UpstreamResult::Response {
                    status,
                    body_bytes: body.len() as u64,
                };
                self.pending_result = Some((result, Some((status, headers.clone(), body.clone()))));
                let reply = LocalReply {
                    status,
                    headers,
                    body,
                    details: "levee_fallback_secondary",
                    grpc_status: None,
                };
                self.fallback_answer(env, reply)
            }
            failed => {
                // Nothing happened at the primary (released): the secondary's failure
                // decides — a reset or timeout there may have acted (unknown).
                let released = match (&plugin.idempotency, &self.pending_result) {
                    (Some(layer), Some((r, _))) => {
                        classify(&layer.config, *r) == OutcomeKind::Released
                    }
                    _ => true,
                };
                if released {
                    let result = match failed {
                        Some(status) => UpstreamResult::Response {
                            status,
                            body_bytes: body.len() as u64,
                        },
                        None => UpstreamResult::Reset,
                    };
                    self.pending_result = Some((result, None));
                }
                self.next_fallback(env)
            }
        }
    }

    /// The host tried to queue the request: `202` with its id, or on to the next entry.
    pub fn on_enqueued(&mut self, env: &mut Env<'_>, result: Result<QueueId, QueueFull>) -> Step {
        match result {
            Ok(id) => {
                if let Some(index) = self.upstream {
                    env.metrics.count(Event::Fallback {
                        upstream: index,
                        what: FallbackEvent::Queued,
                    });
                    log::warn!("levee: upstream unavailable; request queued as {id}");
                }
                // The delivered answer, not this 202, completes the idempotency record.
                if let Some(k) = self.keyed.as_mut() {
                    k.finished = true;
                }
                self.pending_result = None;
                self.fallback_answer(env, to_reply(accepted_reply(id), "levee_fallback_queued"))
            }
            Err(full) => {
                log::warn!("levee: cannot queue the request: {full}");
                self.next_fallback(env)
            }
        }
    }

    /// An upstream answer went to the client (callout mode, or router mode once its body is
    /// complete): keep it for the stale cache if the rules allow.
    pub(super) fn keep_in_cache(
        &self,
        plugin: &Plugin,
        store: &dyn SharedStore,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        now: UnixNanos,
    ) {
        let (Some(index), Some(key), Some(saved)) = (self.upstream, &self.cache_key, &self.saved)
        else {
            return;
        };
        let (Some(Some(cache)), Some(cfg)) = (
            plugin.caches.get(index),
            plugin
                .config
                .upstreams
                .get(index)
                .and_then(|u| u.cache.as_ref()),
        ) else {
            return;
        };
        if check_headers(saved, status, headers).is_err()
            || check_body(body.len() as u64, cfg.max_body_bytes).is_err()
        {
            return;
        }
        let Ok(vary) = VaryValues::from_request(headers, saved) else {
            return;
        };
        let resp = StoredResponse {
            status,
            headers: headers.to_vec(),
            body: body.to_vec(),
        };
        if let Err(e) = cache.store_response(store, &plugin.hasher, key, &vary, &resp, now) {
            log::debug!("levee: answer not cached: {e:?}");
        }
    }

    /// Router mode: whether the upstream's answer may go into the stale cache (then its body
    /// is captured as it passes).
    pub(super) fn cache_wants(
        &self,
        plugin: &Plugin,
        status: u16,
        headers: &[(String, String)],
    ) -> bool {
        let (Some(index), Some(_), Some(saved)) = (self.upstream, &self.cache_key, &self.saved)
        else {
            return false;
        };
        matches!(plugin.caches.get(index), Some(Some(_)))
            && check_headers(saved, status, headers).is_ok()
    }
}
