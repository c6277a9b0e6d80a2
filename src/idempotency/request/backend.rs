//! A keyed request whose record lives in a backend (etcd): the caller claims through the
//! backend and writes the ending there; this request keeps what both need — the scoped key
//! (the same on every Envoy) and the ending it reached (stored, released, unknown).

use crate::idempotency::capture::Capture;
use crate::idempotency::machine::Outcome;
use crate::idempotency::response::StoredResponse;
use crate::idempotency::{Fingerprint, IdempotencyKey};

use super::{Hold, KeyedRequest};

/// The backend side of a keyed request.
#[derive(Debug, Default)]
pub(super) struct RemoteEnding {
    pub(super) scoped: Vec<u8>,
    pub(super) ended: Option<(Outcome, Option<StoredResponse>)>,
}

impl KeyedRequest {
    /// The record lives in a backend named by `scoped` (scope and key, the same on every
    /// Envoy): claims are made by the caller, completions handed to it.
    pub fn use_backend(&mut self, scoped: Vec<u8>) {
        self.remote = Some(Box::new(RemoteEnding {
            scoped,
            ended: None,
        }));
    }

    /// The backend's name for this record's key, its client key and key echo, and the request
    /// fingerprint (finished now: the body is complete). `None` for shared-data records.
    pub fn backend_claim(&mut self) -> Option<(&[u8], &IdempotencyKey, Fingerprint)> {
        if let Some(builder) = self.fingerprint.take() {
            self.finished_fingerprint = Some(builder.finish());
        }
        let fingerprint = self.finished_fingerprint.unwrap_or(Fingerprint([0; 16]));
        let remote = self.remote.as_ref()?;
        Some((&remote.scoped, &self.key, fingerprint))
    }

    /// The backend granted the claim: the record is this request's.
    pub fn held_in_backend(&mut self) {
        self.hold = Hold::Held {
            slot: u32::MAX,
            capture: Capture::default(),
        };
    }

    /// The ending to write to the backend, once the request reached one.
    pub fn take_backend_ending(&mut self) -> Option<(Outcome, Option<StoredResponse>)> {
        self.remote.as_mut()?.ended.take()
    }
}
