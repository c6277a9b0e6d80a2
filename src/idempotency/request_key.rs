//! The idempotency part of a request, decided when its headers arrive: not keyed, refused
//! (a missing or invalid key, answered once the rate limits have passed it), or keyed — then
//! a [`KeyedRequest`] carries it to the end.

use crate::config::ClientIpConfig;
use crate::metrics::{Event, IdempotencyEvent, Metrics};
use crate::problem::LocalReply;
use crate::request::RequestAttributes;
use crate::store::hash::KeyHasher;

use super::layer::{IdempotencyLayer, KeyCheck};
use super::replies;
use super::request::KeyedRequest;
use super::FingerprintBuilder;

/// The key part of a request, decided when its headers arrive.
#[derive(Debug, Default)]
pub enum RequestKey {
    /// The layer does not apply, or the request carries no key.
    #[default]
    NotKeyed,
    /// A missing (when required) or invalid key: refused with this `400` once the rate
    /// limits have passed it.
    Refused(LocalReply),
    /// Boxed: most requests carry no key, and the keyed state is large.
    Keyed(Box<KeyedRequest>),
}

impl RequestKey {
    /// Reads the request's key header; `owner` is the request's random id.
    pub fn of(
        layer: &IdempotencyLayer,
        hasher: &KeyHasher,
        client_ip: &ClientIpConfig,
        req: &dyn RequestAttributes,
        owner: u64,
    ) -> Self {
        match layer.check_key(hasher, client_ip, req) {
            KeyCheck::NotKeyed => Self::NotKeyed,
            KeyCheck::Missing => Self::Refused(replies::missing_key(&layer.config.header)),
            KeyCheck::Invalid(e) => Self::Refused(replies::invalid_key(&e)),
            KeyCheck::Keyed { key, hash, scoped } => {
                let fingerprint = layer
                    .config
                    .fingerprint
                    .then(|| FingerprintBuilder::new(req.method(), req.path_and_query()));
                let mut keyed = KeyedRequest::new(key, hash, owner, fingerprint);
                if layer.config.backend.is_some() {
                    keyed.use_backend(scoped);
                }
                Self::Keyed(Box::new(keyed))
            }
        }
    }

    /// The refusal of a bad key, counted; the request is then no longer keyed.
    pub fn take_refusal(&mut self, metrics: &mut dyn Metrics) -> Option<LocalReply> {
        if !matches!(self, Self::Refused(_)) {
            return None;
        }
        match std::mem::take(self) {
            Self::Refused(reply) => {
                metrics.count(Event::Idempotency(IdempotencyEvent::InvalidKey));
                Some(reply)
            }
            _ => None,
        }
    }

    pub fn keyed(&self) -> Option<&KeyedRequest> {
        match self {
            Self::Keyed(k) => Some(k),
            _ => None,
        }
    }

    pub fn keyed_mut(&mut self) -> Option<&mut KeyedRequest> {
        match self {
            Self::Keyed(k) => Some(k),
            _ => None,
        }
    }

    /// The request holds its key's record and has not completed it.
    pub fn owns(&self) -> bool {
        self.keyed().is_some_and(KeyedRequest::owns)
    }
}
