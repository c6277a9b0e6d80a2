//! The `queue` fallback's background side: each worker's queues (in this VM's memory), and
//! their delivery to the upstream from the root context's tick, at least once, with backoff,
//! only when the upstream's breaker allows it. A delivered answer (not the `202`) completes
//! the idempotency record of a keyed request.

use std::collections::HashMap;

use crate::breaker::Ticket;
use crate::config::FallbackKind;
use crate::fallback::delivery::{DeliveryOutcome, DeliveryPolicy, DeliveryTicket, Due, Settled};
use crate::fallback::queue::{QueueFull, QueueId, QueueLimits, RequestQueue};
use crate::idempotency::machine::{renew_interval_ns, Outcome};
use crate::idempotency::response::StoredResponse;
use crate::metrics::{Event, FallbackEvent};
use crate::outcome::classify_callout;
use crate::pipeline::breaker_gate;
use crate::pipeline::idempotency_gate::HeldKey;
use crate::pipeline::{Enqueue, Plugin};
use crate::random::RandomSource;
use crate::retry::retry_after::parse_retry_after;
use crate::store::SharedStore;
use crate::time::{duration_nanos, UnixNanos};

use super::host::{Callout, Host};

/// A callout's answer as the host delivered it.
pub(crate) struct CalloutReply<'a> {
    pub(crate) headers: Option<&'a [(String, Vec<u8>)]>,
    pub(crate) body: &'a [u8],
}

struct InFlight {
    upstream: usize,
    ticket: DeliveryTicket,
    breaker: Ticket,
    sent_at: UnixNanos,
}

/// Every queue of this worker, by upstream index.
#[derive(Default)]
pub(crate) struct Queues {
    queues: Vec<Option<RequestQueue>>,
    keys: HashMap<(usize, QueueId), HeldKey>,
    in_flight: HashMap<u32, InFlight>,
    /// When the queued keyed requests' locks are renewed next (so that a client's retry gets
    /// `409` while its queued copy waits, rather than executing a second time).
    next_renew: UnixNanos,
}

impl Queues {
    pub(crate) fn for_plugin(plugin: &Plugin) -> Self {
        let key_header = plugin
            .idempotency
            .as_ref()
            .map_or("idempotency-key", |l| l.config.header.as_str());
        let queues = plugin
            .config
            .upstreams
            .iter()
            .map(|u| {
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
            })
            .collect();
        Self {
            queues,
            ..Self::default()
        }
    }

    pub(crate) fn enqueue(
        &mut self,
        e: Enqueue,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) -> Result<QueueId, QueueFull> {
        let Some(Some(queue)) = self.queues.get_mut(e.upstream) else {
            return Err(QueueFull::Items { max: 0 });
        };
        let id = queue.enqueue(e.request, rng, now)?;
        if let Some(key) = e.key {
            if self.keys.is_empty() {
                self.next_renew = now;
            }
            self.keys.insert((e.upstream, id), key);
        }
        Ok(id)
    }

    pub(crate) fn next_wake(&self) -> Option<UnixNanos> {
        let deliveries = self
            .queues
            .iter()
            .flatten()
            .filter_map(RequestQueue::next_wake)
            .min();
        let renewals = (!self.keys.is_empty()).then_some(self.next_renew);
        deliveries.into_iter().chain(renewals).min()
    }

    /// Renews the idempotency locks of queued keyed requests; a lock that was lost (retaken
    /// after an outage longer than `lock_timeout`) is forgotten.
    fn renew_locks(&mut self, plugin: &Plugin, store: &dyn SharedStore, now: UnixNanos) {
        let Some(layer) = &plugin.idempotency else {
            return;
        };
        if self.keys.is_empty() || now < self.next_renew {
            return;
        }
        self.keys
            .retain(|_, key| layer.renew(store, key.hash, key.owner, now));
        self.next_renew = now.saturating_add(renew_interval_ns(&layer.config));
    }

