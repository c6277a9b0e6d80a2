//! The `queue` fallback's background side, as a machine: one worker's queues (one per upstream
//! with a `queue` entry), delivered at least once, with backoff, and only when the upstream's
//! breaker admits the attempt; a delivered answer (not the `202`) completes the idempotency
//! record of a keyed request, whose lock is renewed while it waits.
//!
//! Shaped like [`crate::forward::CalloutForward`]: decisions are values. [`QueueDeliveries::next`]
//! says what to do now ([`DeliveryStep`]: send this delivery, or wait until a time), and the
//! caller reports back: the callout's token ([`QueueDeliveries::sent`]) and its answer
//! ([`QueueDeliveries::on_response`]), which settles the item, records the breaker outcome
//! and completes the key. Giving up after `max_age` drops the item and its key. The caller's
//! only work is the host's: sending callouts and arming its timer.

use std::collections::HashMap;
use std::rc::Rc;

use crate::breaker::gate as breaker_gate;
use crate::breaker::{Admission, Ticket};
use crate::config::{FallbackKind, UpstreamConfig};
use crate::header_names::{RETRY_AFTER, STATUS};
use crate::idempotency::layer::{HeldKey, IdempotencyLayer};
use crate::idempotency::machine::{renew_interval_ns, Outcome};
use crate::idempotency::response::StoredResponse;
use crate::metrics::{Event, FallbackEvent, GlobalEvent, Metrics};
use crate::outcome::classify_callout;
use crate::random::RandomSource;
use crate::request::saved::SavedRequest;
use crate::retry::retry_after::parse_retry_after;
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos};

use super::delivery::{DeliveryOutcome, DeliveryPolicy, DeliveryTicket, Due, Settled};
use super::queue::{QueueFull, QueueId, QueueLimits, RequestQueue};

/// What the machine reads and writes besides its own state.
pub struct DeliveryEnv<'a> {
    /// The configuration's upstreams (same indexes as at [`QueueDeliveries::for_upstreams`]).
    pub upstreams: &'a [UpstreamConfig],
    /// The idempotency layer, if configured: renews and completes queued keys.
    pub idempotency: Option<&'a IdempotencyLayer>,
    pub store: &'a dyn SharedStore,
    pub metrics: &'a mut dyn Metrics,
    pub rng: &'a mut dyn RandomSource,
    pub now: UnixNanos,
}

/// The idempotency record a queued request holds, which its delivered answer completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedKey {
    /// In shared data: renewed and completed here.
    Shared(HeldKey),
    /// In etcd, held in the worker's table under this id: renewed there, and completed by the
    /// caller with the [`RemoteEnding`]s it takes.
    Remote(u64),
}

/// What the caller must write for a queued key whose record lives in etcd (backend calls this
/// machine cannot make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEnding {
    /// The delivered answer completes held key `id`.
    Complete { id: u64, answer: StoredResponse },
    /// The item was given up: held key `id` is left to expire (its outcome unknown).
    Abandon(u64),
}

/// Which delivery a callout carries; handed back to [`QueueDeliveries::sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId {
    upstream: usize,
    ticket: DeliveryTicket,
    breaker: Ticket,
}

/// One delivery for the caller to send as a callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    /// The Envoy cluster to call.
    pub cluster: String,
    /// `:method`, `:path`, `:authority`, then the stored headers (idempotency key included).
    pub headers: Vec<(String, String)>,
    pub body: Rc<Vec<u8>>,
    pub timeout_ns: u64,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStep {
    /// Send this delivery now, then report its token with [`QueueDeliveries::sent`].
    Dispatch(Delivery),
    /// Nothing else is due now: wake up at this time (`None`: nothing to wait for).
    WaitUntil(Option<UnixNanos>),
}

/// A delivery on its way: what its answer is judged against.
#[derive(Debug)]
struct InFlight {
    id: DeliveryId,
    sent_at: UnixNanos,
}

/// Every queue of one worker, by upstream index; see the module docs.
#[derive(Debug, Default)]
pub struct QueueDeliveries {
    queues: Vec<Option<RequestQueue>>,
    keys: HashMap<(usize, QueueId), QueuedKey>,
    in_flight: HashMap<u32, InFlight>,
    /// Endings of keys in etcd, for the caller to write.
    remote_endings: Vec<RemoteEnding>,
    /// When the queued keyed requests' locks are renewed next (so that a client's retry gets
    /// `409` while its queued copy waits, rather than executing a second time).
    next_renew: UnixNanos,
}

