//! Idempotency records in etcd, shared by every Envoy of a mesh: one execution per key even
//! when a client's retry lands on another replica.
//!
//! Pure and sans-I/O: [`claim::RemoteKey`] says which etcd call to make and turns each answer
//! into the same decisions the shared-data store makes (execute, replay byte for byte, `409`,
//! `422`, wait); the caller makes the calls. [`record`] is the value stored in etcd, [`key`]
//! the etcd key of a (scope, client key), [`lease`] the per-bucket leases that collect old
//! records, [`calls`] the calls, their failures and the `503` for `on_backend_error: deny`.

pub mod calls;
pub mod claim;
pub mod completions;
pub mod key;
pub mod lease;
pub mod record;
pub mod wire;

pub use calls::{
    backend_unavailable, failure_of, grant_answer, on_backend_error, Call, EtcdAnswer, Failure,
};
pub use claim::{RemoteEnv, RemoteKey, Step};
pub use completions::{Completions, Ended, Todo};
pub use key::record_key;
pub use lease::LeaseCache;
pub use wire::{etcd_answer, remote_call, FENCE_HEADER};

#[cfg(test)]
pub(crate) mod fake_etcd;
#[cfg(test)]
mod tests;
