//! The `queue` fallback's background side in the worker: the host calls that
//! [`QueueDeliveries`] asks for. Deliveries go out from the root context's tick; the machine
//! decides what is due, what the breaker allows, and what an answer settles.

use crate::config::defaults::IDEMPOTENCY_HEADER;
use crate::fallback::deliveries::{DeliveryEnv, DeliveryStep, QueueDeliveries, RemoteEnding};
use crate::fallback::queue::{QueueFull, QueueId};
use crate::idempotency::machine::Outcome;
use crate::pipeline::etcd_records::{abandon_in_background, complete_in_background};
use crate::pipeline::{Enqueue, Plugin};
use crate::random::RandomSource;
use crate::time::UnixNanos;

use super::host::{Callout, Host};
use super::Worker;

/// A callout's answer as the host delivered it.
pub(crate) struct CalloutReply<'a> {
    pub(crate) headers: Option<&'a [(String, Vec<u8>)]>,
    pub(crate) body: &'a [u8],
}

/// Every queue of this worker.
#[derive(Default)]
pub(crate) struct Queues {
    deliveries: QueueDeliveries,
}

/// The machine's environment, borrowed from the host for one call.
fn env<'a>(
    host: &'a mut impl Host,
    plugin: &'a Plugin,
    rng: &'a mut dyn RandomSource,
    now: UnixNanos,
) -> DeliveryEnv<'a> {
    let (store, metrics) = host.env_parts();
    DeliveryEnv {
        upstreams: &plugin.config.upstreams,
        idempotency: plugin.idempotency.as_ref(),
        store,
        metrics,
        rng,
        now,
    }
}

impl Queues {
    pub(crate) fn for_plugin(plugin: &Plugin) -> Self {
        let key_header = plugin
            .idempotency
            .as_ref()
            .map_or(IDEMPOTENCY_HEADER, |l| l.config.header.as_str());
        Self {
            deliveries: QueueDeliveries::for_upstreams(&plugin.config.upstreams, key_header),
        }
    }

    pub(crate) fn enqueue(
        &mut self,
        e: Enqueue,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) -> Result<QueueId, QueueFull> {
        self.deliveries
            .enqueue(e.upstream, e.request, e.key, rng, now)
    }

    pub(crate) fn next_wake(&self) -> Option<UnixNanos> {
        self.deliveries.next_wake()
    }

    /// Sends every due delivery (call from the root context).
    pub(crate) fn deliver_due(
        &mut self,
        host: &mut impl Host,
        plugin: &Plugin,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) {
        loop {
            let step = self.deliveries.next(&mut env(host, plugin, rng, now));
            let DeliveryStep::Dispatch(d) = step else {
                return;
            };
            let call = Callout {
                cluster: &d.cluster,
                headers: d
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                body: (!d.body.is_empty()).then_some(d.body.as_slice()),
                timeout: std::time::Duration::from_nanos(d.timeout_ns),
            };
            let token = host.dispatch_callout(call);
            self.deliveries
                .sent(d.id, token, &mut env(host, plugin, rng, now));
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
        let env = &mut env(host, plugin, rng, now);
        self.deliveries
            .on_response(token, answer.headers, answer.body, env)
            .is_some()
    }
}

impl Worker {
    /// Writes the endings the queues reached for keys held in etcd (a delivered answer, an
    /// item given up), from the root: their calls go out at its next tick.
    pub(super) fn write_queued_endings(&self, host: &mut impl Host, now: UnixNanos) {
        let endings = self.queues.borrow_mut().deliveries.take_remote_endings();
        if endings.is_empty() {
            return;
        }
        self.with_env(host, now, |env| {
            for ending in endings {
                match ending {
                    RemoteEnding::Complete { id, answer } => {
                        let outcome = Outcome::Stored {
                            status: answer.status,
                            body: None,
                        };
                        complete_in_background(env, id, outcome, Some(answer));
                    }
                    RemoteEnding::Abandon(id) => abandon_in_background(env, id),
                }
            }
        });
    }
}