impl QueueDeliveries {
    /// A queue for each upstream with a `queue` fallback; `key_header` is the idempotency
    /// header every delivery carries.
    pub fn for_upstreams(upstreams: &[UpstreamConfig], key_header: &str) -> Self {
        let queue_of = |u: &UpstreamConfig| {
            u.fallback.iter().find_map(|e| match e.kind {
                FallbackKind::Queue {
                    max_items,
                    max_bytes,
                } => Some(RequestQueue::new(
                    QueueLimits {
                        max_items,
                        max_bytes,
                    },
                    DeliveryPolicy::for_upstream(u),
                    key_header,
                )),
                _ => None,
            })
        };
        Self {
            queues: upstreams.iter().map(queue_of).collect(),
            ..Self::default()
        }
    }

    /// Accepts `request` on upstream `upstream`'s queue; `key` is the idempotency record its
    /// delivered answer completes.
    pub fn enqueue(
        &mut self,
        upstream: usize,
        request: SavedRequest,
        key: Option<QueuedKey>,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) -> Result<QueueId, QueueFull> {
        let Some(Some(queue)) = self.queues.get_mut(upstream) else {
            return Err(QueueFull::Items { max: 0 });
        };
        let id = queue.enqueue(request, rng, now)?;
        if let Some(key) = key {
            if self.keys.is_empty() {
                self.next_renew = now;
            }
            self.keys.insert((upstream, id), key);
        }
        Ok(id)
    }

    /// When something is due next: a delivery, or renewing the queued keys' locks.
    pub fn next_wake(&self) -> Option<UnixNanos> {
        let deliveries = self
            .queues
            .iter()
            .flatten()
            .filter_map(RequestQueue::next_wake)
            .min();
        let renewals = self.has_shared_keys().then_some(self.next_renew);
        deliveries.into_iter().chain(renewals).min()
    }

    /// The next thing to do at `env.now`. Call until it says [`DeliveryStep::WaitUntil`].
    pub fn next(&mut self, env: &mut DeliveryEnv<'_>) -> DeliveryStep {
        self.renew_locks(env);
        let now = env.now;
        for upstream in 0..self.queues.len() {
            let Some(config) = env.upstreams.get(upstream) else {
                continue;
            };
            while let Some(due) = self.queues[upstream].as_mut().and_then(|q| q.next_due(now)) {
                let ticket = match due {
                    Due::GiveUp { id, attempts } => {
                        log::warn!("levee: queued request {id} for \"{}\" given up after {attempts} attempt(s)", config.name);
                        if let Some(QueuedKey::Remote(held)) = self.keys.remove(&(upstream, id)) {
                            self.remote_endings.push(RemoteEnding::Abandon(held));
                        }
                        continue;
                    }
                    Due::Deliver(t) => t,
                };
                let admission = breaker_gate::admit(config, upstream, env.store, now, env.metrics);
                let breaker = match admission {
                    Admission::Allow(t) | Admission::Probe { ticket: t, .. } => t,
                    Admission::Reject { retry_after_ns } => {
                        // At least 1 ns later: due again at `now`, it would be handed out again.
                        let retry_at = now.saturating_add(retry_after_ns.max(1));
                        let not_sent = DeliveryOutcome::NotSent { retry_at };
                        self.settle(upstream, ticket, not_sent, env);
                        continue;
                    }
                };
                let Some(queue) = self.queues[upstream].as_ref() else {
                    continue;
                };
                let (Some(headers), Some(request)) =
                    (queue.call_headers(ticket.id), queue.request(ticket.id))
                else {
                    continue;
                };
                return DeliveryStep::Dispatch(Delivery {
                    id: DeliveryId {
                        upstream,
                        ticket,
                        breaker,
                    },
                    cluster: config
                        .cluster
                        .clone()
                        .unwrap_or_else(|| config.name.clone()),
                    headers,
                    body: Rc::clone(&request.body),
                    timeout_ns: duration_nanos(config.timeout),
                });
            }
        }
        DeliveryStep::WaitUntil(self.next_wake())
    }

    /// The caller sent delivery `id` as callout `token`, or the host refused it (`None`: the
    /// delivery counts as failed and is retried after its backoff).
    pub fn sent(&mut self, id: DeliveryId, token: Option<u32>, env: &mut DeliveryEnv<'_>) {
        match token {
            Some(token) => {
                let sent_at = env.now;
                self.in_flight.insert(token, InFlight { id, sent_at });
            }
            None => {
                let failed = DeliveryOutcome::Failed {
                    retry_after_ns: None,
                };
                self.settle(id.upstream, id.ticket, failed, env);
            }
        }
    }

