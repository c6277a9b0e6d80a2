//! Mesh-wide rate limits: a limit whose count lives in an Envoy rate limit service (RLS v3,
//! as served by envoyproxy/ratelimit or Limitador), shared by every Envoy of the mesh.
//!
//! The limit's own algorithm keeps running per Envoy in front of the service (the local tier):
//! a flood is refused without a call, and the local tier commits only once the service has
//! admitted the request. This module decides everything between the local tier's check and
//! its commit, as pure steps over shared data, without doing any I/O itself: [`GlobalLimit::begin`]
//! says whether the request may pass on what this Envoy already holds or must ask the service
//! (and with how many `hits_addend`), [`GlobalLimit::finish`] folds the service's answer (or
//! the failure to get one) into a decision.
//!
//! Two modes:
//! - `exact`: one call of one unit per request that passed the local tier; the service's count
//!   decides each request.
//! - `reserve`: one call reserves a batch of units for this Envoy, kept in a bounded slot table
//!   shared by its workers and spent one per request with a CAS ([`pool`] has the batch size,
//!   the refill ahead of need and the bound on unused units).
//!
//! When the service cannot be asked or its answer cannot be used (refused, reset, timeout, an
//! `UNKNOWN` code, a status without `current_limit`), the limit's `on_backend_error` decides:
//! `local` (the local tier alone decides: admit and commit), `allow` (admit without counting)
//! or `deny` (`429` with `Retry-After: 1`). A misconfigured service is logged once per worker.

#[cfg(test)]
mod flow_tests;
pub mod limit;
pub mod pool;
pub mod request;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
pub mod view;

pub use limit::{Asked, Begin, Finish, GlobalLimit};
pub use request::{Deferred, Prepared, RemoteAsk};
pub use view::ServiceView;

pub use crate::config::{GlobalMode, GlobalOnBackendError as OnBackendError};

/// Why the service gave no usable verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFailure {
    /// No answer: refused, reset, timed out, no healthy host, or the backend's breaker is open.
    Unreachable,
    /// An answer that cannot be used: the service is misconfigured.
    Misconfigured(crate::backend::rls::Misconfigured),
}
