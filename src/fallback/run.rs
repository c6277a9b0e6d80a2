//! One request's walk down its upstream's fallback chain, as a machine: each call to
//! [`FallbackRun::next`] tries the entries from where the walk stopped and says what to do —
//! serve an answer, send the request to the secondary cluster, hand it to the queue, or give
//! up with the default answer. An entry that cannot answer (cache miss, secondary failed,
//! queue full) passes to the next.

use crate::config::{FallbackKind, Forward, UpstreamConfig};
use crate::forward::CalloutRequest;
use crate::header_names::{AUTHORITY, CONTENT_LENGTH, METHOD, PATH, STATUS};
use crate::hop_by_hop::end_to_end as without_connection_headers;
use crate::idempotency::response::StoredResponse;
use crate::metrics::{Event, FallbackEvent, Metrics};
use crate::problem::LocalReply;
use crate::request::saved::SavedRequest;
use crate::request::RequestAttributes;
use crate::store::hash::KeyHasher;
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos};

use super::cache::StaleCache;
use super::chain::{allowed, applies_to, static_reply, Situation};
use super::headers::{mark, stale_headers};
use super::kept::KeptRequest;
use super::MARK_SECONDARY;

/// The upstream whose chain is walked, and what its entries read.
pub struct Chain<'a> {
    pub index: usize,
    pub upstream: &'a UpstreamConfig,
    pub cache: Option<&'a StaleCache>,
    pub hasher: &'a KeyHasher,
}

/// A walk through the fallback chain in progress.
#[derive(Debug)]
pub struct FallbackRun {
    situation: Situation,
    /// The next entry to try.
    next: usize,
    /// What to answer when no entry can (`None`: let the upstream's own answer through).
    default: Option<LocalReply>,
    /// Router mode, failure seen in the response: only answers that need no waiting (stale
    /// cache, static) can replace it — a local reply sent later from a timer or a callout
    /// answer does not replace a response Envoy has started encoding.
    response_phase: bool,
}

/// What the chain decided.
#[derive(Debug)]
pub enum FallbackStep {
    /// Serve this answer.
    Answer(LocalReply),
    /// Send the request to the secondary cluster; pass its answer to [`secondary_answer`].
    Secondary(CalloutRequest),
    /// Put the request on the upstream's queue.
    Enqueue(SavedRequest),
    /// No entry could answer: the default answer, or `None` to let the upstream's through.
    Exhausted(Option<LocalReply>),
}

/// The secondary cluster's answer, judged.
#[derive(Debug)]
pub enum SecondaryAnswer {
    /// Served to the client: it executed the request, its answer completes the key's record.
    Served(LocalReply),
    /// It failed too (`None`: no status at all): on to the next entry.
    Failed(Option<u16>),
}

impl FallbackRun {
    /// Starts a walk. `mode` is how the request really went (a request that callout mode does
    /// not take went through the router); `default` answers when nothing in the chain can.
    pub fn start(
        mode: Forward,
        breaker_open: bool,
        has_body: bool,
        default: Option<LocalReply>,
    ) -> Self {
        let situation = if breaker_open {
            Situation::breaker_open(mode)
        } else {
            Situation::failed(mode, has_body)
        };
        Self {
            situation,
            next: 0,
            default,
            response_phase: !breaker_open && mode == Forward::Router,
        }
    }

    /// Tries the chain's entries from where the walk stopped.
    pub fn next(
        &mut self,
        chain: &Chain<'_>,
        method: &str,
        mut kept: Option<&mut KeptRequest>,
        store: &dyn SharedStore,
        now: UnixNanos,
        metrics: &mut dyn Metrics,
    ) -> FallbackStep {
        let (index, upstream) = (chain.index, chain.upstream);
        let has_body = kept.as_ref().is_some_and(|k| k.has_body);
        while let Some(entry) = upstream.fallback.get(self.next) {
            self.next += 1;
            if !applies_to(entry, method) || !allowed(&entry.kind, self.situation) {
                continue;
            }
            // Router mode never buffers the body, so it cannot resend one; and a reply sent
            // later cannot replace a response Envoy has started encoding.
            let resends = matches!(
                entry.kind,
                FallbackKind::Cluster { .. } | FallbackKind::Queue { .. }
            );
            let router_body = self.situation.mode == Forward::Router && has_body;
            if resends && (self.response_phase || router_body) {
                continue;
            }
            let Some(kept) = kept.as_deref_mut() else {
                if let FallbackKind::Static { .. } = &entry.kind {
                    if let Some(step) = serve_static(chain, &entry.kind, metrics) {
                        return step;
                    }
                }
                continue;
            };
            let step = match &entry.kind {
                FallbackKind::StaleCache { max_stale } => {
                    stale(chain, kept, duration_nanos(*max_stale), store, now, metrics)
                }
                FallbackKind::Static { .. } => serve_static(chain, &entry.kind, metrics),
                FallbackKind::Cluster { cluster } => Some(secondary(upstream, cluster, kept)),
                FallbackKind::Queue { .. } => Some(FallbackStep::Enqueue(SavedRequest {
                    authority: upstream
                        .authority
                        .clone()
                        .unwrap_or_else(|| kept.saved.authority.clone()),
                    ..kept.saved.clone()
                })),
            };
            if let Some(step) = step {
                return step;
            }
        }
        metrics.count(Event::Fallback {
            upstream: index,
            what: FallbackEvent::Exhausted,
        });
        FallbackStep::Exhausted(self.default.take())
    }
}