    /// The answer to callout `token` (`headers` `None`: no answer); `None` if `token` is not
    /// a delivery. A delivered answer completes the item's idempotency record.
    pub fn on_response(
        &mut self,
        token: u32,
        headers: Option<&[(String, Vec<u8>)]>,
        body: &[u8],
        env: &mut DeliveryEnv<'_>,
    ) -> Option<Settled> {
        let InFlight { id, sent_at } = self.in_flight.remove(&token)?;
        let now = env.now;
        let header = |name: &str| {
            headers
                .and_then(|h| h.iter().find(|(k, _)| k == name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let status = header(STATUS).and_then(|s| s.parse::<u16>().ok());
        if let Some(config) = env.upstreams.get(id.upstream) {
            let elapsed = now.saturating_sub(sent_at);
            let timeout = duration_nanos(config.timeout);
            let outcome = classify_callout(
                status.is_some(),
                status.unwrap_or(0),
                elapsed,
                timeout,
                body,
            );
            let (store, metrics) = (env.store, &mut *env.metrics);
            breaker_gate::record(
                config,
                id.upstream,
                store,
                id.breaker,
                &outcome,
                now,
                metrics,
            );
        }
        let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, now));
        let outcome = DeliveryOutcome::from_status(status, retry_after);
        let settled = self.settle(id.upstream, id.ticket, outcome, env);
        if let Settled::Delivered { .. } = settled {
            env.metrics.count(Event::Fallback {
                upstream: id.upstream,
                what: FallbackEvent::Delivered,
            });
            let key = self.keys.remove(&(id.upstream, id.ticket.id));
            if let (Some(key), Some(status)) = (key, status) {
                let answer = stored_answer(status, headers.unwrap_or_default(), body);
                match key {
                    QueuedKey::Shared(key) => complete_key(key, status, &answer, env),
                    QueuedKey::Remote(id) => {
                        self.remote_endings
                            .push(RemoteEnding::Complete { id, answer });
                    }
                }
            }
        }
        Some(settled)
    }

    /// Renews the idempotency locks of queued keyed requests; a lock that was lost (retaken
    /// after an outage longer than `lock_timeout`) is forgotten.
    fn renew_locks(&mut self, env: &DeliveryEnv<'_>) {
        let Some(layer) = env.idempotency else {
            return;
        };
        if !self.has_shared_keys() || env.now < self.next_renew {
            return;
        }
        let (store, now) = (env.store, env.now);
        self.keys.retain(|_, key| match key {
            QueuedKey::Shared(key) => layer.renew(store, key.hash, key.owner, now),
            QueuedKey::Remote(_) => true,
        });
        self.next_renew = now.saturating_add(renew_interval_ns(&layer.config));
    }

    fn has_shared_keys(&self) -> bool {
        self.keys
            .values()
            .any(|k| matches!(k, QueuedKey::Shared(_)))
    }

    /// The endings of keys in etcd reached since the last call, for the caller to write.
    pub fn take_remote_endings(&mut self) -> Vec<RemoteEnding> {
        std::mem::take(&mut self.remote_endings)
    }

    fn settle(
        &mut self,
        upstream: usize,
        ticket: DeliveryTicket,
        outcome: DeliveryOutcome,
        env: &mut DeliveryEnv<'_>,
    ) -> Settled {
        match self.queues.get_mut(upstream).and_then(Option::as_mut) {
            Some(q) => q.on_delivery_result(ticket, outcome, env.rng, env.now),
            None => Settled::Stale,
        }
    }
}

/// A delivered answer as the key's record keeps it.
fn stored_answer(status: u16, headers: &[(String, Vec<u8>)], body: &[u8]) -> StoredResponse {
    StoredResponse {
        status,
        headers: headers
            .iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        body: body.to_vec(),
    }
}

/// Stores the delivered answer as the key's record.
fn complete_key(key: HeldKey, status: u16, response: &StoredResponse, env: &mut DeliveryEnv<'_>) {
    let Some(layer) = env.idempotency else {
        return;
    };
    let outcome = Outcome::Stored { status, body: None };
    if layer
        .complete(env.store, key, outcome, Some(response), env.now)
        .is_err()
    {
        env.metrics.count(Event::Global(GlobalEvent::InternalError));
    }
}