    /// Sends every due delivery (call from the root context).
    pub(crate) fn deliver_due(
        &mut self,
        host: &mut impl Host,
        plugin: &Plugin,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) {
        self.renew_locks(plugin, host.env_parts().0, now);
        for upstream in 0..self.queues.len() {
            let Some(config) = plugin.config.upstreams.get(upstream) else {
                continue;
            };
            while let Some(due) = self.queues[upstream].as_mut().and_then(|q| q.next_due(now)) {
                let ticket = match due {
                    Due::GiveUp { id, attempts } => {
                        log::warn!("levee: queued request {id} for \"{}\" given up after {attempts} attempt(s)", config.name);
                        self.keys.remove(&(upstream, id));
                        continue;
                    }
                    Due::Deliver(t) => t,
                };
                let (store, metrics) = host.env_parts();
                let admission = breaker_gate::admit(config, upstream, store, now, metrics);
                let Some(breaker) = admission.ticket() else {
                    let retry_at = match admission {
                        crate::breaker::Admission::Reject { retry_after_ns } => {
                            now.saturating_add(retry_after_ns)
                        }
                        _ => now,
                    };
                    self.settle(
                        upstream,
                        ticket,
                        DeliveryOutcome::NotSent { retry_at },
                        rng,
                        now,
                    );
                    continue;
                };
                let Some(headers) = self.queues[upstream]
                    .as_ref()
                    .and_then(|q| q.call_headers(ticket.id))
                else {
                    continue;
                };
                let body = self.queues[upstream]
                    .as_ref()
                    .and_then(|q| q.request(ticket.id))
                    .map(|r| r.body.clone())
                    .unwrap_or_default();
                let call = Callout {
                    cluster: config.cluster.as_deref().unwrap_or(&config.name),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    body: (!body.is_empty()).then_some(body.as_slice()),
                    timeout: std::time::Duration::from_nanos(duration_nanos(config.timeout)),
                };
                match host.dispatch_callout(call) {
                    Some(token) => {
                        self.in_flight.insert(
                            token,
                            InFlight {
                                upstream,
                                ticket,
                                breaker,
                                sent_at: now,
                            },
                        );
                    }
                    None => {
                        let failed = DeliveryOutcome::Failed {
                            retry_after_ns: None,
                        };
                        self.settle(upstream, ticket, failed, rng, now);
                    }
                }
            }
        }
    }

    /// A delivery's answer; false if `token` is not a delivery.
    pub(crate) fn on_response(
        &mut self,
        host: &mut impl Host,
        plugin: &Plugin,
        rng: &mut dyn RandomSource,
        token: u32,
        answer: CalloutReply<'_>,
        now: UnixNanos,
    ) -> bool {
        let CalloutReply { headers, body } = answer;
        let (store, metrics) = host.env_parts();
        let Some(d) = self.in_flight.remove(&token) else {
            return false;
        };
        let header = |name: &str| {
            headers
                .and_then(|h| h.iter().find(|(k, _)| k == name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        if let Some(config) = plugin.config.upstreams.get(d.upstream) {
            let timeout = duration_nanos(config.timeout);
            let outcome = classify_callout(
                status.is_some(),
                status.unwrap_or(0),
                now.saturating_sub(d.sent_at),
                timeout,
                body,
            );
            breaker_gate::record(config, d.upstream, store, d.breaker, &outcome, now, metrics);
        }
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
        let outcome = DeliveryOutcome::from_status(status, retry_after);
        if let Settled::Delivered { .. } = self.settle(d.upstream, d.ticket, outcome, rng, now) {
            metrics.count(Event::Fallback {
                upstream: d.upstream,
                what: FallbackEvent::Delivered,
            });
            if let (Some(key), Some(layer), Some(status)) = (
                self.keys.remove(&(d.upstream, d.ticket.id)),
                &plugin.idempotency,
                status,
            ) {
                let stored_headers: Vec<(String, String)> = headers
                    .unwrap_or_default()
                    .iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                let response = StoredResponse {
                    status,
                    headers: stored_headers,
                    body: body.to_vec(),
                };
                let outcome = Outcome::Stored { status, body: None };
                if layer
                    .complete(store, key, outcome, Some(&response), now)
                    .is_err()
                {
                    metrics.count(Event::Global(crate::metrics::GlobalEvent::InternalError));
                }
            }
        }
        true
    }

    fn settle(
        &mut self,
        upstream: usize,
        ticket: DeliveryTicket,
        outcome: DeliveryOutcome,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) -> Settled {
        match self.queues.get_mut(upstream).and_then(Option::as_mut) {
            Some(q) => q.on_delivery_result(ticket, outcome, rng, now),
            None => Settled::Stale,
        }
    }
}