fn stale(
    chain: &Chain<'_>,
    kept: &KeptRequest,
    max_stale_ns: u64,
    store: &dyn SharedStore,
    now: UnixNanos,
    metrics: &mut dyn Metrics,
) -> Option<FallbackStep> {
    let (cache, key) = (chain.cache?, kept.cache_key.as_ref()?);
    let saved = &kept.saved;
    let (resp, age) = cache.lookup_stale(
        store,
        chain.hasher,
        key,
        |n| saved.header(n),
        max_stale_ns,
        now,
    )?;
    log::warn!(
        "levee: upstream \"{}\" unavailable; serving a stale copy ({age} s old)",
        chain.upstream.name
    );
    metrics.count(Event::Fallback {
        upstream: chain.index,
        what: FallbackEvent::StaleCache,
    });
    Some(FallbackStep::Answer(LocalReply {
        status: resp.status,
        headers: stale_headers(&resp.headers, age),
        body: resp.body,
        details: "levee_fallback_stale_cache",
        grpc_status: None,
    }))
}

fn serve_static(
    chain: &Chain<'_>,
    kind: &FallbackKind,
    metrics: &mut dyn Metrics,
) -> Option<FallbackStep> {
    let resp = static_reply(kind)?;
    log::warn!(
        "levee: upstream \"{}\" unavailable; serving the static fallback",
        chain.upstream.name
    );
    metrics.count(Event::Fallback {
        upstream: chain.index,
        what: FallbackEvent::Static,
    });
    Some(FallbackStep::Answer(to_reply(
        resp,
        "levee_fallback_static",
    )))
}

/// The request for the secondary cluster (its body is shared, not copied).
fn secondary(upstream: &UpstreamConfig, cluster: &str, kept: &KeptRequest) -> FallbackStep {
    let saved = &kept.saved;
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (METHOD.into(), saved.method.clone().into_bytes()),
        (PATH.into(), saved.path.clone().into_bytes()),
        (
            AUTHORITY.into(),
            upstream
                .authority
                .clone()
                .unwrap_or_else(|| saved.authority.clone())
                .into_bytes(),
        ),
    ];
    headers.extend(without_connection_headers(&saved.headers, &[]));
    FallbackStep::Secondary(CalloutRequest {
        cluster: cluster.to_string(),
        headers: std::rc::Rc::new(headers),
        body: std::rc::Rc::clone(&saved.body),
        timeout_ns: duration_nanos(upstream.timeout),
    })
}

/// Judges the secondary cluster's answer (`headers` `None`: it never answered).
pub fn secondary_answer(
    chain_index: usize,
    upstream_name: &str,
    headers: Option<Vec<(String, Vec<u8>)>>,
    body: Vec<u8>,
    metrics: &mut dyn Metrics,
) -> SecondaryAnswer {
    let headers: Vec<(String, String)> = headers
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let status = headers
        .iter()
        .find(|(k, _)| k == STATUS)
        .and_then(|(_, v)| v.parse::<u16>().ok());
    match status {
        Some(status) if (100..500).contains(&status) => {
            metrics.count(Event::Fallback {
                upstream: chain_index,
                what: FallbackEvent::Secondary,
            });
            log::warn!(
                "levee: upstream \"{upstream_name}\" unavailable; answered by the secondary cluster"
            );
            let mut headers = without_connection_headers(&headers, &[CONTENT_LENGTH]);
            headers.retain(|(k, _)| !k.starts_with(':'));
            mark(&mut headers, MARK_SECONDARY);
            SecondaryAnswer::Served(LocalReply {
                status,
                headers,
                body,
                details: "levee_fallback_secondary",
                grpc_status: None,
            })
        }
        failed => SecondaryAnswer::Failed(failed),
    }
}

/// A stored answer as a reply with Envoy's response code `details`.
pub fn to_reply(resp: StoredResponse, details: &'static str) -> LocalReply {
    LocalReply {
        status: resp.status,
        headers: resp.headers,
        body: resp.body,
        details,
        grpc_status: None,
    }
}
